"""CD19 status, MRD status and blinatumomab response: each shape both ways."""

from __future__ import annotations

import pytest

from tests.test_facts_builders import (
    SCT,
    cc,
    condition,
    facts_of,
    med,
    med_admin,
    observation,
    qty,
    value,
)

CD19 = cc("CD19 on blasts by flow cytometry")


@pytest.mark.parametrize(
    ("res", "expected"),
    [
        (
            observation("o", CD19, valueCodeableConcept=cc("Positive", (SCT, "10828004"))),
            "positive",
        ),
        (observation("o", CD19, valueString="negative"), "negative"),
        (observation("o", CD19, valueString="dim"), "dim"),
        (observation("o", CD19, valueString="weakly positive"), "dim"),
        (observation("o", CD19, valueQuantity=qty(85)), "positive"),
        (observation("o", CD19, valueQuantity=qty(0)), "negative"),
        (observation("o", CD19, valueQuantity=qty(8)), "dim"),
        (
            observation(
                "o", cc("Flow cytometry, bone marrow"), valueString="Blasts CD19+ CD10+ CD34+ CD20-"
            ),
            "positive",
        ),
        (
            observation(
                "o", cc("Immunophenotype"), valueString="Blasts CD10+, CD19-negative, CD22+"
            ),
            "negative",
        ),
        (
            observation(
                "o", cc("Leukemia/lymphoma immunophenotype"), valueString="Loss of CD19 on blasts"
            ),
            "negative",
        ),
        (
            observation(
                "o", cc("Immunophenotyping"), valueString="Blasts positive for CD10, CD19 and CD22"
            ),
            "positive",
        ),
        (
            observation(
                "o",
                cc("Flow panel"),
                component=[
                    {"code": cc("CD19 (% blasts)"), "valueQuantity": qty(2, comparator="<")}
                ],
            ),
            "negative",
        ),
        (condition("o", cc("CD19-negative relapse of B-ALL")), "negative"),
    ],
    ids=[
        "coded-positive",
        "text-negative",
        "dim",
        "weak",
        "pct-high",
        "pct-zero",
        "pct-partial",
        "immuno-plus",
        "immuno-negative",
        "loss-of",
        "positive-for",
        "component-below-limit",
        "condition-wording",
    ],
)
def test_cd19_status(res: dict[str, object], expected: str) -> None:
    f = facts_of(res)
    assert value(f, "cd19.status") == expected
    assert f.get("cd19.status").provenance


@pytest.mark.parametrize(
    "res",
    [
        observation("o", cc("CD19 CAR-T cells, blood"), valueQuantity=qty(12, "cells/uL")),
        observation("o", CD19, status="entered-in-error", valueString="negative"),
        observation("o", cc("Immunophenotype"), valueString="CD19-directed therapy planned"),
        observation("o", CD19),
    ],
    ids=["car-t-count", "entered-in-error", "directed-wording", "no-value"],
)
def test_cd19_unknown(res: dict[str, object]) -> None:
    assert value(facts_of(res), "cd19.status") == "unknown"


def test_cd19_latest_wins_and_same_day_conflict_is_cautious() -> None:
    f = facts_of(
        observation("a", CD19, "2022-01-01", valueString="negative"),
        observation("b", CD19, "2023-01-01", valueString="positive"),
    )
    assert (value(f, "cd19.status"), str(f.get("cd19.status").date)) == ("positive", "2023-01-01")
    tie = facts_of(
        observation("a", CD19, "2023-01-01", valueString="positive"),
        observation("b", CD19, "2023-01-01", valueString="negative"),
    )
    assert value(tie, "cd19.status") == "negative"


MRD = cc("MRD, bone marrow (flow cytometry)")


@pytest.mark.parametrize(
    ("res", "expected"),
    [
        (
            observation("o", MRD, valueCodeableConcept=cc("Not detected", (SCT, "260415000"))),
            "negative",
        ),
        (observation("o", MRD, valueString="MRD negative (<0.01%)"), "negative"),
        (observation("o", MRD, valueQuantity=qty(0.05)), "positive"),
        (observation("o", MRD, valueQuantity=qty(0.01, comparator="<")), "negative"),
        (observation("o", cc("Measurable residual disease"), valueString="detected"), "positive"),
    ],
    ids=["coded-negative", "text-negative", "quantity", "below-limit", "detected"],
)
def test_mrd(res: dict[str, object], expected: str) -> None:
    f = facts_of(res)
    assert value(f, "mrd.status") == expected
    assert str(f.get("mrd.status").date) == "2024-01-01"


def test_mrd_unknown_without_result() -> None:
    assert value(facts_of(observation("o", MRD)), "mrd.status") == "unknown"
    assert value(facts_of(), "mrd.status") == "unknown"


BLINA = med_admin("blina", med("blinatumomab"), "completed", "2023-01-01")


@pytest.mark.parametrize(
    ("res", "expected"),
    [
        (
            observation(
                "r",
                cc("Response assessment"),
                valueString="Complete remission",
                focus=[{"reference": "MedicationAdministration/blina"}],
            ),
            "response",
        ),
        (
            observation(
                "r",
                cc("Disease response"),
                valueString="Refractory",
                partOf=[{"reference": "MedicationAdministration/blina"}],
            ),
            "no_response",
        ),
        (
            observation("r", cc("Response to blinatumomab"), valueString="No response"),
            "no_response",
        ),
        (
            observation("r", cc("Response to blinatumomab"), valueString="CR, MRD negative"),
            "response",
        ),
    ],
    ids=["focus-cr", "partof-refractory", "named-no-response", "named-cr"],
)
def test_blinatumomab_response(res: dict[str, object], expected: str) -> None:
    assert value(facts_of(BLINA, res), "blinatumomab.response") == expected


def test_response_not_linked_to_blinatumomab_is_ignored() -> None:
    res = observation("r", cc("Response assessment"), valueString="Complete remission")
    assert value(facts_of(BLINA, res), "blinatumomab.response") == "unknown"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("Refractory disease", "no_response"),
        ("No response after 2 cycles", "no_response"),
        ("Completed: complete remission", "response"),
    ],
)
def test_blinatumomab_response_from_stop_reason(reason: str, expected: str) -> None:
    from tests.test_facts_builders import med_statement

    stmt = med_statement(
        "b", med("Blincyto"), "stopped", "2023-01-01", "2023-02-01", statusReason=[cc(reason)]
    )
    f = facts_of(stmt)
    assert value(f, "blinatumomab.response") == expected
    assert str(f.get("blinatumomab.response").date) == "2023-02-01"
