"""Genomic shapes as the HL7 Genomics Reporting and mCODE IGs send them: gene systems, HGVS
components, LL1971-2 values, the R4 genetics extensions, BCR::ABL1 fusions (Ph evidence, never a
kinase-domain test), and uninterpretable variants (unknown, never "tested, absent")."""

from __future__ import annotations

import pytest

from tests.test_facts_builders import (
    HGNC,
    HGVS,
    LOINC,
    SCT,
    cc,
    facts_of,
    observation,
    value,
)

VAR = cc(None, (LOINC, "69548-6", "Genetic variant assessment"))
PRESENT = cc(None, (LOINC, "LA9633-4", "Present"))
ABSENT = cc(None, (LOINC, "LA9634-2", "Absent"))
NO_CALL = cc(None, (LOINC, "LA18198-4", "No call"))
INDETERMINATE = cc(None, (LOINC, "LA11884-6", "Indeterminate"))


def gene(system: str, code: str, display: str | None = None) -> dict[str, object]:
    coding: dict[str, str] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"code": cc(None, (LOINC, "48018-6")), "valueCodeableConcept": {"coding": [coding]}}


def comp(
    loinc: str,
    *,
    code: str | None = None,
    display: str | None = None,
    text: str | None = None,
    string: str | None = None,
) -> dict[str, object]:
    out: dict[str, object] = {"code": cc(None, (LOINC, loinc))}
    if string is not None:
        out["valueString"] = string
    else:
        coding = {
            "system": HGVS,
            **({"code": code} if code else {}),
            **({"display": display} if display else {}),
        }
        out["valueCodeableConcept"] = {"coding": [coding], **({"text": text} if text else {})}
    return out


def var(
    *components: dict[str, object], value_cc: dict[str, object] | None = PRESENT, **extra: object
) -> dict[str, object]:
    o = observation("v", VAR, "2024-03-01", component=list(components), **extra)
    if value_cc is not None:
        o["valueCodeableConcept"] = value_cc
    return o


ABL1 = gene(HGNC, "HGNC:76", "ABL1")
P_T315I = comp("48005-3", code="p.Thr315Ile")


@pytest.mark.parametrize(
    "gene_comp",
    [
        gene(HGNC, "HGNC:76", "ABL1"),
        gene(HGNC, "HGNC:76"),
        gene(HGNC, "76"),
        gene("http://www.genenames.org/geneId", "HGNC:76"),
        gene("http://www.genenames.org/geneId", "76"),
        gene("urn:oid:2.16.840.1.113883.6.281", "76"),
        gene(HGNC, "ABL1"),
        {"code": cc(None, (LOINC, "48018-6")), "valueCodeableConcept": cc("ABL1")},
    ],
    ids=[
        "hgnc-display",
        "hgnc-no-display",
        "bare-76",
        "geneId",
        "geneId-bare",
        "oid",
        "symbol-code",
        "symbol-text",
    ],
)
def test_abl1_gene_in_every_shape(gene_comp: dict[str, object]) -> None:
    assert value(facts_of(var(gene_comp, P_T315I)), "abl1.t315i") == "yes"


@pytest.mark.parametrize(
    "change",
    [
        comp("48005-3", code="p.Thr315Ile"),
        comp("48005-3", string="p.(Thr315Ile)"),
        comp("48004-6", code="NM_005157.6:c.944C>T"),
        comp("48004-6", code="NM_007313.2:c.1001C>T"),
        comp("81290-9", code="NM_005157.6:c.944C>T"),
        comp("81252-9", display="NM_005157.6(ABL1):c.944C>T (p.Thr315Ile)"),
        comp("81252-9", text="ABL1 p.T315I"),
    ],
    ids=[
        "p-code",
        "p-string",
        "c-1a",
        "c-1b",
        "genomic-hgvs-component",
        "clinvar-display",
        "clinvar-text",
    ],
)
def test_t315i_in_every_hgvs_slot(change: dict[str, object]) -> None:
    f = facts_of(var(ABL1, change))
    assert value(f, "abl1.t315i") == "yes"
    assert value(f, "abl1.mutations") == frozenset({"T315I"})


def test_r4_core_genetics_extensions() -> None:
    o = observation(
        "v",
        cc("ABL1 mutation", (LOINC, "55233-1")),
        "2024-03-01",
        valueCodeableConcept=PRESENT,
        extension=[
            {
                "url": "http://hl7.org/fhir/StructureDefinition/observation-geneticsGene",
                "valueCodeableConcept": cc(None, (HGNC, "HGNC:76", "ABL1")),
            },
            {
                "url": "http://hl7.org/fhir/StructureDefinition/observation-geneticsAminoAcidChange",
                "extension": [{"url": "Name", "valueCodeableConcept": cc("p.Thr315Ile")}],
            },
        ],
    )
    assert value(facts_of(o), "abl1.t315i") == "yes"


