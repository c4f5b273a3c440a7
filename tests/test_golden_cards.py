"""Every rule case's card text against its golden file (tests/golden/cards/), and the version
discipline: a text change without a rule `version` bump fails with a message that says so."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

import pytest

from cds_service.cards import CardRenderer
from cds_service.ruleset.loader import RuleSet, load_ruleset
from tests import golden_cards as G


@lru_cache(maxsize=1)
def loaded() -> tuple[RuleSet, CardRenderer]:
    ruleset = load_ruleset(G.REPO / "rules", G.REPO / "cards")
    return ruleset, CardRenderer(ruleset, G.REPO / "cards")


@lru_cache(maxsize=1)
def goldens() -> tuple[G.Golden, ...]:
    return tuple(G.render(*loaded()))


@pytest.mark.parametrize("golden", goldens(), ids=lambda g: str(g.path.relative_to(G.GOLDEN)))
def test_card_text_matches_its_golden_file(golden: G.Golden) -> None:
    problems = [d.message for d in G.differences([golden], orphans=False)]
    assert not problems, problems[0]


def test_no_golden_file_without_a_rule_case() -> None:
    orphans = [d.message for d in G.differences(list(goldens())) if d.kind == "orphan"]
    assert not orphans, orphans


def test_every_rule_has_golden_texts() -> None:
    ruleset, _ = loaded()
    with_text = {g.rule.id for g in goldens()}
    assert with_text == {r.id for r in ruleset.rules if r.evaluated}


def _moved(golden: G.Golden, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> G.Golden:
    """The same golden, its stored file copied under tmp_path (so the test can edit it)."""
    monkeypatch.setattr(G, "GOLDEN", tmp_path)
    target = tmp_path / golden.path.relative_to(G.REPO / "tests" / "golden" / "cards")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(golden.path.read_text(encoding="utf-8"), encoding="utf-8")
    return dataclasses.replace(golden, path=target)


def test_a_text_change_at_the_same_version_says_bump_the_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    golden = _moved(goldens()[0], tmp_path, monkeypatch)
    changed = dataclasses.replace(golden, text=golden.text.replace("---\n", "---\nNew words. ", 1))
    (diff,) = G.differences([changed], orphans=False)
    assert diff.kind == "changed-same-version"
    assert f"its version is still {golden.rule.version}: bump `version`" in diff.message
    assert golden.rule.source in diff.message


def test_a_text_change_with_a_new_version_asks_to_record_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    golden = _moved(goldens()[0], tmp_path, monkeypatch)
    bumped_rule = dataclasses.replace(golden.rule, version="99.0.0")
    text = golden.text.replace(f"version: {golden.rule.version}", "version: 99.0.0")
    changed = dataclasses.replace(golden, rule=bumped_rule, text=text + "more\n")
    (diff,) = G.differences([changed], orphans=False)
    assert diff.kind == "new-version"
    assert "now version 99.0.0" in diff.message


def test_the_writer_refuses_a_change_at_the_same_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    golden = _moved(goldens()[0], tmp_path, monkeypatch)
    golden.path.write_text(golden.text.replace("---\n", "---\nOld words. ", 1), encoding="utf-8")
    monkeypatch.setattr(G, "render", lambda *_: [golden])
    assert G.main([]) == 1
    assert "refused: 1 text change(s) at an unchanged rule version" in capsys.readouterr().out
    assert "Old words." in golden.path.read_text(encoding="utf-8")  # left as it was
