"""Evaluation: (rule set, facts, hook, as_of) → findings. Pure: no I/O, no clock.

Conditions are evaluated in three-valued (Kleene) logic. A leaf on a fact that is not known is
*undecided*, never false (missing data is unknown, not negative); `exists` / `unknown` are the
only leaves that are always decided. `all` is false if any part is false, else undecided if any
part is undecided; `any` is true if any part is true, else undecided if any part is; `not`
swaps true and false and keeps undecided. An undecided rule does what its `on_unknown` says:
stay silent, fire its card, or fire its `when_unknown` branch.

Each finding records the facts that decided it (the parts of the condition that made the
result what it is, with their values, dates and provenance) and the order(s) that triggered
it. There is one finding per rule per decision, ordered critical → warning → info, then by
rule id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .facts.model import Fact, Facts, OrderedItem, PartialDate
from .ruleset.conditions import AS_OF, AnyOf, Condition, Leaf, Not, leaves
from .ruleset.loader import RuleSet
from .ruleset.schema import ORDER_HOOKS, Branch, Rule
from .wire import INDICATOR_ORDER, Indicator

Decided = bool | None
"""True, False, or None for undecided."""

COMPLETE_FACTS = frozenset({"order.ingredients", "order.context_ingredients"})
"""Set facts that list everything there is (the orders of this call): empty means none."""


@dataclass(frozen=True, slots=True)
class FiredFact:
    """A fact that took part in deciding a finding."""

    name: str
    fact: Fact


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that fired for one decision."""

    rule: Rule
    branch: Branch
    """"match": the condition held; "unknown": it was undecided and the rule fires anyway."""
    indicator: Indicator
    facts: tuple[FiredFact, ...]
    """Facts that decided the condition (order facts excluded; see `orders`)."""
    orders: tuple[OrderedItem, ...]
    """Orders under decision that triggered the rule or satisfied its condition."""

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def version(self) -> str:
        return self.rule.version


def is_known(name: str, fact: Fact) -> bool:
    if name in COMPLETE_FACTS:
        return True
    return fact.known


def evaluate(ruleset: RuleSet, facts: Facts, hook: str, as_of: dt.date) -> list[Finding]:
    """Findings of every enabled rule of `hook`, most severe first, then by rule id."""
    findings = [
        f for rule in ruleset.enabled(hook) if (f := evaluate_rule(rule, facts, hook, as_of))
    ]
    findings.sort(key=lambda f: (INDICATOR_ORDER[f.indicator], f.rule.id))
    return findings


def evaluate_rule(rule: Rule, facts: Facts, hook: str, as_of: dt.date) -> Finding | None:
    """The finding of one rule, or None when it stays silent."""
    if hook not in rule.hooks:
        return None
    triggering: tuple[OrderedItem, ...] = ()
    if hook in ORDER_HOOKS and rule.trigger is not None:
        triggering = tuple(o for o in facts.orders if o.ingredient in rule.trigger)
        if rule.new_start:
            # a refill, a next cycle or a continuation is not a new start
            triggering = tuple(
                o for o in triggering if facts.get(f"exposure.{o.ingredient}").value == "never"
            )
        if not triggering:
            return None
    result, names = _decide(rule.condition, facts, as_of)
    if result is False:
        return None
    if result is None and rule.on_unknown == "silent":
        return None
    branch: Branch = "match" if result else "unknown"
    if "order.ingredients" in names:
        # orders that satisfied an `order.ingredients contains / intersects …` test decided it
        tested = {
            v
            for leaf in leaves(rule.condition)
            if leaf.fact == "order.ingredients"
            for v in (
                leaf.value
                if isinstance(leaf.value, tuple)
                else _members(facts, leaf.other)
                if leaf.op == "intersects"
                else ()
            )
        }
        extra = tuple(o for o in facts.orders if o.ingredient in tested and o not in triggering)
        triggering = (*triggering, *extra)
    fired = tuple(FiredFact(name, facts.get(name)) for name in names if name != "order.ingredients")
    return Finding(rule, branch, rule.indicator_for(branch), fired, triggering)


# ---- three-valued evaluation -------------------------------------------------------------------