@pytest.mark.parametrize(
    ("value_cc", "interpretation", "expected"),
    [
        (PRESENT, None, "yes"),
        (ABSENT, None, "no"),
        (NO_CALL, None, "unknown"),
        (INDETERMINATE, None, "unknown"),
        (None, None, "unknown"),
        (None, [cc("Positive", (SCT, "10828004"))], "unknown"),
        (None, [cc("Negative", (SCT, "260385009"))], "unknown"),
    ],
    ids=[
        "present",
        "absent",
        "no-call",
        "indeterminate",
        "no-value",
        "interpretation-positive-only",
        "interpretation-negative-only",
    ],
)
def test_ll1971_2_values(
    value_cc: dict[str, object] | None, interpretation: object, expected: str
) -> None:
    extra = {"interpretation": interpretation} if interpretation else {}
    assert value(facts_of(var(ABL1, P_T315I, value_cc=value_cc, **extra)), "abl1.t315i") == expected


@pytest.mark.parametrize(
    "change",
    [
        comp("48004-6", code="c.944C>T"),  # no transcript: the isoforms number codons differently
        comp("81290-9", code="NC_000009.12:g.130872896C>T"),
        comp("48004-6", string="c.1234_1240del"),
        comp("48005-3", string="see report"),
    ],
    ids=["bare-c", "genomic-coordinates", "indel", "free-text"],
)
def test_uninterpretable_variant_is_unknown_never_absent(change: dict[str, object]) -> None:
    f = facts_of(var(ABL1, change))
    assert value(f, "abl1.t315i") == "unknown"
    assert value(f, "abl1.mutation_test") == "yes"  # a result exists: it just cannot be read
    f = facts_of(var(ABL1, change, value_cc=ABSENT))
    assert value(f, "abl1.t315i") == "unknown"


def test_another_gene_is_ignored() -> None:
    f = facts_of(var(gene(HGNC, "HGNC:3236", "EGFR"), comp("48005-3", code="p.Thr790Met")))
    assert value(f, "abl1.mutation_test") == "unknown"


@pytest.mark.parametrize(
    "fusion",
    [
        var(gene(HGNC, "HGNC:1014", "BCR"), gene(HGNC, "HGNC:76", "ABL1")),
        var(gene(HGNC, "1014"), gene("http://www.genenames.org/geneId", "76")),
        var({"code": cc(None, (LOINC, "48018-6")), "valueCodeableConcept": cc("BCR::ABL1")}),
        var(ABL1, {"code": cc(None, (LOINC, "81291-7")), "valueString": "t(9;22)(q34.1;q11.2)"}),
        var(
            ABL1,
            {
                "code": cc("Structural variant type"),
                "valueCodeableConcept": cc("Chromosomal translocation"),
            },
        ),
        var(
            gene(HGNC, "HGNC:1014", "BCR"),
            gene(HGNC, "HGNC:76", "ABL1"),
            comp("81290-9", code="NM_005157.6:c.1076T>G"),  # the mCODE fusion example's shape
        ),
    ],
    ids=[
        "bcr-and-abl1",
        "bare-ids",
        "fusion-gene-text",
        "iscn",
        "translocation-wording",
        "mcode-example",
    ],
)
def test_fusion_is_ph_evidence_not_a_mutation_test(fusion: dict[str, object]) -> None:
    f = facts_of(fusion)
    assert value(f, "ph_status") == "positive"
    assert value(f, "abl1.mutation_test") == "unknown"
    assert value(f, "abl1.t315i") == "unknown"


def test_fusion_absent_is_qualitative_negative_and_not_called_is_nothing() -> None:
    both = (gene(HGNC, "HGNC:1014", "BCR"), gene(HGNC, "HGNC:76", "ABL1"))
    assert value(facts_of(var(*both, value_cc=ABSENT)), "ph_status") == "negative"
    assert value(facts_of(var(*both, value_cc=NO_CALL)), "ph_status") == "unknown"


def test_mutation_analysis_text_with_an_equivocal_call() -> None:
    kd = cc("ABL1 kinase domain mutation analysis", (LOINC, "55135-8"))
    f = facts_of(observation("k", kd, valueString="E255K detected; T315I: no call"))
    assert value(f, "abl1.mutations") == frozenset({"E255K"})
    assert value(f, "abl1.t315i") == "unknown"  # never "not among the mutations reported"
