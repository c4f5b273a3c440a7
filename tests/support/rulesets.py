"""Copies of the bundled rule set, edited for a test (a rule made silent or retired)."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

from cds_service.cards import CardRenderer
from cds_service.decide import evaluate_bundle
from cds_service.paths import bundled_dir
from cds_service.ruleset.loader import RuleSet, load_ruleset
from cds_service.ruleset.schema import CaseSpec, Rule
from tests.support.cases import ROOT, case_bundle


def copy_rules(tmp: Path, *, copy_fixtures: bool = False) -> Path:
    """A copy of the bundled rules folder whose case fixtures resolve (a fhir_fixtures link
    beside it, or a copy of them)."""
    base = tmp / "ruleset-copy"
    base.mkdir()
    shutil.copytree(bundled_dir("rules"), base / "rules")
    if copy_fixtures:
        shutil.copytree(ROOT / "fhir_fixtures", base / "fhir_fixtures")
    else:
        (base / "fhir_fixtures").symlink_to(ROOT / "fhir_fixtures")
    return base / "rules"


def set_status(rules_dir: Path, rule_id: str, status: str) -> None:
    """Write `status:` into a rule file, just after its `enabled:` line."""
    path = rules_dir / f"{rule_id}.yaml"
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^status:.*\n", "", text)
    edited, n = re.subn(r"(?m)^(enabled:.*\n)", rf"\1status: {status}\n", text, count=1)
    assert n == 1, f"{path} has no enabled: line"
    path.write_text(edited, encoding="utf-8")


def firing_cases(ruleset: RuleSet, day: dt.date) -> list[tuple[Rule, CaseSpec]]:
    """One `fires` case per rule that fires on `day` (what a live service would do today)."""
    renderer = CardRenderer(ruleset, bundled_dir("cards"))
    out = []
    for rule in ruleset.rules:
        for case in rule.cases:
            if case.expect != "fires":
                continue
            decision = evaluate_bundle(
                ruleset, renderer, case_bundle(case), case.hook, case.order, day
            )
            if any(f.rule.id == rule.id for f in decision.findings):
                out.append((rule, case))
                break
    return out


def bundled_ruleset() -> RuleSet:
    return load_ruleset(bundled_dir("rules"), bundled_dir("cards"))
