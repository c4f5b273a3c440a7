"""CD19 on the leukemic population only: blasts or a leukemia immunophenotype count; lymphocyte
subsets and B-cell counts never do; negated and equivocal wording read through the one
polarity engine."""

from __future__ import annotations

import pytest

from tests.test_facts_builders import LOINC, cc, condition, facts_of, observation, qty, value

FLOW = cc("Bone marrow flow cytometry immunophenotype")


@pytest.mark.parametrize(
    ("res", "status", "population"),
    [
        (
            observation("o", FLOW, valueString="No CD19-positive blasts detected"),
            "negative",
            "blasts",
        ),
        (
            observation("o", FLOW, valueString="Blasts are CD19 negative, CD22 positive"),
            "negative",
            "blasts",
        ),
        (
            observation("o", FLOW, valueString="Blasts: CD19 not expressed; CD22+"),
            "negative",
            "blasts",
        ),
        (
            observation("o", FLOW, valueString="CD20 not expressed, CD19 positive blasts"),
            "positive",
            "blasts",
        ),
        (
            observation("o", FLOW, valueString="Blasts CD10+ CD19+ CD34+ CD20-"),
            "positive",
            "blasts",
        ),
        (
            observation(
                "o", FLOW, valueString="Abnormal population negative for CD10, CD19 and CD22"
            ),
            "negative",
            "blasts",
        ),
        (
            observation("o", FLOW, valueString="Loss of CD19 on leukemic blasts"),
            "negative",
            "blasts",
        ),
        (
            observation("o", cc("CD19 on blasts (% positive)"), valueQuantity=qty(0)),
            "negative",
            "blasts",
        ),
        (
            observation("o", cc("CD19 on blasts (% positive)"), valueQuantity=qty(92)),
            "positive",
            "blasts",
        ),
        (
            observation(
                "o",
                cc(None, (LOINC, "101119-6", "Leuk and lymphma immnphntypng Spec")),
                valueString="positive for CD10, CD79a, TdT, CD19, and CD20",
            ),
            "positive",
            "blasts",
        ),
        (observation("o", cc("CD19"), valueString="negative"), "negative", "unstated"),
        (condition("c", cc("CD19-negative relapse of B-ALL")), "negative", "blasts"),
    ],
    ids=[
        "no-cd19-positive-blasts",
        "blasts-cd19-negative",
        "not-expressed",
        "other-marker-negated",
        "marker-list",
        "negative-for-list",
        "loss-of",
        "pct-zero-on-blasts",
        "pct-high-on-blasts",
        "mcode-immunophenotype-string",
        "population-not-stated",
        "condition-wording",
    ],
)
def test_cd19_on_the_leukemic_population(
    res: dict[str, object], status: str, population: str
) -> None:
    f = facts_of(res)
    assert value(f, "cd19.status") == status
    assert value(f, "cd19.population") == population


@pytest.mark.parametrize(
    "res",
    [
        observation("o", cc("CD19+ B cells, % of lymphocytes"), valueQuantity=qty(0)),
        observation("o", cc("B cells (CD19+)"), valueQuantity=qty(0, unit="cells/uL")),
        observation("o", cc("CD19 absolute count"), valueQuantity=qty(0, unit="/uL")),
        observation("o", FLOW, valueString="CD19+ B cells absent"),
        observation("o", FLOW, valueString="B cells (CD19+) not detected"),
        observation("o", cc("Lymphocyte subsets"), valueString="CD19 negative (B-cell aplasia)"),
        observation(
            "o",
            cc("Lymphocyte subset panel (TBNK)"),
            component=[{"code": cc("CD19 %"), "valueQuantity": qty(0)}],
        ),
        observation("o", FLOW, valueString="CD19 CAR-T cells detected in blood"),
        observation("o", cc("CD19 on blasts"), valueString="indeterminate"),
        observation("o", FLOW, valueString="CD19 equivocal on blasts"),
    ],
    ids=[
        "b-cells-pct-lymphocytes",
        "b-cell-count",
        "absolute-count",
        "b-cells-absent",
        "b-cells-not-detected",
        "lymphocyte-subsets-text",
        "tbnk-component",
        "car-t-cells",
        "indeterminate",
        "equivocal-word",
    ],
)
def test_not_blast_cd19_status(res: dict[str, object]) -> None:
    """Lymphocyte counts, CAR-T cell counts and equivocal results leave CD19 on blasts unknown."""
    assert value(facts_of(res), "cd19.status") == "unknown"


def test_a_lymphocyte_count_never_outweighs_the_blast_result() -> None:
    f = facts_of(
        observation("dx", cc("CD19 on blasts"), "2024-01-05", valueString="positive"),
        observation(
            "aplasia", cc("CD19+ B cells, % of lymphocytes"), "2024-05-01", valueQuantity=qty(0)
        ),
    )
    fact = f.get("cd19.status")
    assert fact.value == "positive" and str(fact.date) == "2024-01-05"
    assert any("Observation/aplasia: CD19 on lymphocytes" in i for i in f.issues)
