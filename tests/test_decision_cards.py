"""The cards of one decision are read together: one draft order offered once, no source's
figures on two cards, and the checks that hold `cds-service check` to it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from functools import lru_cache
from pathlib import Path

from cds_service.cards import CardRenderer
from cds_service.check import card_problems
from cds_service.decide import Decision, evaluate_bundle
from cds_service.ruleset.loader import RuleSet, load_ruleset

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "fhir_fixtures" / "rules" / "fires-cns-relapse-dasatinib-no-test.json"
AS_OF = dt.date(2025, 6, 1)


@lru_cache(maxsize=1)
def loaded() -> tuple[RuleSet, CardRenderer]:
    ruleset = load_ruleset(REPO / "rules", REPO / "cards")
    return ruleset, CardRenderer(ruleset, REPO / "cards")


def decide_cns_relapse() -> Decision:
    ruleset, renderer = loaded()
    bundle = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return evaluate_bundle(ruleset, renderer, bundle, "patient-view", None, AS_OF)


def test_two_cards_offering_the_same_test_offer_it_once() -> None:
    decision = decide_cns_relapse()
    by_rule = {decision.card_rules[c.uuid][0]: c for c in decision.cards}
    assert {"abl1-mutation-test-missing", "cns-relapse-on-dasatinib"} <= set(by_rule)
    offering = [c for c in decision.cards if c.suggestions]
    assert len(offering) == 1
    (first,) = offering
    other = by_rule["cns-relapse-on-dasatinib"]
    assert other is not first
    assert f"is offered on the card “{first.summary}”" in (other.detail or "")
    assert card_problems(*loaded(), decision) == []


def test_check_catches_a_second_offer_of_the_same_draft() -> None:
    decision = decide_cns_relapse()
    first = next(c for c in decision.cards if c.suggestions)
    other = next(c for c in decision.cards if not c.suggestions)
    cards = [
        c.model_copy(update={"suggestions": first.suggestions}) if c is other else c
        for c in decision.cards
    ]
    problems = card_problems(*loaded(), dataclasses.replace(decision, cards=cards))
    assert any("both offer the draft request for ABL1" in p for p in problems), problems


def test_check_catches_a_repeated_sentence_and_a_shared_source() -> None:
    decision = decide_cns_relapse()
    a, b = decision.cards[:2]
    sentence = (
        "Of 3 isolated CNS relapses seen on dasatinib, 2 came from a mutated resistant clone."
    )
    cards = [
        c.model_copy(update={"detail": f"{sentence}\n\n{c.detail}"}) if c in (a, b) else c
        for c in decision.cards
    ]
    problems = card_problems(*loaded(), dataclasses.replace(decision, cards=cards))
    assert any("repeat: “Of 3 isolated CNS relapses" in p for p in problems), problems
    ruleset, renderer = loaded()
    f0, f1 = decision.findings[:2]
    shared = dataclasses.replace(f1, rule=dataclasses.replace(f1.rule, citations=f0.rule.citations))
    findings = [shared if f is f1 else f for f in decision.findings]
    problems = card_problems(ruleset, renderer, dataclasses.replace(decision, findings=findings))
    assert any(f"both cite '{f0.rule.citations[0]}'" in p for p in problems), problems


def test_check_catches_lower_case_starts_and_internal_names() -> None:
    decision = decide_cns_relapse()
    card = decision.cards[0]
    cards = [
        card.model_copy(
            update={"detail": f"the order of cd19_cart_unnamed is recorded.\n\n{card.detail}"}
        ),
        *decision.cards[1:],
    ]
    problems = card_problems(*loaded(), dataclasses.replace(decision, cards=cards))
    assert any("starts in lower case" in p for p in problems), problems
    assert any("internal name 'cd19_cart_unnamed'" in p for p in problems), problems
