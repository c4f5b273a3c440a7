"""The closed condition language of rules: its node types and the parser that checks them.

A condition is a tree of `all` / `any` / `not` nodes over leaves that test one fact from the
fact catalogue with one operator from a closed set. There is no expression evaluation and no
code in strings. The parser reports every problem it finds (unknown operator, unknown fact, a
value the fact can never take, a missing or superfluous key) with the key path where it sits,
so the loader can print them all at once with line numbers.

Operators (see rules/README.md for the three-valued semantics):

    equals, in                 tri / enum facts, against values the fact can take
    contains                   set facts: the set holds the value (or any of a list)
    intersects                 set facts: the set shares a member with another set fact
    gt, lt                     number facts
    exists, unknown            any fact: known / not known (never themselves unknown)
    before, after,             the fact's date against another fact's date or `as_of`
    on_or_before, on_or_after
    during                     the fact's date inside another fact's period (date .. end/as_of)
    within_days                the fact's date at most `days` days from the other date

A date operator compares with the other fact's date, or with its end (`other_date: end`, e.g.
"after the previous therapy ended"); an end that is not recorded leaves the leaf undecided.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..facts.catalogue import FACT_CATALOGUE
from ..facts.model import FactSpec
from ..yaml_source import KeyPath

VALUE_OPS = ("equals", "in", "contains", "gt", "lt")
PRESENCE_OPS = ("exists", "unknown")
DATE_OPS = ("before", "after", "on_or_before", "on_or_after", "during", "within_days")
SET_OPS = ("intersects",)
OPERATORS = (*VALUE_OPS, *PRESENCE_OPS, *DATE_OPS, *SET_OPS)
AS_OF = "as_of"
"""The `other` of a date operator that stands for the evaluation date."""

LeafValue = str | float | tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Leaf:
    """One test of one fact."""

    fact: str
    op: str
    value: LeafValue = None
    other: str | None = None
    days: int | None = None
    other_date: str = "date"
    """Which date of `other` a date operator compares with: "date" or "end"."""


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


Condition = Leaf | AllOf | AnyOf | Not

Problem = tuple[KeyPath, str]


def leaves(condition: Condition) -> Iterator[Leaf]:
    if isinstance(condition, Leaf):
        yield condition
    elif isinstance(condition, Not):
        yield from leaves(condition.item)
    else:
        for item in condition.items:
            yield from leaves(item)


def facts_read(condition: Condition) -> frozenset[str]:
    """Every fact name the condition reads (including the `other` of date operators)."""
    names: set[str] = set()
    for leaf in leaves(condition):
        names.add(leaf.fact)
        if leaf.other is not None and leaf.other != AS_OF:
            names.add(leaf.other)
    return frozenset(names)


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_fact_message(name: object) -> str:
    if not isinstance(name, str):
        return f"fact must be a fact name, got {name!r}"
    return f"unknown fact '{name}'{_suggest(name, FACT_CATALOGUE)}"


def parse_condition(data: Any, path: KeyPath, problems: list[Problem]) -> Condition | None:
    """Parse and check one condition; append problems and return None when it is unusable."""
    if not isinstance(data, dict):
        problems.append((path, f"a condition must be a mapping, got {type(data).__name__}"))
        return None
    combinators = [k for k in ("all", "any", "not") if k in data]
    if combinators:
        if len(combinators) > 1:
            problems.append(
                (path, f"a condition holds one of all / any / not; found {', '.join(combinators)}")
            )
            return None
        if len(data) != 1:
            others = sorted(k for k in data if k != combinators[0])
            problems.append((path, f"'{combinators[0]}' stands alone; unexpected key(s) {others}"))
            return None
        key = combinators[0]
        body = data[key]
        if key == "not":
            inner = parse_condition(body, (*path, "not"), problems)
            return Not(inner) if inner is not None else None
        if not isinstance(body, list) or not body:
            problems.append(((*path, key), f"'{key}' needs a non-empty list of conditions"))
            return None
        items = [parse_condition(item, (*path, key, i), problems) for i, item in enumerate(body)]
        if any(item is None for item in items):
            return None
        parsed = tuple(item for item in items if item is not None)
        return AllOf(parsed) if key == "all" else AnyOf(parsed)
    return _parse_leaf(data, path, problems)


def _parse_leaf(data: Mapping[str, Any], path: KeyPath, problems: list[Problem]) -> Leaf | None:
    before = len(problems)
    allowed = {"fact", "op", "value", "other", "days", "other_date"}
    for key in data:
        if key not in allowed:
            problems.append(
                ((*path, key), f"unexpected key '{key}'{_suggest(key, allowed | {'all', 'any'})}")
            )
    fact = data.get("fact")
    op = data.get("op")
    spec: FactSpec | None = None
    if fact is None:
        problems.append((path, "a condition needs 'fact' and 'op' (or all / any / not)"))
    elif not isinstance(fact, str) or fact not in FACT_CATALOGUE:
        problems.append(((*path, "fact"), unknown_fact_message(fact)))
    else:
        spec = FACT_CATALOGUE[fact]
    if op is None:
        if fact is not None:
            problems.append((path, "missing 'op'"))
    elif not isinstance(op, str) or op not in OPERATORS:
        problems.append(((*path, "op"), f"unknown operator '{op}'{_suggest(str(op), OPERATORS)}"))
        op = None
    value, other, days = data.get("value"), data.get("other"), data.get("days")
    if isinstance(op, str):
        _check_shape(op, data, path, problems)
        if spec is not None and isinstance(fact, str):
            value = _check_value(fact, spec, op, value, path, problems)
            _check_other(op, other, spec, path, problems)
        if op == "within_days" and (
            not isinstance(days, int) or isinstance(days, bool) or days < 0
        ):
            problems.append(((*path, "days"), "within_days needs 'days': a whole number >= 0"))
    other_date = data.get("other_date", "date")
    if "other_date" in data:
        if op not in DATE_OPS or op == "during":
            problems.append(((*path, "other_date"), "'other_date' belongs to date operators"))
        elif other_date not in ("date", "end"):
            problems.append(((*path, "other_date"), "'other_date' is 'date' or 'end'"))
        elif other == AS_OF:
            problems.append(((*path, "other_date"), f"'{AS_OF}' has no end"))
    if len(problems) > before or not isinstance(fact, str) or not isinstance(op, str):
        return None
    return Leaf(fact, op, value, other if isinstance(other, str) else None, days, str(other_date))


def _check_shape(op: str, data: Mapping[str, Any], path: KeyPath, problems: list[Problem]) -> None:
    needs_value = op in VALUE_OPS
    needs_other = op in DATE_OPS or op in SET_OPS
    if needs_value and "value" not in data:
        problems.append((path, f"'{op}' needs a 'value'"))
    if not needs_value and "value" in data:
        problems.append(((*path, "value"), f"'{op}' takes no 'value'"))
    if needs_other and "other" not in data:
        what = "a set fact's name" if op in SET_OPS else f"a fact name or '{AS_OF}'"
        problems.append((path, f"'{op}' needs 'other': {what}"))
    if not needs_other and "other" in data:
        problems.append(((*path, "other"), f"'{op}' takes no 'other'"))
    if op != "within_days" and "days" in data:
        problems.append(((*path, "days"), "'days' belongs to within_days only"))


def _check_value(
    fact: str, spec: FactSpec, op: str, value: Any, path: KeyPath, problems: list[Problem]
) -> LeafValue:
    where = (*path, "value")
    if op in ("equals", "in"):
        if spec.kind not in ("tri", "enum"):
            hint = "contains" if spec.kind == "set" else "gt / lt"
            problems.append(
                (
                    (*path, "op"),
                    f"'{op}' compares tri/enum facts; '{fact}' is a {spec.kind} fact (use {hint})",
                )
            )
            return None
        values = [value] if op == "equals" else value
        if op == "in" and (not isinstance(value, list) or not value):
            problems.append((where, "'in' needs a non-empty list of values"))
            return None
        if op == "equals" and isinstance(value, list):
            problems.append((where, "'equals' takes one value (use 'in' for a list)"))
            return None
        for v in values:
            if v == "unknown":
                problems.append(
                    (where, f"do not compare '{fact}' with 'unknown'; use op: unknown (or exists)")
                )
            elif not isinstance(v, str) or v not in spec.values:
                problems.append(
                    (where, f"'{fact}' can never be {v!r} (its values: {', '.join(spec.values)})")
                )
        if op == "equals":
            return value if isinstance(value, str) else None
        return tuple(v for v in values if isinstance(v, str))
    if op == "contains":
        if spec.kind != "set":
            problems.append(
                ((*path, "op"), f"'contains' tests set facts; '{fact}' is a {spec.kind} fact")
            )
            return None
        values = value if isinstance(value, list) else [value]
        if not values:
            problems.append((where, "'contains' needs a value or a non-empty list"))
        for v in values:
            if not isinstance(v, str):
                problems.append((where, f"set members are strings, got {v!r}"))
            elif spec.values and v not in spec.values:
                problems.append(
                    (
                        where,
                        f"'{fact}' can never contain {v!r} (its members: {', '.join(spec.values)})",
                    )
                )
        return tuple(v for v in values if isinstance(v, str))
    if op in ("gt", "lt"):
        if spec.kind != "number":
            problems.append(
                ((*path, "op"), f"'{op}' compares numbers; '{fact}' is a {spec.kind} fact")
            )
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            problems.append((where, f"'{op}' needs a number, got {value!r}"))
            return None
        return float(value)
    return None


def _check_other(
    op: str, other: Any, spec: FactSpec, path: KeyPath, problems: list[Problem]
) -> None:
    where = (*path, "other")
    if op in SET_OPS and other is not None:
        if spec.kind != "set":
            problems.append(((*path, "op"), f"'{op}' tests set facts; this is a {spec.kind} fact"))
        if not isinstance(other, str) or other not in FACT_CATALOGUE:
            problems.append((where, unknown_fact_message(other)))
        elif FACT_CATALOGUE[other].kind != "set":
            problems.append((where, f"'{other}' is a {FACT_CATALOGUE[other].kind} fact, not a set"))
        return
    if op not in DATE_OPS or other is None:
        return
    if not isinstance(other, str) or (other != AS_OF and other not in FACT_CATALOGUE):
        problems.append(
            (where, f"{unknown_fact_message(other)}; 'other' is a fact name or '{AS_OF}'")
        )
    elif op == "during" and other == AS_OF:
        problems.append(
            (where, f"'during' needs a fact with a period (e.g. an exposure), not '{AS_OF}'")
        )
