"""extract_facts: one patient record (+ the orders under decision) → typed Facts.

Pure: no network, no clock (as_of is passed in), no fhir.resources validation. One pass over the
by_type index: medication records first (so Observations linked to a blinatumomab record can be
read as its response), then Procedures (lumbar punctures, for the CSF results that are part of
them), Conditions, Observations and DiagnosticReports; each resource yields evidence items
(facts.evidence) and the catalogue's reducers turn them into facts (facts.catalogue).

The readers are: exposure (medication records), procedures, conditions, observations (labs,
CSF, MRD, smoking), variants (ABL1 and BCR::ABL1 variants, mutation analyses), cd19, reports
(DiagnosticReport conclusions), drugs and orders. Each declares the evidence keys it `EMITS`;
at import, a key a reader emits that no fact reduces, or a key a fact reduces that no reader
emits, is an error. `unread_observation` is the pre-normalisation gate the service uses to
skip Observations no reader would read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from cds_service.facts import cd19 as cd19_reader
from cds_service.facts import (
    conditions,
    exposure,
    intrathecal,
    observations,
    plans,
    procedures,
    reports,
    variants,
)
from cds_service.facts.catalogue import REDUCED_KEYS, reduce_evidence
from cds_service.facts.conditions import first_diagnosis, visit_condition
from cds_service.facts.evidence import Context
from cds_service.facts.exposure import visit_medication
from cds_service.facts.intrathecal import visit_intrathecal
from cds_service.facts.model import Facts
from cds_service.facts.observations import unread_observation, visit_observation
from cds_service.facts.orders import resolve_orders
from cds_service.facts.parameters import FactParameters, default_parameters
from cds_service.facts.plans import visit_medication_plan, visit_service_plan
from cds_service.facts.procedures import visit_procedure
from cds_service.facts.reading import ref_of
from cds_service.facts.reports import visit_report
from cds_service.fhir_input import Record
from cds_service.terminology import Terminology, default_terminology

__all__ = ["extract_facts", "unread_observation"]

_VISITORS: tuple[tuple[str, Callable[[Context, dict[str, Any]], None]], ...] = (
    ("MedicationRequest", visit_medication),
    ("MedicationStatement", visit_medication),
    ("MedicationAdministration", visit_medication),
    ("MedicationRequest", visit_medication_plan),
    ("ServiceRequest", visit_service_plan),
    ("Procedure", visit_procedure),
    ("MedicationAdministration", visit_intrathecal),
    ("MedicationStatement", visit_intrathecal),
    ("Procedure", visit_intrathecal),
    ("Condition", visit_condition),
    ("Observation", visit_observation),
    ("DiagnosticReport", visit_report),
)
"""Medication records first (linked response Observations need them), Procedures before
Observations (CSF results that are part of a lumbar puncture)."""

_READERS = (
    exposure,
    intrathecal,
    plans,
    procedures,
    conditions,
    observations,
    variants,
    cd19_reader,
    reports,
)
EMITTED = frozenset(key for reader in _READERS for key in reader.EMITS)
if EMITTED != REDUCED_KEYS:  # a reader and the catalogue disagree: fail at import, not silently
    raise AssertionError(
        f"evidence keys emitted but not reduced: {sorted(EMITTED - REDUCED_KEYS)}; "
        f"reduced but never emitted: {sorted(REDUCED_KEYS - EMITTED)}"
    )


def extract_facts(
    record: Record,
    orders: Sequence[dict[str, Any]] = (),
    context_orders: Sequence[dict[str, Any]] = (),
    as_of: dt.date | None = None,
    *,
    terminology: Terminology | None = None,
    parameters: FactParameters | None = None,
) -> Facts:
    """Facts about record's patient and the orders under decision (see the module docstring)."""
    ctx = Context(
        terminology or default_terminology(), record, as_of, parameters or default_parameters()
    )
    ctx.first_diagnosis = first_diagnosis(ctx, record.by_type.get("Condition", []))
    for rtype, visit in _VISITORS:
        for resource in record.by_type.get(rtype, ()):
            try:
                visit(ctx, resource)
            except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
                # never fail a request on one malformed resource; say so instead
                ctx.issues.append(f"{ref_of(resource)}: could not be read ({type(exc).__name__})")
    values = reduce_evidence(ctx.evidence, as_of, ctx.parameters)
    ordered = resolve_orders(ctx, orders)
    in_context = resolve_orders(ctx, context_orders)
    issues = sorted(set(record.issues) | set(ctx.issues))
    return Facts.build(values, ordered, in_context, issues, ctx.unrecognised_codes)
