"""Value sets: loading (errors with file, line and key path), code and text matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.errors import RuleSetError
from cds_service.terminology import (
    ICD10CM,
    LOINC,
    RXNORM,
    default_terminology,
    default_valueset_dir,
    load_valuesets,
    normalise_text,
)

T = default_terminology()


def test_default_value_sets_load_and_are_cached() -> None:
    assert default_terminology() is T
    assert default_valueset_dir().name == "valuesets"
    assert {
        "drugs",
        "tki",
        "tki-t315i-ineffective",
        "cd19-directed",
        "diagnoses",
        "bcr-abl1",
    } <= set(T.valuesets)
    assert T.members("tki") == {
        "imatinib",
        "dasatinib",
        "nilotinib",
        "bosutinib",
        "ponatinib",
        "asciminib",
    }
    assert T.in_valueset("ponatinib", "tki") and not T.in_valueset(
        "ponatinib", "tki-t315i-ineffective"
    )


def test_every_code_says_where_it_was_verified() -> None:
    for concept in T.concepts.values():
        for code in concept.codes:
            assert code.verified, (concept.id, code.code)


@pytest.mark.parametrize(
    ("concept", "system", "code"),
    [
        ("imatinib", RXNORM, "282388"),
        ("dasatinib", RXNORM, "475342"),
        ("bosutinib", RXNORM, "1307619"),
        ("blinatumomab", RXNORM, "1597258"),
        ("inotuzumab_ozogamicin", RXNORM, "1942950"),
        ("b_all", "http://snomed.info/sct", "91857003"),
        ("bcr_abl1_ratio", LOINC, "46434-7"),
        ("abl1_mutation_analysis", LOINC, "55135-8"),
        ("csf_blasts", LOINC, "35068-6"),
    ],
)
def test_evidence_codes_are_present_and_verified(concept: str, system: str, code: str) -> None:
    (hit,) = [m for m in T.match_code(system, code) if m.concept == concept]
    assert hit.code.is_verified


def test_unverified_codes_are_marked() -> None:
    pos = [c for c in T.concepts["result_positive"].codes if c.code == "POS"]
    assert pos and not pos[0].is_verified


def test_no_invented_codes_for_text_only_concepts() -> None:
    for cid in (
        "cns_leukemia",
        "testicular_involvement",
        "haploidentical",
        "hypertension",
        "cd19_test",
        "mrd",
    ):
        assert T.concepts[cid].codes == ()


@pytest.mark.parametrize(
    ("system", "code", "concept"),
    [
        (ICD10CM, "C91.02", "all_in_relapse"),
        (ICD10CM, "c9102", "b_all"),
        ("urn:oid:2.16.840.1.113883.6.90", "C91.00", "b_all"),
        ("http://hl7.org/fhir/sid/icd-10", "C91.0", "b_all"),
        ("urn:oid:2.16.840.1.113883.6.88", 475342, "dasatinib"),
        ("http://www.whocc.no/atc/", "L01EA05", "ponatinib"),
        ("http://www.genenames.org", "76", "abl1_gene"),
    ],
)
def test_code_matching_is_tolerant(system: str, code: object, concept: str) -> None:
    assert concept in {m.concept for m in T.match_code(system, code)}


def test_code_matching_needs_the_system() -> None:
    assert T.match_code(None, "475342") == ()
    assert T.match_code("http://example.org", "475342") == ()
    assert T.match_code(ICD10CM, "J45.909") == ()  # asthma: in no value set


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("Ph+ ALL", "ph positive all"),
        ("CD19-, CD10+", "cd19 negative | cd10 positive"),
        ("BCR::ABL1 t(9;22)(q34;q11)", "bcr abl1 t 9 22 q34 q11"),
        ("Acute lymphoblastic leukaemia.", "acute lymphoblastic leukemia |"),
        ("B−ALL", "b all"),
    ],
)
def test_normalise_text(text: str, normalised: str) -> None:
    assert normalise_text(text) == normalised


def test_text_matching_flags_negation_and_vetoes() -> None:
    got = {(m.concept, m.negated) for m in T.match_text("Ph+ B-ALL, no CNS involvement")}
    assert (
        ("ph_positive", False) in got and ("b_all", False) in got and ("cns_leukemia", True) in got
    )
    assert "b_all" not in {m.concept for m in T.match_text("T-cell acute lymphoblastic leukemia")}
    assert "b_all" in {m.concept for m in T.match_text("ALL")}
    assert "b_all" not in {m.concept for m in T.match_text("all other")}
    assert T.match_text("") == () and T.match_text(None) == ()


def write(tmp: Path, name: str, text: str) -> None:
    (tmp / name).write_text(text, encoding="utf-8")


def test_load_errors_are_reported_together_with_file_line_and_path(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        "id: a\ntitle: A\nconcepts:\n  - id: x\n    codes:\n      - {system: s, code: '1'}\n    colour: red\n",
    )
    write(tmp_path, "b.yaml", "id: b\ntitle: B\ninclude: [nope]\n")
    write(tmp_path, "c.yaml", "id: c\nid: c\n")
    write(tmp_path, "d.yaml", "id: wrong\ntitle: D\nconcepts:\n  - id: x\n    text: [x]\n")
    with pytest.raises(RuleSetError) as info:
        load_valuesets(tmp_path)
    details = info.value.details
    joined = "\n".join(details)
    assert f"{tmp_path.name}/a.yaml:6: concepts[0](x).codes[0].verified" in joined
    assert f"{tmp_path.name}/a.yaml:7: concepts[0].colour: unknown key" in joined
    assert f"{tmp_path.name}/b.yaml:3: include[0]: unknown concept id 'nope'" in joined
    assert f"{tmp_path.name}/c.yaml:2: (yaml): duplicate key 'id'" in joined
    assert "d.yaml:1: id: must equal the file name" in joined
    assert "concept 'x' already defined" in joined
    assert len(details) == 6


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError):
        load_valuesets(tmp_path / "absent")
