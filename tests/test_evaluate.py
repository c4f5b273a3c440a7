"""The evaluator: three-valued logic, date operators, triggers, ordering, one card per rule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from cds_service.citations import Registry, parse_registry
from cds_service.evaluate import evaluate, evaluate_rule
from cds_service.facts.model import Fact, Facts, OrderedItem, PartialDate, Provenance
from cds_service.facts.parameters import default_parameters
from cds_service.ruleset.conditions import Condition, parse_condition
from cds_service.ruleset.loader import RuleSet
from cds_service.ruleset.schema import CardSpec, Rule, UnknownBranch
from cds_service.terminology import default_terminology
from cds_service.yaml_source import parse_yaml

REPO = Path(__file__).resolve().parent.parent
AS_OF = dt.date(2025, 6, 1)


def registry() -> Registry:
    text = (REPO / "rules" / "citations.yaml").read_text(encoding="utf-8")
    reg, problems = parse_registry(parse_yaml(text).data)
    assert reg is not None and not problems
    return reg


def condition(text: str) -> Condition:
    problems: list[Any] = []
    cond = parse_condition(parse_yaml(text).data, ("when",), problems)
    assert not problems and cond is not None
    return cond


def rule(
    rule_id: str,
    when: str,
    *,
    indicator: str = "info",
    trigger: tuple[str, ...] | None = None,
    hooks: tuple[str, ...] = ("patient-view", "order-select", "order-sign"),
    on_unknown: str = "silent",
    when_unknown: UnknownBranch | None = None,
    enabled: bool = True,
) -> Rule:
    return Rule(
        id=rule_id,
        version="1.2",
        title=rule_id,
        description="test rule",
        enabled=enabled,
        hooks=hooks,
        trigger=frozenset(trigger) if trigger else None,
        condition=condition(when),
        on_unknown=on_unknown,  # type: ignore[arg-type]
        when_unknown=when_unknown,
        indicator=indicator,  # type: ignore[arg-type]
        critical_basis="ineffective-drug" if indicator == "critical" else None,
        evidence=("guideline",),
        citations=("nccn_all_mutation_testing",),
        card=CardSpec(template="x", summary="s"),
        suggestions=(),
        override_reasons=(),
        cases=(),
        source=f"rules/{rule_id}.yaml",
    )


def ruleset(*rules: Rule) -> RuleSet:
    return RuleSet(
        tuple(rules), registry(), REPO / "rules", default_terminology(), default_parameters()
    )


def d(text: str) -> PartialDate:
    parsed = PartialDate.parse(text)
    assert parsed is not None
    return parsed


def prov(ref: str) -> tuple[Provenance, ...]:
    return (Provenance(ref, "test", "code"),)


def order(ingredient: str | None, ref: str = "MedicationRequest/o1") -> OrderedItem:
    return OrderedItem(ref, ingredient, ingredient or "something", prov(ref))


def fires(r: Rule, facts: Facts, hook: str = "patient-view") -> str | None:
    """ "match", "unknown" or None (silent)."""
    finding = evaluate_rule(r, facts, hook, AS_OF)
    return finding.branch if finding else None


# ---- three-valued logic --------------------------------------------------------------------


T315I = "{fact: abl1.t315i, op: equals, value: yes}"


def test_unknown_fact_is_undecided_and_on_unknown_decides() -> None:
    empty = Facts.build({})
    assert fires(rule("a", T315I, on_unknown="silent"), empty) is None
    assert fires(rule("a", T315I, on_unknown="fire"), empty) == "unknown"
    branch = UnknownBranch(indicator="info", summary="no result")
    r = rule("a", T315I, indicator="warning", on_unknown="branch", when_unknown=branch)
    finding = evaluate_rule(r, empty, "patient-view", AS_OF)
    assert finding is not None and finding.branch == "unknown" and finding.indicator == "info"


def test_known_negative_is_false_even_when_unknown_would_fire() -> None:
    facts = Facts.build({"abl1.t315i": Fact("no", d("2025-01-01"))})
    assert fires(rule("a", T315I, on_unknown="fire"), facts) is None


def test_all_is_false_when_any_part_is_false_even_if_another_is_unknown() -> None:
    r = rule(
        "a", f"all: [{T315I}, {{fact: ph_status, op: equals, value: positive}}]", on_unknown="fire"
    )
    facts = Facts.build({"ph_status": Fact("negative")})
    assert fires(r, facts) is None
    facts = Facts.build({"ph_status": Fact("positive")})
    assert fires(r, facts) == "unknown"


def test_any_is_true_when_one_part_is_true_despite_unknowns() -> None:
    r = rule("a", f"any: [{T315I}, {{fact: relapse, op: equals, value: yes}}]")
    assert fires(r, Facts.build({"relapse": Fact("yes")})) == "match"
    assert fires(r, Facts.build({})) is None


def test_not_keeps_undecided_undecided() -> None:
    r = rule("a", f"not: {T315I}", on_unknown="fire")
    assert fires(r, Facts.build({})) == "unknown"
    assert fires(r, Facts.build({"abl1.t315i": Fact("no")})) == "match"
    assert fires(r, Facts.build({"abl1.t315i": Fact("yes")})) is None


def test_exists_and_unknown_are_always_decided() -> None:
    r = rule("a", "{fact: ph_status, op: unknown}", on_unknown="fire")
    assert fires(r, Facts.build({})) == "match"
    assert fires(r, Facts.build({"ph_status": Fact("negative")})) is None
    r = rule("a", "{fact: abl1.mutation_test, op: exists}", on_unknown="fire")
    assert fires(r, Facts.build({})) is None


def test_in_and_numbers() -> None:
    r = rule("a", "{fact: cd19.status, op: in, value: [negative, dim]}")
    assert fires(r, Facts.build({"cd19.status": Fact("dim")})) == "match"
    assert fires(r, Facts.build({"cd19.status": Fact("positive")})) is None
    gt = rule("a", "{fact: bcr_abl1.latest, op: gt, value: 0.1}", on_unknown="fire")
    assert fires(gt, Facts.build({"bcr_abl1.latest": Fact(0.5)})) == "match"
    assert fires(gt, Facts.build({"bcr_abl1.latest": Fact(0.01)})) is None
    assert fires(gt, Facts.build({})) == "unknown"


def test_contains_on_an_empty_record_set_is_undecided_but_orders_are_complete() -> None:
    current = rule("a", "{fact: tki.current, op: contains, value: [dasatinib]}", on_unknown="fire")
    assert fires(current, Facts.build({})) == "unknown"
    assert fires(current, Facts.build({"tki.current": Fact(frozenset({"imatinib"}))})) is None
    assert fires(current, Facts.build({"tki.current": Fact(frozenset({"dasatinib"}))})) == "match"
    ordered = rule(
        "b", "{fact: order.ingredients, op: contains, value: [ponatinib]}", on_unknown="fire"
    )
    assert fires(ordered, Facts.build({}), "order-select") is None


# ---- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test_date", "event_date", "op", "expected"),
    [
        ("2025-04-01", "2025-03-14", "on_or_after", "match"),
        ("2025-03-14", "2025-03-14", "on_or_after", "match"),
        ("2025-03-14", "2025-03-14", "after", None),
        ("2025-02-28", "2025-03-14", "on_or_after", None),
        ("2025-03-15", "2025-03", "on_or_after", "unknown"),  # partial month: cannot tell
        ("2025-04-01", "2025-03", "after", "match"),
        ("2025", "2025-03-14", "before", "unknown"),
        ("2024", "2025-03-14", "before", "match"),
        ("2025-03-14", "2025-03-14", "on_or_before", "match"),
        ("2025-03-15", "2025-03-14", "on_or_before", None),
    ],
)
def test_date_comparisons_respect_partial_dates(
    test_date: str, event_date: str, op: str, expected: str | None
) -> None:
    r = rule("a", f"{{fact: abl1.mutation_test, op: {op}, other: relapse}}", on_unknown="fire")
    facts = Facts.build(
        {
            "abl1.mutation_test": Fact("yes", d(test_date)),
            "relapse": Fact("yes", d(event_date)),
        }
    )
    assert fires(r, facts) == expected


def test_a_date_operator_on_a_fact_without_date_is_undecided() -> None:
    r = rule("a", "{fact: abl1.mutation_test, op: after, other: relapse}", on_unknown="fire")
    facts = Facts.build({"abl1.mutation_test": Fact("yes"), "relapse": Fact("yes", d("2025-01"))})
    assert fires(r, facts) == "unknown"


def test_within_days_of_as_of() -> None:
    r = rule(
        "a", "{fact: cns.involvement, op: within_days, other: as_of, days: 90}", on_unknown="fire"
    )
    assert fires(r, Facts.build({"cns.involvement": Fact("yes", d("2025-04-01"))})) == "match"
    assert fires(r, Facts.build({"cns.involvement": Fact("yes", d("2024-12-01"))})) is None
    assert fires(r, Facts.build({"cns.involvement": Fact("yes", d("2025-03"))})) == "unknown"


def test_during_an_exposure_period() -> None:
    r = rule(
        "a", "{fact: cns.involvement, op: during, other: exposure.dasatinib}", on_unknown="fire"
    )
    current = Fact("current", d("2024-01-10"))
    past = Fact("past", d("2024-01-10"), end=d("2024-09-30"))
    open_past = Fact("past", d("2024-01-10"))
    cns = Fact("yes", d("2025-03-18"))
    assert fires(r, Facts.build({"cns.involvement": cns, "exposure.dasatinib": current})) == "match"
    assert fires(r, Facts.build({"cns.involvement": cns, "exposure.dasatinib": past})) is None
    assert (
        fires(r, Facts.build({"cns.involvement": cns, "exposure.dasatinib": open_past}))
        == "unknown"
    )
    early = Fact("yes", d("2023-12-01"))
    assert (
        fires(r, Facts.build({"cns.involvement": early, "exposure.dasatinib": open_past})) is None
    )


# ---- triggers, hooks, ordering -------------------------------------------------------------


def test_trigger_needs_a_matching_order_on_order_hooks_only() -> None:
    r = rule("a", T315I, trigger=("imatinib",))
    facts = Facts.build({"abl1.t315i": Fact("yes")}, orders=[order("ponatinib")])
    assert fires(r, facts, "order-select") is None
    facts = Facts.build({"abl1.t315i": Fact("yes")}, orders=[order("imatinib")])
    assert fires(r, facts, "order-select") == "match"
    # patient-view has no orders: the trigger does not apply there
    assert fires(r, Facts.build({"abl1.t315i": Fact("yes")}), "patient-view") == "match"


def test_one_finding_per_rule_listing_every_triggering_order() -> None:
    r = rule("a", T315I, trigger=("imatinib", "dasatinib"))
    facts = Facts.build(
        {"abl1.t315i": Fact("yes")},
        orders=[
            order("imatinib", "MedicationRequest/1"),
            order("ponatinib", "MedicationRequest/2"),
            order("dasatinib", "MedicationRequest/3"),
        ],
    )
    findings = evaluate(ruleset(r), facts, "order-sign", AS_OF)
    assert len(findings) == 1
    assert [o.resource for o in findings[0].orders] == [
        "MedicationRequest/1",
        "MedicationRequest/3",
    ]


def test_orders_that_satisfied_the_condition_are_recorded() -> None:
    r = rule(
        "a",
        "{fact: order.ingredients, op: contains, value: [ponatinib]}",
        trigger=("blinatumomab",),
    )
    facts = Facts.build(
        {},
        orders=[
            order("blinatumomab", "MedicationRequest/b"),
            order("ponatinib", "MedicationRequest/p"),
        ],
    )
    (finding,) = evaluate(ruleset(r), facts, "order-sign", AS_OF)
    assert [o.resource for o in finding.orders] == ["MedicationRequest/b", "MedicationRequest/p"]
    assert all(f.name != "order.ingredients" for f in finding.facts)


def test_findings_are_ordered_critical_warning_info_then_by_id() -> None:
    rules = [
        rule("b-info", T315I, indicator="info"),
        rule("z-critical", T315I, indicator="critical"),
        rule("a-info", T315I, indicator="info"),
        rule("c-warning", T315I, indicator="warning"),
        rule("a-critical", T315I, indicator="critical"),
    ]
    facts = Facts.build({"abl1.t315i": Fact("yes")})
    findings = evaluate(ruleset(*rules), facts, "patient-view", AS_OF)
    assert [f.rule.id for f in findings] == [
        "a-critical",
        "z-critical",
        "c-warning",
        "a-info",
        "b-info",
    ]


def test_hooks_and_disabled_rules() -> None:
    facts = Facts.build({"abl1.t315i": Fact("yes")})
    rs = ruleset(
        rule("only-sign", T315I, hooks=("order-sign",)),
        rule("disabled", T315I, enabled=False),
        rule("everywhere", T315I),
    )
    assert [f.rule.id for f in evaluate(rs, facts, "patient-view", AS_OF)] == ["everywhere"]
    assert [f.rule.id for f in evaluate(rs, facts, "order-sign", AS_OF)] == [
        "everywhere",
        "only-sign",
    ]


def test_the_finding_records_the_facts_that_decided_it() -> None:
    r = rule(
        "a",
        """
        all:
          - any:
              - {fact: relapse, op: equals, value: yes}
              - {fact: bcr_abl1.trend, op: equals, value: rising}
          - not:
              all:
                - {fact: abl1.mutation_test, op: exists}
                - {fact: abl1.mutation_test, op: on_or_after, other: relapse}
        """,
    )
    relapse = Fact("yes", d("2025-03-14"), provenance=prov("Condition/r1"))
    facts = Facts.build({"relapse": relapse, "bcr_abl1.trend": Fact("stable", d("2025-03-01"))})
    finding = evaluate_rule(r, facts, "patient-view", AS_OF)
    assert finding is not None
    # the stable trend did not make it fire; the missing mutation result did
    assert [(f.name, f.fact.value) for f in finding.facts] == [
        ("relapse", "yes"),
        ("abl1.mutation_test", "unknown"),
    ]
    assert finding.facts[0].fact.provenance == prov("Condition/r1")
    assert finding.rule_id == "a" and finding.version == "1.2"


def test_intersects_compares_two_set_facts() -> None:
    r = rule(
        "a",
        "{fact: order.ingredients, op: intersects, other: tki.mutation_resistance}",
        on_unknown="fire",
    )
    resistant = {"tki.mutation_resistance": Fact(frozenset({"dasatinib"}))}
    assert fires(r, Facts.build(resistant, [order("dasatinib")]), "order-select") == "match"
    assert fires(r, Facts.build(resistant, [order("nilotinib")]), "order-select") is None
    # nothing in the table for this patient: undecided, not "no"
    assert fires(r, Facts.build({}, [order("dasatinib")]), "order-select") == "unknown"


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        ("{fact: order.ingredients, op: intersects}", "'intersects' needs 'other'"),
        ("{fact: order.ingredients, op: intersects, other: relapse}", "is a tri fact, not a set"),
        ("{fact: relapse, op: intersects, other: tki.current}", "'intersects' tests set facts"),
    ],
)
def test_intersects_needs_two_set_facts(leaf: str, message: str) -> None:
    problems: list[tuple[object, str]] = []
    parse_condition(parse_yaml(leaf).data, ("when",), problems)  # type: ignore[arg-type]
    assert any(message in m for _, m in problems), problems
