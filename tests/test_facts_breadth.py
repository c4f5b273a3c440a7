"""Facts behind the clinical-breadth rules: the mutation x TKI table, mutations in one sample,
and intrathecal therapy (given, by route or wording; never an order, a plan or a negation)."""

from __future__ import annotations

import pytest

from cds_service.facts.parameters import SensitivityEntry
from tests.test_facts_builders import (
    SCT,
    cc,
    facts_of,
    med,
    med_admin,
    med_request,
    med_statement,
    procedure,
    value,
    variant,
)

IT_ROUTE = {"route": cc(None, (SCT, "72607000", "Intrathecal route"))}


# ---- mutation x TKI table ----------------------------------------------------------------


def test_the_table_maps_a_mutation_to_the_tkis_it_affects() -> None:
    f = facts_of(variant("v1", p="p.Phe317Leu", date="2025-04-15"))
    assert value(f, "tki.mutation_resistance") == frozenset({"dasatinib"})
    assert "dasatinib: F317L less sensitive" in (f.get("tki.mutation_resistance").detail or "")
    assert str(f.get("tki.mutation_resistance").date) == "2025-04-15"


def test_several_rows_and_tkis_combine() -> None:
    f = facts_of(variant("v1", p="p.Val299Leu"), variant("v2", p="p.Tyr253His"))
    assert value(f, "tki.mutation_resistance") == frozenset({"dasatinib", "bosutinib", "nilotinib"})


@pytest.mark.parametrize("hgvs", ["p.Thr315Ile", "p.Met244Val", "p.Gly250Glu"])
def test_a_mutation_not_in_the_table_gives_nothing(hgvs: str) -> None:
    """T315I is left to abl1.t315i; substitutions no cited source lists are not guessed."""
    f = facts_of(variant("v1", p=hgvs))
    assert value(f, "tki.mutation_resistance") == frozenset()  # a set fact not known


def test_a_negative_kinase_result_gives_nothing() -> None:
    absent = cc(None, ("http://loinc.org", "LA9634-2", "Absent"))
    f = facts_of(variant("v1", p="p.Phe317Leu", value=absent))
    assert value(f, "tki.mutation_resistance") == frozenset()  # a set fact not known


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (
            {"tki": "imatinibb", "mutations": ["F317L"], "effect": "less", "source": "x"},
            "not one of",
        ),
        (
            {"tki": "dasatinib", "mutations": ["p.F317L"], "effect": "less", "source": "x"},
            "one-letter",
        ),
        ({"tki": "dasatinib", "mutations": [], "effect": "less", "source": "x"}, "at least 1"),
    ],
)
def test_table_rows_are_validated(row: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SensitivityEntry.model_validate(row)


# ---- mutations in one sample -------------------------------------------------------------


def test_mutations_in_one_sample_are_counted_per_day() -> None:
    same = facts_of(
        variant("v1", p="p.Glu255Lys", date="2025-04-15"),
        variant("v2", p="p.Phe359Val", date="2025-04-15"),
    )
    assert value(same, "abl1.concurrent_mutations") == 2.0
    assert same.get("abl1.concurrent_mutations").detail == "E255K, F359V"
    apart = facts_of(
        variant("v1", p="p.Glu255Lys", date="2024-01-10"),
        variant("v2", p="p.Phe359Val", date="2025-04-15"),
    )
    assert value(apart, "abl1.concurrent_mutations") == 1.0


# ---- intrathecal therapy -----------------------------------------------------------------


def test_a_medication_given_by_the_intrathecal_route_counts() -> None:
    f = facts_of(med_admin("a1", med("Methotrexate 12 mg"), when="2025-05-02", dosage=IT_ROUTE))
    assert value(f, "intrathecal") == "yes"
    assert str(f.get("intrathecal").date) == "2025-05-02"


@pytest.mark.parametrize(
    "resource",
    [
        med_admin("a1", med("IT methotrexate 12 mg"), when="2025-05-02"),
        med_statement("s1", med("Triple intrathecal therapy"), "completed", start="2025-05-02"),
        procedure("p1", cc("Intrathecal chemotherapy (methotrexate)"), when="2025-05-02"),
    ],
    ids=["administration-wording", "statement-wording", "procedure"],
)
def test_intrathecal_wording_counts(resource: dict[str, object]) -> None:
    assert value(facts_of(resource), "intrathecal") == "yes"


@pytest.mark.parametrize(
    "resource",
    [
        med_admin("a1", med("Methotrexate 12 mg"), when="2025-05-02"),  # no route: IV, oral …
        med_admin("a1", med("IT methotrexate"), status="not-done", when="2025-05-02"),
        med_admin("a1", med("IT methotrexate"), status="entered-in-error", when="2025-05-02"),
        med_request("r1", med("IT methotrexate 12 mg"), status="active"),  # ordered, not given
        procedure("p1", cc("Lumbar puncture"), when="2025-05-02"),  # an assessment
        procedure("p1", cc("No intrathecal chemotherapy given"), when="2025-05-02"),
        procedure("p1", cc("Intrathecal chemotherapy"), status="not-done", when="2025-05-02"),
    ],
    ids=[
        "no-route",
        "not-done",
        "entered-in-error",
        "order",
        "lumbar-puncture",
        "negated",
        "procedure-not-done",
    ],
)
def test_what_is_not_intrathecal_therapy_given(resource: dict[str, object]) -> None:
    assert value(facts_of(resource), "intrathecal") == "unknown"
