"""Why the previous TKI was stopped (tki.switch_reason) and therapy planned but not yet given
(planned): the facts behind "a switch for intolerance is not a trigger" and the patient-view
checks of a planned CD19-directed therapy."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.test_facts_builders import (
    RX,
    cc,
    facts_of,
    med,
    med_request,
    med_statement,
    subject,
    value,
)

IMA = med(None, (RX, "282388", "imatinib"))
DASA = med(None, (RX, "475342", "dasatinib"))


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("intolerance: grade 3 pleural effusion", "intolerance"),
        ("Side effects", "intolerance"),
        ("Loss of response, rising BCR-ABL1", "resistance"),
        ("Haematological relapse", "resistance"),
        ("Patient moved to another centre", "unknown"),
        ("no resistance; intolerance", "intolerance"),
    ],
)
def test_switch_reason_from_the_previous_tki(reason: str, expected: str) -> None:
    f = facts_of(
        med_statement("a", IMA, "stopped", "2022-01-01", "2023-01-01", statusReason=[cc(reason)]),
        med_request("b", DASA, "active", "2024-01-15"),
        as_of=dt.date(2024, 6, 1),
    )
    assert value(f, "tki.switch") == "yes"
    assert value(f, "tki.switch_reason") == expected


def test_no_switch_no_reason() -> None:
    f = facts_of(
        med_statement(
            "a", IMA, "stopped", "2022-01-01", "2023-01-01", statusReason=[cc("intolerance")]
        )
    )
    assert value(f, "tki.switch_reason") == "unknown"


def service_request(id: str, text: str, status: str = "active") -> dict[str, object]:
    return {
        "resourceType": "ServiceRequest",
        "id": id,
        "status": status,
        "intent": "order",
        "code": cc(text),
        "subject": subject(),
        "authoredOn": "2024-05-20",
    }


@pytest.mark.parametrize(
    ("resource", "planned"),
    [
        (
            med_request("p", med("blinatumomab"), "active", "2024-05-20", intent="plan"),
            {"blinatumomab"},
        ),
        (med_request("p", med("blinatumomab"), "draft", "2024-05-20"), {"blinatumomab"}),
        (
            med_request(
                "p",
                med("blinatumomab"),
                "active",
                "2024-05-20",
                dosageInstruction=[
                    {"timing": {"repeat": {"boundsPeriod": {"start": "2024-07-01"}}}}
                ],
            ),
            {"blinatumomab"},
        ),
        (
            service_request("s", "Tisagenlecleucel (Kymriah) infusion referral"),
            {"tisagenlecleucel"},
        ),
        (service_request("s", "Tisagenlecleucel infusion", status="completed"), set()),
        (med_request("p", med("blinatumomab"), "active", "2024-05-20"), set()),
        (med_request("p", med("blinatumomab"), "cancelled", "2024-05-20", intent="plan"), set()),
    ],
    ids=[
        "intent-plan",
        "draft",
        "future-start",
        "car-t-referral",
        "completed-service",
        "given-order",
        "cancelled",
    ],
)
def test_planned_therapy(resource: dict[str, object], planned: set[str]) -> None:
    assert value(facts_of(resource, as_of=dt.date(2024, 6, 1)), "planned") == frozenset(planned)
