"""Drug exposure facts: current / past / never per record type and status; TKI summaries;
CD19-directed and CAR-T exposure."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.test_facts_builders import (
    ATC,
    ICD,
    RX,
    cc,
    condition,
    facts_of,
    med,
    med_admin,
    med_request,
    med_statement,
    procedure,
    value,
)

DASA = med(None, (RX, "475342", "dasatinib"))


@pytest.mark.parametrize(
    ("res", "expected"),
    [
        (med_request("r", DASA, "active"), "current"),
        (med_request("r", DASA, "on-hold"), "current"),
        (med_request("r", DASA, "completed"), "past"),
        (med_request("r", DASA, "stopped"), "past"),
        (med_request("r", DASA, "unknown"), "past"),
        (med_statement("s", DASA, "active", "2024-01-01"), "current"),
        (med_statement("s", DASA, "completed", "2022", "2023"), "past"),
        (med_statement("s", DASA, "active", "2022-01-01", "2023-01-01"), "past"),
        (med_admin("a", DASA, "completed", "2024-05-20"), "current"),
        (med_admin("a", DASA, "completed", "2023-01-01"), "past"),
        (med_admin("a", DASA, "in-progress", "2020-01-01"), "current"),
    ],
    ids=[
        "req-active",
        "req-on-hold",
        "req-completed",
        "req-stopped",
        "req-unknown",
        "stmt-active",
        "stmt-completed",
        "stmt-active-ended",
        "admin-recent",
        "admin-old",
        "admin-in-progress",
    ],
)
def test_exposure_states(res: dict[str, object], expected: str) -> None:
    f = facts_of(res)
    assert value(f, "exposure.dasatinib") == expected
    assert f.get("exposure.dasatinib").provenance[0].resource.endswith(str(res["id"]))


@pytest.mark.parametrize(
    "res",
    [
        med_request("r", DASA, "cancelled"),
        med_request("r", DASA, "draft"),
        med_request("r", DASA, "entered-in-error"),
        med_request("r", DASA, "active", intent="plan"),
        med_request("r", DASA, "active", doNotPerform=True),
        med_statement("s", DASA, "not-taken"),
        med_statement("s", DASA, "entered-in-error"),
        med_statement("s", DASA, "intended"),
        med_admin("a", DASA, "not-done"),
    ],
    ids=[
        "cancelled",
        "draft",
        "eie-req",
        "plan",
        "do-not-perform",
        "not-taken",
        "eie-stmt",
        "intended",
        "not-done",
    ],
)
def test_not_exposure(res: dict[str, object]) -> None:
    f = facts_of(res)
    assert value(f, "exposure.dasatinib") == "never"
    assert value(f, "tki.any") == frozenset()


def test_never_means_no_record() -> None:
    f = facts_of()
    assert value(f, "exposure.imatinib") == "never"
    assert f.get("exposure.imatinib").provenance == ()
    assert value(f, "tki.switch") == "unknown"
    assert value(f, "cd19_directed") == "never"


def test_without_as_of_only_status_counts() -> None:
    f = facts_of(
        med_statement("s", DASA, "active", "2020-01-01", "2020-06-01"),
        med_admin("a", med("imatinib"), "completed", "2024-05-31"),
        as_of=None,
    )
    assert value(f, "exposure.dasatinib") == "current"
    assert value(f, "exposure.imatinib") == "past"


def test_dates_and_stop_reason() -> None:
    f = facts_of(
        med_statement(
            "s",
            med("Gleevec 400 mg"),
            "stopped",
            "2019-03",
            "2020-11-02",
            statusReason=[cc("Resistance (T315I)")],
        )
    )
    fact = f.get("exposure.imatinib")
    assert (fact.value, str(fact.date), str(fact.end), fact.detail) == (
        "past",
        "2019-03",
        "2020-11-02",
        "Resistance (T315I)",
    )


def test_request_bounds_period_end() -> None:
    r = med_request(
        "r",
        DASA,
        "active",
        dosageInstruction=[
            {"timing": {"repeat": {"boundsPeriod": {"start": "2023-01-01", "end": "2023-12-31"}}}}
        ],
    )
    assert value(facts_of(r), "exposure.dasatinib") == "past"
    assert value(facts_of(r, as_of=dt.date(2023, 6, 1)), "exposure.dasatinib") == "current"


@pytest.mark.parametrize(
    ("medication", "via"),
    [
        (med(None, (RX, "282388")), "code"),
        (med(None, (ATC, "L01EA01")), "atc"),
        (med("Glivec 100mg"), "text"),
        (
            med(
                "imatinib mesylate 400 MG Oral Tablet", ("http://hl7.org/fhir/sid/ndc", "0000-0000")
            ),
            "text",
        ),
    ],
)
def test_record_ingredient_paths(medication: dict[str, object], via: str) -> None:
    f = facts_of(med_request("r", medication))
    assert value(f, "exposure.imatinib") == "current"
    assert f.get("exposure.imatinib").provenance[0].via == via


def test_medication_reference_contained_and_bundled() -> None:
    contained = med_request(
        "r1",
        {"medicationReference": {"reference": "#m"}},
        contained=[{"resourceType": "Medication", "id": "m", "code": cc("Tasigna")}],
    )
    bundled = med_statement(
        "s1", {"medicationReference": {"reference": "Medication/pon"}}, "completed", "2020"
    )
    medication = {"resourceType": "Medication", "id": "pon", "code": cc(None, (ATC, "L01EA05"))}
    f = facts_of(contained, bundled, medication)
    assert value(f, "exposure.nilotinib") == "current"
    assert [p.via for p in f.get("exposure.nilotinib").provenance] == ["reference", "text"]
    assert value(f, "exposure.ponatinib") == "past"
    assert f.get("exposure.ponatinib").provenance[1].resource == "Medication/pon"


def test_tki_current_any_switch() -> None:
    f = facts_of(
        med_statement("a", med("imatinib"), "completed", "2019-01", "2020-01"),
        med_statement("b", DASA, "stopped", "2020-02", "2021-05"),
        med_request("c", med("Iclusig"), "active", "2024-02-01"),
    )
    assert value(f, "tki.current") == frozenset({"ponatinib"})
    assert value(f, "tki.any") == frozenset({"imatinib", "dasatinib", "ponatinib"})
    switch = f.get("tki.switch")
    assert switch.value == "yes"
    assert str(switch.date) == "2024-02-01"
    assert switch.detail == "imatinib → dasatinib → ponatinib"


def test_single_tki_is_no_switch() -> None:
    f = facts_of(med_request("c", DASA))
    assert value(f, "tki.switch") == "no"


def test_current_and_past_records_of_one_drug() -> None:
    f = facts_of(
        med_statement("old", DASA, "completed", "2018", "2019"),
        med_request("new", DASA, "active", "2024-01-10"),
    )
    fact = f.get("exposure.dasatinib")
    assert fact.value == "current"
    assert str(fact.date) == "2024-01-10"


@pytest.mark.parametrize(
    ("res", "name", "expected"),
    [
        (
            med_admin("b", med("Blincyto"), "completed", "2022-01-01"),
            "exposure.blinatumomab",
            "past",
        ),
        (
            med_admin("b", med(None, (RX, "1942950")), "completed", "2024-05-25"),
            "exposure.inotuzumab_ozogamicin",
            "current",
        ),
        (
            procedure("p", cc("Kymriah infusion"), when="2023-01-01"),
            "exposure.tisagenlecleucel",
            "past",
        ),
        (
            procedure("p", cc("Tecartus (brexucabtagene autoleucel)"), when="2024-05-28"),
            "exposure.brexucabtagene_autoleucel",
            "current",
        ),
        (
            procedure("p", cc("CD19 CAR-T cell infusion"), when="2023-01-01"),
            "exposure.cd19_cart",
            "past",
        ),
        (condition("h", cc(None, (ICD, "Z92.850"))), "exposure.cd19_cart", "past"),
    ],
    ids=["blinatumomab", "inotuzumab", "kymriah-procedure", "tecartus", "car-t-unnamed", "z92.850"],
)
def test_other_exposures(res: dict[str, object], name: str, expected: str) -> None:
    assert value(facts_of(res), name) == expected


def test_named_car_t_counts_as_cd19_cart() -> None:
    f = facts_of(procedure("p", cc("Kymriah infusion"), when="2023-01-01"))
    assert value(f, "exposure.cd19_cart") == "past"
    assert value(f, "cd19_directed") == "past"


def test_car_t_not_done_is_not_exposure() -> None:
    f = facts_of(procedure("p", cc("Kymriah infusion"), status="not-done"))
    assert value(f, "exposure.tisagenlecleucel") == "never"


def test_cd22_car_t_is_not_cd19_cart() -> None:
    f = facts_of(procedure("p", cc("CD22 CAR-T cell infusion")))
    assert value(f, "exposure.cd19_cart") == "never"


def test_cd19_directed_is_latest() -> None:
    f = facts_of(
        med_admin("b", med("blinatumomab"), "completed", "2021-01-01"),
        procedure("p", cc("tisagenlecleucel infusion"), when="2023-03-01"),
    )
    fact = f.get("cd19_directed")
    assert fact.value == "past"
    assert str(fact.date) == "2023-03-01"
    assert fact.detail is not None and fact.detail.startswith("latest: tisagenlecleucel")
    current = facts_of(med_admin("b", med("blinatumomab"), "in-progress", "2024-05-01"))
    assert value(current, "cd19_directed") == "current"


def test_inotuzumab_is_not_cd19_directed() -> None:
    f = facts_of(med_admin("i", med("Besponsa"), "completed", "2024-01-01"))
    assert value(f, "cd19_directed") == "never"


def test_code_wins_over_contradicting_text() -> None:
    f = facts_of(med_request("r", med("Sprycel", (RX, "282388"))))
    assert value(f, "exposure.imatinib") == "current"
    assert value(f, "exposure.dasatinib") == "never"
    assert any("codes used" in i for i in f.issues)


def test_regimen_text_names_two_drugs() -> None:
    f = facts_of(med_statement("s", med("dasatinib + blinatumomab"), "active", "2024-01"))
    assert value(f, "exposure.dasatinib") == "current"
    assert value(f, "exposure.blinatumomab") == "current"
