"""The citation registry: identifiers, verification status, the forbidden list, presentation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from cds_service.citations import (
    Citation,
    Identifier,
    evidence_entry,
    evidence_tag,
    parse_registry,
    reference_entry,
    verified_links,
)
from cds_service.ruleset.loader import load_ruleset
from cds_service.yaml_source import parse_yaml

REPO = Path(__file__).resolve().parent.parent
S0_PRINTED_DOI = "10.1038/s41598-025-34513-2"


def registry_data() -> dict[str, Any]:
    doc = parse_yaml((REPO / "rules" / "citations.yaml").read_text(encoding="utf-8"))
    assert not doc.problems
    assert isinstance(doc.data, dict)
    return doc.data


def problems_of(data: dict[str, Any]) -> list[str]:
    _, problems = parse_registry(data)
    return [f"{'.'.join(str(p) for p in path)}: {message}" for path, message in problems]


def test_the_registry_is_clean_and_forbids_the_s0_printed_reference() -> None:
    data = registry_data()
    assert problems_of(data) == []
    forbidden = {f["doi"]: f["reason"] for f in data["forbidden"]}
    assert S0_PRINTED_DOI in forbidden
    assert "Zeng" in forbidden[S0_PRINTED_DOI]


def test_the_s0_primary_source_is_the_ash_abstract() -> None:
    registry, _ = parse_registry(registry_data())
    assert registry is not None
    s0 = registry.get("ansuinelli_ash2024")
    assert s0.levels == ("abstract",) and s0.n == 153
    assert s0.url is not None and s0.url.value.endswith("Paper208827.html")
    assert s0.journal is not None and s0.journal.status == "unverified"


@pytest.mark.parametrize(
    "where",
    [("doi", "value"), ("url", "value")],
)
def test_a_citation_using_the_forbidden_doi_is_refused(where: tuple[str, str]) -> None:
    data = copy.deepcopy(registry_data())
    entry = data["citations"]["porkka_blood2008"]
    if where[0] == "doi":
        entry["doi"]["value"] = S0_PRINTED_DOI
    else:
        entry["url"] = {"value": f"https://doi.org/{S0_PRINTED_DOI}", "status": "verified"}
    problems = problems_of(data)
    assert any(
        p.startswith("citations.porkka_blood2008: cites forbidden DOI 10.1038/s41598-025-34513-2")
        for p in problems
    )


def test_a_citation_without_any_identifier_needs_a_reason() -> None:
    data = copy.deepcopy(registry_data())
    del data["citations"]["cart_after_blina_case"]["no_identifier_reason"]
    assert problems_of(data) == [
        "citations.cart_after_blina_case: a citation needs a DOI, a PMID or a URL (or, when none "
        "exists, no_identifier_reason saying why)"
    ]


def test_an_identifier_and_a_missing_identifier_reason_contradict() -> None:
    data = copy.deepcopy(registry_data())
    data["citations"]["porkka_blood2008"]["no_identifier_reason"] = "none found"
    assert problems_of(data) == [
        "citations.porkka_blood2008: no_identifier_reason given although an identifier exists"
    ]


def test_malformed_identifiers() -> None:
    data = copy.deepcopy(registry_data())
    c = data["citations"]["cao_frontimmunol2023"]
    c["doi"]["value"] = "fimmu.2023.1181620"
    c["pmid"]["value"] = "PMID37143650"
    c["url"] = {"value": "http://example.org/x", "status": "verified"}
    assert sorted(problems_of(data)) == [
        "citations.cao_frontimmunol2023.doi: 'fimmu.2023.1181620' is not a DOI (10.xxxx/...)",
        "citations.cao_frontimmunol2023.pmid: 'PMID37143650' is not a PMID",
        "citations.cao_frontimmunol2023.url: URLs must be absolute https:// addresses",
    ]


def test_a_verified_citation_cannot_carry_an_unverified_identifier() -> None:
    data = copy.deepcopy(registry_data())
    data["citations"]["cunningham_ejh2025"]["status"] = "verified"
    assert problems_of(data) == [
        "citations.cunningham_ejh2025.status: status 'verified' but an identifier is not "
        "verified (use 'partly')"
    ]


def test_unknown_keys_and_levels_are_refused() -> None:
    data = copy.deepcopy(registry_data())
    data["citations"]["cao_frontimmunol2023"]["impact"] = "high"
    data["citations"]["porkka_blood2008"]["levels"] = ["anecdote"]
    problems = problems_of(data)
    assert any(
        p.startswith("citations.cao_frontimmunol2023.impact: Extra inputs") for p in problems
    )
    assert any(
        p.startswith("citations.porkka_blood2008.levels.0: Input should be") for p in problems
    )


def _citation(**identifiers: Identifier) -> Citation:
    return Citation(
        short="Doe et al. 2020",
        authors="Doe J, et al.",
        title="A title",
        year=2020,
        design="a series",
        n=12,
        levels=("retrospective", "preclinical"),
        status="partly",
        **identifiers,  # type: ignore[arg-type]
    )


def test_only_verified_identifiers_become_links() -> None:
    c = _citation(
        doi=Identifier(value="10.1000/abc", status="verified"),
        pmid=Identifier(value="123", status="unverified"),
        url=Identifier(value="https://example.org/x", status="partly"),
    )
    assert verified_links(c) == [
        ("Doe et al. 2020 — doi:10.1000/abc", "https://doi.org/10.1000/abc")
    ]
    text = reference_entry(c)
    assert "DOI [10.1000/abc](https://doi.org/10.1000/abc)" in text
    assert "PMID 123 (unverified)" in text and "pubmed" not in text
    assert (
        "URL `https://example.org/x` (partly verified)" in text
        and "](https://example.org" not in text
    )


def test_evidence_tag_and_entry_show_level_design_and_size() -> None:
    c = _citation(doi=Identifier(value="10.1000/abc", status="verified"))
    assert evidence_tag(c) == "(Doe et al. 2020: retrospective series + preclinical, n=12)"
    assert (
        evidence_entry(c) == "Doe et al. 2020 — retrospective series + preclinical: a series; n=12"
    )


def test_every_registry_citation_is_used_by_a_rule() -> None:
    ruleset = load_ruleset(REPO / "rules", REPO / "cards")
    used = {key for rule in ruleset.rules for key in rule.citations}
    assert set(ruleset.citations.citations) - used == set()
