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
from collections.abc import Sequence
from typing import Any

from cds_service.facts.combine import combine
from cds_service.facts.conditions import visit_condition
from cds_service.facts.evidence import Context
from cds_service.facts.labs import visit_observation
from cds_service.facts.medications import visit_medication
from cds_service.facts.model import Facts
from cds_service.facts.orders import resolve_orders
from cds_service.facts.transplant import visit_procedure
from cds_service.fhir_input import Record
from cds_service.terminology import Terminology, default_terminology

_MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")


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
    for rtype in _MEDICATION_TYPES:
        for resource in record.by_type.get(rtype, ()):
            visit_medication(ctx, resource)
    for resource in record.by_type.get("Procedure", ()):
        visit_procedure(ctx, resource)
    for resource in record.by_type.get("Condition", ()):
        visit_condition(ctx, resource)
    for resource in record.by_type.get("Observation", ()):
        visit_observation(ctx, resource)
    values = combine(ctx.evidence)
    ordered = resolve_orders(ctx, orders)
    in_context = resolve_orders(ctx, context_orders)
    issues = sorted(set(record.issues) | set(ctx.issues))
    return Facts.build(values, ordered, in_context, issues)
