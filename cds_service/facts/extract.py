"""extract_facts: one patient record (+ the orders under decision) → typed Facts.

Pure: no network, no clock (as_of is passed in), no fhir.resources validation. One pass over the
by_type index: medication records first (so Observations linked to a blinatumomab record can be
read as its response), then Procedures, Conditions and Observations; each resource yields
evidence items (facts.evidence.Evidence) and combine() reduces them to facts. The extractor
modules are: medications (exposures), transplant (procedures), conditions, labs (Observations),
variants (ABL1 mutations), cd19, drugs (ingredient resolution) and orders.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from cds_service.facts.combine import combine
from cds_service.facts.conditions import visit_condition
from cds_service.facts.evidence import Context, ref_of
from cds_service.facts.labs import visit_observation
from cds_service.facts.medications import visit_medication
from cds_service.facts.model import Facts
from cds_service.facts.orders import resolve_orders
from cds_service.facts.transplant import visit_procedure
from cds_service.fhir_input import Record
from cds_service.terminology import Terminology, default_terminology

_VISITORS: tuple[tuple[str, Callable[[Context, dict[str, Any]], None]], ...] = (
    ("MedicationRequest", visit_medication),
    ("MedicationStatement", visit_medication),
    ("MedicationAdministration", visit_medication),
    ("Procedure", visit_procedure),
    ("Condition", visit_condition),
    ("Observation", visit_observation),
)
"""Medication records first: Observations linked to a blinatumomab record need them."""


def extract_facts(
    record: Record,
    orders: Sequence[dict[str, Any]] = (),
    context_orders: Sequence[dict[str, Any]] = (),
    as_of: dt.date | None = None,
    *,
    terminology: Terminology | None = None,
) -> Facts:
    """Facts about record's patient and the orders under decision (see the module docstring)."""
    ctx = Context(terminology or default_terminology(), record, as_of)
    for rtype, visit in _VISITORS:
        for resource in record.by_type.get(rtype, ()):
            try:
                visit(ctx, resource)
            except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
                # never fail a request on one malformed resource; say so instead
                ctx.issues.append(f"{ref_of(resource)}: could not be read ({type(exc).__name__})")
    values = combine(ctx.evidence)
    ordered = resolve_orders(ctx, orders)
    in_context = resolve_orders(ctx, context_orders)
    issues = sorted(set(record.issues) | set(ctx.issues))
    return Facts.build(values, ordered, in_context, issues)
