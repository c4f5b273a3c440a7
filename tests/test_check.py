"""`cds-service check`: the whole rule set passes; each kind of defect makes it fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cds_service import wire
from cds_service.check import _unverified_links, run_check
from cds_service.ruleset.loader import load_ruleset

REPO = Path(__file__).resolve().parent.parent


def test_the_repository_rule_set_passes() -> None:
    report = run_check(REPO / "rules", REPO / "cards")
    assert report.problems == []
    assert report.ok
    text = report.format()
    ruleset = load_ruleset(REPO / "rules", REPO / "cards")
    for rule in ruleset.rules:
        assert rule.id in text
    total = sum(len(r.cases) for r in ruleset.rules)
    assert text.endswith(f"OK: {len(ruleset.rules)} rules, {total}/{total} cases passed")
    for row in report.rows:
        assert 0 < row.longest_summary < 140
        assert row.cases_passed == row.cases_total


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "rules", tmp_path / "rules", ignore=shutil.ignore_patterns("README.md"))
    shutil.copytree(REPO / "cards", tmp_path / "cards")
    shutil.copytree(REPO / "fhir_fixtures" / "rules", tmp_path / "fhir_fixtures" / "rules")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def check(root: Path) -> tuple[bool, list[str]]:
    report = run_check(root / "rules", root / "cards")
    return report.ok, report.problems


def test_a_case_that_does_not_behave_fails(repo_copy: Path) -> None:
    rule = repo_copy / "rules" / "ponatinib-boxed-warning.yaml"
    edit(
        rule, "    order: dasatinib\n    expect: silent", "    order: dasatinib\n    expect: fires"
    )
    ok, problems = check(repo_copy)
    assert not ok
    assert problems == [
        "rules/ponatinib-boxed-warning.yaml: cases[1] (fires-ponatinib-boxed-warning.json, order-select, order=dasatinib): "
        "expected 'ponatinib-boxed-warning' to fire; it stayed silent (fired: none)"
    ]


def test_a_silent_case_that_fires_fails(repo_copy: Path) -> None:
    rule = repo_copy / "rules" / "t315i-tki-ineffective.yaml"
    edit(
        rule, "    order: ponatinib\n    expect: silent", "    order: imatinib\n    expect: silent"
    )
    ok, problems = check(repo_copy)
    assert not ok
    assert len(problems) == 1 and "expected silence; 't315i-tki-ineffective' fired" in problems[0]


def test_a_missing_fixture_fails(repo_copy: Path) -> None:
    (repo_copy / "fhir_fixtures" / "rules" / "silent-t315i-absent.json").unlink()
    ok, problems = check(repo_copy)
    assert not ok
    assert any("silent-t315i-absent.json" in p and "cannot read the fixture" in p for p in problems)


def test_a_summary_of_140_characters_or_more_fails(repo_copy: Path) -> None:
    rule = repo_copy / "rules" / "asciminib-ph-all.yaml"
    edit(
        rule,
        "    Asciminib is labelled for Ph+ CML",
        "    " + "Very long words " * 6 + "Asciminib is labelled for Ph+ CML",
    )
    ok, problems = check(repo_copy)
    assert not ok
    assert any("card of 'asciminib-ph-all': summary has" in p for p in problems)


@pytest.mark.parametrize(
    ("sentence", "what"),
    [
        ("Stop imatinib now.", "a sentence that opens with an order"),
        ("The team must switch.", "'must'"),
        ("Never give asciminib here.", "a prohibition"),
    ],
)
def test_directive_wording_fails(repo_copy: Path, sentence: str, what: str) -> None:
    edit(
        repo_copy / "cards" / "asciminib-ph-all.md.j2",
        "Consider reviewing the indication,",
        f"{sentence} Consider reviewing the indication,",
    )
    ok, problems = check(repo_copy)
    assert not ok
    assert any(f"text reads as an order ({what}" in p for p in problems)


def test_a_citation_never_cited_beside_a_claim_fails(repo_copy: Path) -> None:
    edit(
        repo_copy / "cards" / "ponatinib-boxed-warning.md.j2",
        " {{ cite('iclusig_label') }}",
        "",
    )
    ok, problems = check(repo_copy)
    assert not ok
    assert any("never cites 'iclusig_label' beside a claim" in p for p in problems)


def test_the_forbidden_doi_in_a_template_fails(repo_copy: Path) -> None:
    edit(
        repo_copy / "cards" / "frontline-tki-blinatumomab-immune.md.j2",
        "Shown for information only.",
        "See doi 10.1038/s41598-025-34513-2.",
    )
    ok, problems = check(repo_copy)
    assert not ok
    assert any("mentions forbidden DOI 10.1038/s41598-025-34513-2" in p for p in problems)


def test_a_load_error_is_reported_not_raised(repo_copy: Path) -> None:
    edit(repo_copy / "rules" / "asciminib-ph-all.yaml", "op: equals", "op: eqals")
    report = run_check(repo_copy / "rules", repo_copy / "cards")
    assert not report.ok and report.rows == []
    assert any(
        "rules/asciminib-ph-all.yaml:" in e and "unknown operator 'eqals'" in e
        for e in report.errors
    )
    assert "FAILED: 0 rules" in report.format()


def test_a_link_to_an_unverified_identifier_is_caught() -> None:
    ruleset = load_ruleset(REPO / "rules", REPO / "cards")
    rule = ruleset.rule("blinatumomab-dli-after-haplo")  # its PMID is only partly verified
    card = wire.Card(
        summary="s",
        indicator="info",
        source=wire.Source(label="x"),
        links=[
            wire.Link(
                label="Perugia", url="https://pubmed.ncbi.nlm.nih.gov/38003295/", type="absolute"
            )
        ],
    )
    assert _unverified_links(ruleset, rule, card) == [
        "links https://pubmed.ncbi.nlm.nih.gov/38003295/, an identifier of 'ijms2023_blina_dli' "
        "that is not verified"
    ]


@pytest.mark.parametrize(
    ("change", "label"),
    [("enabled: true", "enabled: false"), ("enabled: true", "enabled: true\nstatus: retired")],
    ids=["disabled", "retired"],
)
def test_a_switched_off_rule_is_still_checked(repo_copy: Path, change: str, label: str) -> None:
    """Its cases run as if it were active: its firing cases pass, a broken one fails."""
    rule = repo_copy / "rules" / "t315i-tki-ineffective.yaml"
    edit(rule, change, label)
    report = run_check(repo_copy / "rules", repo_copy / "cards")
    assert report.ok, report.problems
    row = next(r for r in report.rows if r.rule_id == "t315i-tki-ineffective")
    assert row.cases_passed == row.cases_total > 0
    assert ("[disabled]" if "false" in label else "[retired]") in report.format()
    edit(rule, "op: equals\n  value: yes", "op: equals\n  value: no")
    assert not run_check(repo_copy / "rules", repo_copy / "cards").ok
