"""ABL1 kinase-domain mutations: T315I in every documented form, both ways."""

from __future__ import annotations

import pytest

from cds_service.facts.variants import mutations_in_text, protein_changes
from cds_service.terminology import default_terminology
from tests.test_facts_builders import HGNC, LOINC, SCT, cc, facts_of, observation, value, variant

ANALYSIS = cc(None, (LOINC, "55135-8", "ABL1 gene mutations found"))
ABSENT = cc(None, (LOINC, "LA9634-2", "Absent"))


@pytest.mark.parametrize(
    "obs",
    [
        variant("v", p="p.Thr315Ile"),
        variant("v", p="p.(Thr315Ile)"),
        variant("v", p="p.T315I"),
        variant("v", p="T315I"),
        variant("v", c="NM_005157.6:c.944C>T"),
        variant("v", c="NM_007313.2:c.1001C>T"),
        variant("v", c="c.944C>T", transcript="NM_005157.6"),
        variant("v", p="p.Thr315Ile", gene=None, transcript="NM_005157.6"),
        variant("v", p="p.Thr315Ile", gene=("http://example.org/genes", "x", "ABL1")),
        observation("m", ANALYSIS, valueString="T315I detected"),
        observation("m", ANALYSIS, valueCodeableConcept=cc("p.(Thr315Ile)")),
        observation(
            "m",
            cc("BCR-ABL1 kinase domain mutation analysis (local)"),
            valueString="Mutation found: p.T315I (VAF 40%)",
        ),
        observation(
            "m", cc("ABL1 T315I mutation"), valueCodeableConcept=cc("Detected", (SCT, "260373001"))
        ),
        observation(
            "m",
            ANALYSIS,
            component=[{"code": cc(None, (LOINC, "48005-3")), "valueString": "p.Thr315Ile"}],
        ),
    ],
    ids=[
        "p3",
        "p3-paren",
        "p1",
        "bare-1",
        "c-1a",
        "c-1b",
        "c-transcript-component",
        "gene-from-transcript",
        "gene-text",
        "analysis-text",
        "analysis-coded-text",
        "local-code",
        "single-assay",
        "analysis-component",
    ],
)
def test_t315i_detected(obs: dict[str, object]) -> None:
    f = facts_of(obs)
    assert value(f, "abl1.t315i") == "yes"
    assert "T315I" in value(f, "abl1.mutations")  # type: ignore[operator]
    assert value(f, "abl1.mutation_test") == "yes"
    assert f.get("abl1.t315i").provenance[0].resource.startswith("Observation/")


@pytest.mark.parametrize(
    "obs",
    [
        variant("v", p="p.Thr315Ile", value=ABSENT),
        observation("m", ANALYSIS, valueString="No mutation detected"),
        observation("m", ANALYSIS, valueString="E255K detected; T315I not detected"),
        observation("m", ANALYSIS, valueCodeableConcept=cc("Negative", (SCT, "260385009"))),
        observation(
            "m",
            cc("ABL1 T315I mutation"),
            valueCodeableConcept=cc("Not detected", (SCT, "260415000")),
        ),
        variant("v", p="p.Glu255Lys"),
    ],
    ids=[
        "variant-absent",
        "no-mutation",
        "other-detected-t315i-negated",
        "coded-negative",
        "single-assay-negative",
        "other-variant",
    ],
)
def test_t315i_tested_absent(obs: dict[str, object]) -> None:
    f = facts_of(obs)
    assert value(f, "abl1.t315i") == "no"
    assert value(f, "abl1.mutation_test") == "yes"


def test_other_mutation_is_listed() -> None:
    f = facts_of(observation("m", ANALYSIS, valueString="E255K detected; T315I not detected"))
    assert value(f, "abl1.mutations") == frozenset({"E255K"})


@pytest.mark.parametrize(
    "obs",
    [
        variant("v", p="p.Thr315Ile", gene=(HGNC, "HGNC:3236", "EGFR")),
        variant("v", c="c.944C>T"),  # no transcript: isoforms number codons differently
        observation("m", ANALYSIS, status="entered-in-error", valueString="T315I"),
        observation("m", cc("EGFR mutation analysis"), valueString="T790M detected"),
    ],
    ids=["other-gene", "bare-c", "entered-in-error", "unrelated-test"],
)
def test_t315i_not_claimed(obs: dict[str, object]) -> None:
    f = facts_of(obs)
    assert value(f, "abl1.t315i") != "yes"
    assert "T315I" not in value(f, "abl1.mutations")  # type: ignore[operator]


def test_no_result_is_unknown() -> None:
    f = facts_of()
    assert value(f, "abl1.t315i") == "unknown"
    assert value(f, "abl1.mutation_test") == "unknown"


def test_history_of_t315i_stays_yes_after_negative_test() -> None:
    f = facts_of(
        observation("old", ANALYSIS, "2020-01-01", valueString="T315I detected"),
        observation("new", ANALYSIS, "2023-01-01", valueString="No mutations detected"),
    )
    assert value(f, "abl1.t315i") == "yes"
    assert str(f.get("abl1.mutation_test").date) == "2023-01-01"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p.Thr315Ile", ["T315I"]),
        ("p.(Thr315Ile)", ["T315I"]),
        ("T315I and E255K", ["T315I", "E255K"]),
        ("p.Y253H, p.F317L", ["Y253H", "F317L"]),
        ("BCR-ABL1 e1a2 transcript, t(9;22)(q34;q11.2), p190, CD19", []),
        ("NM_005157.6:c.944C>T", []),
    ],
)
def test_protein_changes(text: str, expected: list[str]) -> None:
    assert protein_changes(text) == expected


def test_mutations_in_text_clauses() -> None:
    t = default_terminology()
    assert mutations_in_text(t, "Negative for T315I, E255K detected") == (
        ["E255K"],
        ["T315I"],
        False,
        False,
    )
    assert mutations_in_text(t, "No ABL1 kinase domain mutation detected") == ([], [], True, False)
    assert mutations_in_text(t, "No T315I. E255K detected.") == (["E255K"], ["T315I"], False, False)
    assert mutations_in_text(t, "T315I: no call") == ([], [], False, True)
