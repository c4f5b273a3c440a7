"""The one polarity engine (terminology.Cues): affirmed, negated, equivocal — its cue lists are
data (rules/valuesets/polarity.yaml), and every reader that reads wording uses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.terminology import default_terminology, load_valuesets, normalise_text

T = default_terminology()


def pol(text: str, concept: str) -> str | None:
    """Polarity of concept's mention in text (None when not mentioned)."""
    found = [m.polarity for m in T.match_text(text) if m.concept == concept]
    return found[0] if found else None


@pytest.mark.parametrize(
    ("text", "concept", "expected"),
    [
        ("CNS involvement", "cns_leukemia", "affirmed"),
        ("no CNS involvement", "cns_leukemia", "negated"),
        ("negative for CNS disease", "cns_leukemia", "negated"),
        ("CNS involvement not detected", "cns_leukemia", "negated"),
        ("without CNS involvement", "cns_leukemia", "negated"),
        ("CNS involvement was ruled out", "cns_leukemia", "negated"),
        ("suspicious for CNS involvement", "cns_leukemia", "equivocal"),
        ("possible CNS relapse", "cns_leukemia", "equivocal"),
        ("CNS involvement cannot be excluded", "cns_leukemia", "equivocal"),
        ("rule out CNS leukemia", "cns_leukemia", "equivocal"),
        ("no change in CNS involvement", "cns_leukemia", "affirmed"),  # pseudo-negation
        ("no marrow disease, but CNS involvement", "cns_leukemia", "affirmed"),  # scope ends
        ("No T315I. E255K detected.", "abl1_t315i", "negated"),
        ("T315I: no call", "abl1_t315i", "equivocal"),
        ("T315I indeterminate", "abl1_t315i", "equivocal"),
        ("Relapsed B-ALL", "b_all", "affirmed"),
    ],
)
def test_polarity_of_mentions(text: str, concept: str, expected: str) -> None:
    assert pol(text, concept) == expected


def test_scope_is_the_clause() -> None:
    # the negation of the first clause does not reach the second
    assert pol("no testicular relapse. Skin infiltrates present", "skin_involvement") == "affirmed"
    assert pol("no testicular relapse", "testicular_involvement") == "negated"


def test_whole_text_polarity() -> None:
    cues = T.cues
    assert cues.of_text(normalise_text("Indeterminate")) == "equivocal"
    assert cues.of_text(normalise_text("Not detected")) == "negated"
    assert cues.of_text(normalise_text("No change")) == "affirmed"
    assert cues.of_text(normalise_text("Present")) == "affirmed"


def test_cue_lists_are_data(tmp_path: Path) -> None:
    """A deployment's own cue list changes what is read as negated: no code involved."""
    import shutil

    from cds_service.terminology import CUE_CONCEPTS

    src = Path(__file__).resolve().parent.parent / "rules" / "valuesets"
    for f in src.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    polarity = (tmp_path / "polarity.yaml").read_text(encoding="utf-8")
    (tmp_path / "polarity.yaml").write_text(
        polarity.replace("      - suspicious\n", "      - suspicious\n      - kein\n", 1),
        encoding="utf-8",
    )
    term = load_valuesets(tmp_path)
    assert [
        m.polarity for m in term.match_text("kein CNS involvement") if m.concept == "cns_leukemia"
    ] == ["equivocal"]
    assert pol("kein CNS involvement", "cns_leukemia") == "affirmed"
    assert set(CUE_CONCEPTS.values()) <= set(term.concepts)


def test_cue_concepts_are_not_matched_as_findings() -> None:
    assert not [m for m in T.match_text("no") if m.concept.startswith("cue_")]
