"""Time: a status fact reflects the latest reliable assessment — CNS / extramedullary cleared vs
active, relapse dated by the evidence of relapse, CD19 against the latest relapse, current
medication outweighed by a later drug of its class or by staleness (at two as-of dates), and
mutations that a later negative test does not erase."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.test_facts_builders import (
    ICD,
    LOINC,
    RX,
    SCT,
    cc,
    condition,
    facts_of,
    med,
    med_admin,
    med_request,
    med_statement,
    observation,
    procedure,
    qty,
    value,
)

CSF = cc(None, (LOINC, "35068-6"))
BALL = cc("B-ALL", (SCT, "91857003"))
DASA = med(None, (RX, "475342", "dasatinib"))
IMA = med(None, (RX, "282388", "imatinib"))


def csf(id: str, date: str, blasts: float) -> dict[str, object]:
    return observation(id, CSF, date, valueQuantity=qty(blasts))


# -- CNS and extramedullary status --------------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "expected", "date", "end"),
    [
        ([csf("a", "2023-01-01", 12)], "yes", "2023-01-01", None),
        (
            [csf("a", "2023-01-01", 12), csf("b", "2023-02-01", 0)],
            "cleared",
            "2023-01-01",
            "2023-02-01",
        ),
        (
            [csf("a", "2023-01-01", 12), csf("b", "2023-02-01", 0), csf("c", "2024-05-01", 4)],
            "yes",
            "2024-05-01",
            None,
        ),
        ([csf("a", "2023-01-01", 0), csf("b", "2023-02-01", 0)], "no", "2023-02-01", None),
        ([csf("a", "2023-01-01", 12), csf("b", "2023-01-01", 0)], "yes", "2023-01-01", None),
        ([csf("a", "2023-01", 12), csf("b", "2023-01-20", 0)], "yes", "2023-01", None),
        (
            [condition("c", cc("CNS leukemia"), onset=None), csf("b", "2023-02-01", 0)],
            "cleared",
            "None",
            "2023-02-01",
        ),
        (
            [
                condition(
                    "c",
                    cc("CNS relapse of B-ALL"),
                    onset="2022-03-01",
                    clinical="resolved",
                    extra={"abatementDateTime": "2022-06-01"},
                )
            ],
            "cleared",
            "2022-03-01",
            "2022-06-01",
        ),
        (
            [condition("c", cc("CNS leukemia"), onset="2022-03-01", clinical="inactive")],
            "cleared",
            "2022-03-01",
            None,
        ),
        (
            [condition("c", cc("CNS leukemia"), onset="2022-03-01"), csf("b", "2022-08-01", 0)],
            "cleared",
            "2022-03-01",
            "2022-08-01",
        ),
        (
            [
                observation("s1", cc("CNS status"), "2023-01-01", valueString="CNS3"),
                observation("s2", cc("CNS status"), "2023-03-01", valueString="CNS1"),
            ],
            "cleared",
            "2023-01-01",
            "2023-03-01",
        ),
    ],
    ids=[
        "positive",
        "positive-then-negative",
        "cleared-then-relapse",
        "only-negative",
        "same-day-conflict-positive-stands",
        "partial-date-overlap-positive-stands",
        "undated-positive-dated-negative",
        "condition-resolved-with-abatement",
        "condition-inactive-no-abatement",
        "active-condition-later-negative-csf",
        "cns3-then-cns1",
    ],
)
def test_cns_latest_assessment(
    resources: list[dict[str, object]], expected: str, date: str, end: str | None
) -> None:
    fact = facts_of(*resources).get("cns.involvement")
    assert fact.value == expected
    assert str(fact.date) == date
    assert (str(fact.end) if fact.end else None) == end


def test_cleared_cns_is_not_an_active_site() -> None:
    f = facts_of(csf("a", "2023-01-01", 12), csf("b", "2023-02-01", 0))
    assert value(f, "extramedullary.sites") == frozenset()
    f = facts_of(csf("a", "2023-01-01", 12))
    assert value(f, "extramedullary.sites") == frozenset({"cns"})


def test_extramedullary_site_cleared_by_a_later_negative_assessment() -> None:
    f = facts_of(
        condition("t", cc("Testicular relapse of B-ALL"), onset="2022-01-01"),
        observation(
            "exam",
            cc("Testicular ultrasound"),
            "2022-06-01",
            valueString="No testicular involvement",
        ),
    )
    fact = f.get("extramedullary.involvement")
    assert fact.value == "cleared" and str(fact.end) == "2022-06-01"
    assert value(f, "extramedullary.sites") == frozenset()


def test_one_active_site_keeps_involvement_active() -> None:
    f = facts_of(
        condition("t", cc("Testicular relapse"), onset="2022-01-01", clinical="resolved"),
        condition("s", cc("Leukemia cutis"), onset="2023-01-01"),
    )
    assert value(f, "extramedullary.involvement") == "yes"
    assert value(f, "extramedullary.sites") == frozenset({"skin"})


# -- relapse dating ---------------------------------------------------------------------------


def test_relapse_onset_after_the_first_diagnosis_dates_the_relapse() -> None:
    f = facts_of(
        condition("dx", BALL, onset="2020-01-10"),
        condition(
            "r", cc("Relapsed B-ALL"), onset="2023-02-01", extra={"recordedDate": "2023-05-01"}
        ),
    )
    assert str(f.get("relapse").date) == "2023-02-01"


def test_relapse_on_the_diagnosis_condition_is_dated_when_recorded() -> None:
    f = facts_of(
        condition(
            "dx",
            cc("ALL, in relapse", (ICD, "C91.02")),
            onset="2020-01-10",
            extra={"recordedDate": "2025-02-01"},
        )
    )
    assert str(f.get("relapse").date) == "2025-02-01"


def test_relapse_with_only_the_original_onset_is_undated() -> None:
    f = facts_of(
        condition("dx", BALL, onset="2020-01-10"),
        condition("r", cc(None, (ICD, "C91.02")), onset="2020-01-10"),
    )
    fact = f.get("relapse")
    assert fact.value == "yes" and fact.date is None


def test_relapse_dated_by_the_encounter_when_not_recorded() -> None:
    enc = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2024-11-03"},
    }
    f = facts_of(
        condition("dx", BALL, onset="2020-01-10"),
        condition(
            "r",
            cc(None, (ICD, "C91.02")),
            onset="2020-01-10",
            extra={"encounter": {"reference": "Encounter/e1"}},
        ),
        enc,
    )
    assert str(f.get("relapse").date) == "2024-11-03"


def test_relapse_after_hsct_is_seen_when_recorded_after_it() -> None:
    f = facts_of(
        condition(
            "dx",
            cc("Ph+ B-ALL", (SCT, "91857003")),
            onset="2020-01-10",
            clinical="relapse",
            extra={"recordedDate": "2024-09-01"},
        ),
        procedure("hsct", cc("Haploidentical stem cell transplant"), when="2021-05-01"),
    )
    assert f.get("relapse").date.start > f.get("hsct.haploidentical").date.end  # type: ignore[union-attr]


# -- CD19 against the latest relapse ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cd19_date", "relapse_recorded", "timing"),
    [
        ("2025-03-02", "2025-03-01", "after_latest_relapse"),
        ("2025-03-01", "2025-03-01", "after_latest_relapse"),
        ("2021-06-01", "2025-03-01", "before_latest_relapse"),
        ("2025-03", "2025-03-10", "unknown"),
        ("2025-03-02", None, "no_relapse_recorded"),
    ],
    ids=["after", "same-day", "years-before", "partial-date", "no-relapse"],
)
def test_cd19_against_latest_relapse(
    cd19_date: str, relapse_recorded: str | None, timing: str
) -> None:
    resources = [
        condition("dx", BALL, onset="2020-01-10"),
        observation("cd19", cc("CD19 on blasts"), cd19_date, valueString="negative"),
    ]
    if relapse_recorded:
        resources.append(
            condition(
                "r",
                cc(None, (ICD, "C91.02")),
                onset="2020-01-10",
                extra={"recordedDate": relapse_recorded},
            )
        )
    assert value(facts_of(*resources), "cd19.timing") == timing


# -- medication currency, at two as-of dates ------------------------------------------------------


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [(dt.date(2023, 6, 1), "current"), (dt.date(2025, 6, 1), "past")],
)
def test_open_ended_statement_goes_stale(as_of: dt.date, expected: str) -> None:
    f = facts_of(med_statement("s", DASA, "active", "2023-01-01"), as_of=as_of)
    fact = f.get("exposure.dasatinib")
    assert fact.value == expected
    if expected == "past":
        assert "older than 365 days" in (fact.detail or "")


def test_reasserting_a_statement_keeps_it_current_but_not_against_a_later_switch() -> None:
    stmt = med_statement("s", IMA, "active", "2019-01-01", dateAsserted="2025-04-01")
    assert value(facts_of(stmt, as_of=dt.date(2025, 6, 1)), "exposure.imatinib") == "current"
    switched = facts_of(
        stmt, med_request("d", DASA, "active", "2024-11-01"), as_of=dt.date(2025, 6, 1)
    )
    assert value(switched, "exposure.imatinib") == "past"
    assert "superseded by dasatinib started 2024-11-01" in (
        switched.get("exposure.imatinib").detail or ""
    )
    assert value(switched, "tki.current") == frozenset({"dasatinib"})


def test_a_drug_seen_again_after_the_switch_is_not_superseded() -> None:
    """A combination, or a return to the first drug: a newer order of it keeps it current."""
    f = facts_of(
        med_request("p1", med("ponatinib 30 mg"), "active", "2024-01-10"),
        med_request("a1", med("asciminib 40 mg"), "active", "2024-06-01"),
        med_request("p2", med("ponatinib 30 mg"), "active", "2024-07-01"),
        as_of=dt.date(2024, 9, 1),
    )
    assert value(f, "tki.current") == frozenset({"ponatinib", "asciminib"})


def test_a_later_drug_outside_the_class_does_not_supersede() -> None:
    f = facts_of(
        med_request("d", DASA, "active", "2024-01-10"),
        med_admin("b", med("blinatumomab"), "completed", "2024-05-01"),
        as_of=dt.date(2024, 6, 1),
    )
    assert value(f, "exposure.dasatinib") == "current"


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [(dt.date(2024, 2, 20), "current"), (dt.date(2024, 4, 1), "past")],
)
def test_administration_window(as_of: dt.date, expected: str) -> None:
    f = facts_of(med_admin("a", DASA, "completed", "2024-02-01"), as_of=as_of)
    assert value(f, "exposure.dasatinib") == expected


# -- mutations over time ----------------------------------------------------------------------


KD = cc("ABL1 kinase domain mutation analysis", (LOINC, "55135-8"))


def test_later_negative_test_keeps_t315i_and_says_so() -> None:
    f = facts_of(
        observation("k1", KD, "2022-01-01", valueString="T315I detected"),
        observation("k2", KD, "2025-01-01", valueString="No mutation detected"),
    )
    fact = f.get("abl1.t315i")
    assert fact.value == "yes" and str(fact.date) == "2022-01-01"
    assert fact.detail == "T315I 2022-01-01; later test 2025-01-01: no mutation detected"
    assert str(f.get("abl1.mutation_test").date) == "2025-01-01"


def test_latest_result_uninterpretable_leaves_t315i_unknown() -> None:
    f = facts_of(
        observation("k1", KD, "2022-01-01", valueString="No mutation detected"),
        observation("k2", KD, "2025-01-01", valueString="see scanned report"),
    )
    assert value(f, "abl1.t315i") == "unknown"
    assert value(f, "abl1.mutation_test") == "yes"


def test_an_absent_other_variant_says_nothing_of_t315i() -> None:
    f = facts_of(observation("k", KD, "2024-01-01", valueString="E255K not detected"))
    assert value(f, "abl1.t315i") == "unknown"
    f = facts_of(observation("k", KD, "2024-01-01", valueString="T315I not detected"))
    fact = f.get("abl1.t315i")
    assert fact.value == "no" and fact.detail == "T315I not detected"
