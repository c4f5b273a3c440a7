"""Therapy planned but not yet given: for the checks an EHR that calls only patient-view needs
(a CD19-directed therapy planned for CD19-negative disease).

A MedicationRequest is a plan when its intent is proposal or plan, when it is a draft, or when
it is an active order whose start lies after the evaluation date; a ServiceRequest (a CAR-T
referral, a blinatumomab cycle ordered as a service) is a plan while it is draft, active or on
hold. Entered-in-error, cancelled, revoked, completed and doNotPerform requests are not plans.
The draft orders of a hook call are the orders under decision, never read here.
"""

from __future__ import annotations

from typing import Any

from cds_service.facts.drugs import resolve_concept, resolve_medication
from cds_service.facts.evidence import Context, Ev, first_date
from cds_service.facts.reading import ref_of
from cds_service.fhir_input import as_list

EMITS = frozenset({Ev.PLANNED})

_PLAN_INTENTS = frozenset({"proposal", "plan"})
_OPEN = frozenset({"draft", "active", "on-hold"})


def visit_medication_plan(ctx: Context, r: dict[str, Any]) -> None:
    if r.get("resourceType") != "MedicationRequest" or r.get("doNotPerform") is True:
        return
    if r.get("status") not in _OPEN:
        return
    ref = ref_of(r)
    start = first_date(ctx, r, ref, "dispenseRequest.validityPeriod.start")
    for dosage in as_list(r.get("dosageInstruction")):
        timing = dosage.get("timing") if isinstance(dosage, dict) else None
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
        if isinstance(bounds, dict):
            start = start or first_date(ctx, bounds, ref, "start")
    future = start is not None and ctx.as_of is not None and start.start > ctx.as_of
    if not (r.get("intent") in _PLAN_INTENTS or r.get("status") == "draft" or future):
        return
    when = start or first_date(ctx, r, ref, "authoredOn")
    for hit in resolve_medication(ctx, r):
        ctx.add(Ev.PLANNED, "planned", when, hit.provenance, item=hit.ingredient)


def visit_service_plan(ctx: Context, r: dict[str, Any]) -> None:
    if r.get("status") not in _OPEN or r.get("doNotPerform") is True:
        return
    ref = ref_of(r)
    when = first_date(ctx, r, ref, "occurrenceDateTime", "occurrencePeriod.start", "authoredOn")
    for hit in resolve_concept(ctx, ref, r.get("code")):
        ctx.add(Ev.PLANNED, "planned", when, hit.provenance, item=hit.ingredient)