def _decide(cond: Condition, facts: Facts, as_of: dt.date) -> tuple[Decided, tuple[str, ...]]:
    """The value of `cond` and the facts that made it so (in condition order, no repeats)."""
    if isinstance(cond, Leaf):
        return _leaf(cond, facts, as_of), _leaf_names(cond)
    if isinstance(cond, Not):
        result, names = _decide(cond.item, facts, as_of)
        return (None if result is None else not result), names
    parts = [_decide(item, facts, as_of) for item in cond.items]
    decisive = isinstance(cond, AnyOf)  # the value that settles it: True for any, False for all
    for wanted in (decisive, None):
        chosen = [names for result, names in parts if result is wanted]
        if chosen:
            return wanted, _merge(chosen)
    return (not decisive), _merge([names for _, names in parts])


def _merge(groups: list[tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for group in groups for name in group))


def _leaf_names(leaf: Leaf) -> tuple[str, ...]:
    if leaf.other is not None and leaf.other != AS_OF:
        return (leaf.fact, leaf.other)
    return (leaf.fact,)


def _leaf(leaf: Leaf, facts: Facts, as_of: dt.date) -> Decided:
    fact = facts.get(leaf.fact)
    known = is_known(leaf.fact, fact)
    if leaf.op == "exists":
        return known
    if leaf.op == "unknown":
        return not known
    if not known:
        return None
    value = fact.value
    if leaf.op == "equals":
        return value == leaf.value
    if leaf.op == "in":
        return isinstance(leaf.value, tuple) and value in leaf.value
    if leaf.op == "contains":
        members = value if isinstance(value, frozenset) else frozenset()
        return isinstance(leaf.value, tuple) and any(v in members for v in leaf.value)
    if leaf.op in ("gt", "lt"):
        if not isinstance(value, int | float) or not isinstance(leaf.value, float):
            return None
        return value > leaf.value if leaf.op == "gt" else value < leaf.value
    if leaf.op == "intersects":
        other = facts.get(leaf.other or "")
        if not is_known(leaf.other or "", other):
            return None
        mine = value if isinstance(value, frozenset) else frozenset()
        theirs = other.value if isinstance(other.value, frozenset) else frozenset()
        return bool(mine & theirs)
    return _date_leaf(leaf, fact, facts, as_of)


def _members(facts: Facts, name: str | None) -> frozenset[str]:
    value = facts.get(name).value if name else None
    return value if isinstance(value, frozenset) else frozenset()


def _day(day: dt.date) -> PartialDate:
    return PartialDate(day, day, day.isoformat())


def _date_leaf(leaf: Leaf, fact: Fact, facts: Facts, as_of: dt.date) -> Decided:
    a = fact.date
    if a is None or leaf.other is None:
        return None
    if leaf.other == AS_OF:
        other_fact: Fact | None = None
        b: PartialDate | None = _day(as_of)
    else:
        other_fact = facts.get(leaf.other)
        if not is_known(leaf.other, other_fact):
            return None
        b = other_fact.end if leaf.other_date == "end" else other_fact.date
    if b is None:
        return None
    op = leaf.op
    if op == "before":
        return _tri(a.end < b.start, a.start >= b.end)
    if op == "after":
        return _tri(a.start > b.end, a.end <= b.start)
    if op == "on_or_before":
        return _tri(a.end <= b.start, a.start > b.end)
    if op == "on_or_after":
        return _tri(a.start >= b.end, a.end < b.start)
    if op == "within_days":
        days = leaf.days if leaf.days is not None else 0
        nearest = max(0, (b.start - a.end).days, (a.start - b.end).days)
        farthest = max(abs((a.end - b.start).days), abs((b.end - a.start).days))
        return _tri(farthest <= days, nearest > days)
    if op == "during":
        assert other_fact is not None
        end = other_fact.end
        if end is None and other_fact.value == "current":
            end = _day(as_of)
        if end is None:  # a period whose end is not recorded
            return _tri(False, a.end < b.start)
        inside = a.start >= b.end and a.end <= end.start
        outside = a.end < b.start or a.start > end.end
        return _tri(inside, outside)
    raise AssertionError(f"unhandled operator {op}")  # pragma: no cover - parser forbids it


def _tri(surely: bool, surely_not: bool) -> Decided:
    if surely:
        return True
    if surely_not:
        return False
    return None
