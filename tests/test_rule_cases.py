"""Every rule's own test cases, parametrised from the rule files: a new rule needs no new Python.

A `fires` case must produce that rule's card (on the declared branch, if any) and a `silent`
case must not. Every card of every case must be a strict, valid CDS Hooks card (FHIR resources
in suggestions included) mapped to its rule id and version.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from cds_service import wire
from cds_service.cards import CardRenderer
from cds_service.check import card_problems
from cds_service.decide import evaluate_bundle
from cds_service.ruleset.loader import RuleSet, load_ruleset
from cds_service.ruleset.schema import CaseSpec, Rule

REPO = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def loaded() -> tuple[RuleSet, CardRenderer]:
    ruleset = load_ruleset(REPO / "rules", REPO / "cards")
    return ruleset, CardRenderer(ruleset, REPO / "cards")


def _cases() -> list[object]:
    ruleset, _ = loaded()
    return [
        pytest.param(rule, case, id=f"{rule.id}[{i}]-{case.expect}-{Path(case.fixture).stem}")
        for rule in ruleset.rules
        for i, case in enumerate(rule.cases)
    ]


@pytest.mark.parametrize(("rule", "case"), _cases())
def test_rule_case(rule: Rule, case: CaseSpec) -> None:
    ruleset, renderer = loaded()
    bundle = json.loads((REPO / case.fixture).read_text(encoding="utf-8"))
    decision = evaluate_bundle(ruleset, renderer, bundle, case.hook, case.order, case.as_of)
    findings = [f for f in decision.findings if f.rule.id == rule.id]
    if case.expect == "fires":
        assert findings, f"{rule.id} did not fire ({case.note or ''})"
        if case.branch is not None:
            assert findings[0].branch == case.branch
        cards = [c for c in decision.cards if decision.card_rules[c.uuid][0] == rule.id]
        assert len(cards) == 1
        assert decision.card_rules[cards[0].uuid] == (rule.id, rule.version)
        assert cards[0].indicator == rule.indicator_for(findings[0].branch)
    else:
        assert not findings, f"{rule.id} fired ({case.note or ''})"
    for card in decision.cards:
        wire.Card.model_validate(card.dump())
    assert card_problems(ruleset, renderer, decision) == []


def test_every_rule_has_cases_of_both_kinds() -> None:
    ruleset, _ = loaded()
    for rule in ruleset.rules:
        kinds = {c.expect for c in rule.cases}
        assert kinds == {"fires", "silent"}, rule.id


def test_every_rule_fixture_is_used_by_some_case() -> None:
    ruleset, _ = loaded()
    used = {Path(c.fixture).name for r in ruleset.rules for c in r.cases}
    on_disk = {p.name for p in (REPO / "fhir_fixtures" / "rules").glob("*.json")}
    assert on_disk - used == set()
    assert used - on_disk == set()
