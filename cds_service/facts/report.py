"""Render Facts for people (`cds-service facts BUNDLE.json`) or as JSON (`--json`).

Pretty form: one line per known fact (name, value, date or period, detail) with its provenance
indented below (resource, what matched, how), then the unknown facts on one wrapped line, then
the orders and the extraction issues.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from cds_service.facts.model import Fact, Facts, OrderedItem, Provenance

_NAME_WIDTH = 28


def _value_text(fact: Fact) -> str:
    v = fact.value
    if isinstance(v, frozenset):
        return ", ".join(sorted(v)) if v else "(none)"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _when(fact: Fact) -> str:
    if fact.date and fact.end:
        return f"{fact.date} → {fact.end}"
    if fact.date:
        return str(fact.date)
    if fact.end:
        return f"… → {fact.end}"
    return ""


def _prov_line(p: Provenance) -> str:
    return f"{p.resource}  [{p.via}] {p.matched}"


def _order_json(o: OrderedItem) -> dict[str, Any]:
    return {
        "resource": o.resource,
        "ingredient": o.ingredient,
        "text": o.text,
        "provenance": [_prov_json(p) for p in o.provenance],
    }


def _prov_json(p: Provenance) -> dict[str, str]:
    return {"resource": p.resource, "matched": p.matched, "via": p.via}


def fact_json(fact: Fact) -> dict[str, Any]:
    v = fact.value
    value: Any = sorted(v) if isinstance(v, frozenset) else v
    return {
        "value": value,
        "known": fact.known,
        "date": fact.date.text if fact.date else None,
        "end": fact.end.text if fact.end else None,
        "detail": fact.detail,
        "provenance": [_prov_json(p) for p in fact.provenance],
    }


def _no_record(fact: Fact) -> bool:
    return fact.value == "never" and not fact.provenance


def format_facts(facts: Facts, *, as_json: bool) -> str:
    """The facts as text for people, or as a JSON document (sorted keys, sets as lists)."""
    if as_json:
        doc = {
            "facts": {name: fact_json(f) for name, f in sorted(facts.values.items())},
            "orders": [_order_json(o) for o in facts.orders],
            "context_orders": [_order_json(o) for o in facts.context_orders],
            "issues": list(facts.issues),
        }
        return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True)
    known = [(n, f) for n, f in sorted(facts.values.items()) if f.known and not _no_record(f)]
    never = [n for n, f in sorted(facts.values.items()) if _no_record(f)]
    unknown = [n for n, f in sorted(facts.values.items()) if not f.known]
    lines = [f"Known facts ({len(known)}):"]
    for name, fact in known:
        head = f"  {name:<{_NAME_WIDTH}} {_value_text(fact)}"
        when = _when(fact)
        if when:
            head += f"  ({when})"
        if fact.detail:
            head += f"  — {fact.detail}"
        lines.append(head)
        lines.extend(f"      ← {_prov_line(p)}" for p in fact.provenance)
    lines.append(f"Unknown ({len(unknown)}):")
    lines.extend(
        textwrap.wrap(", ".join(unknown), width=96, initial_indent="  ", subsequent_indent="  ")
        or ["  (none)"]
    )
    if never:
        lines.append(f"No record of exposure ({len(never)}):")
        lines.extend(
            textwrap.wrap(", ".join(never), width=96, initial_indent="  ", subsequent_indent="  ")
        )
    for title, items in (("Orders", facts.orders), ("Context orders", facts.context_orders)):
        if items:
            lines.append(f"{title}:")
            for o in items:
                lines.append(
                    f"  {o.resource}: {o.ingredient or '(no tracked ingredient)'} — {o.text}"
                )
                lines.extend(f"      ← {_prov_line(p)}" for p in o.provenance)
    if facts.issues:
        lines.append(f"Issues ({len(facts.issues)}):")
        lines.extend(f"  - {i}" for i in facts.issues)
    return "\n".join(lines)
