"""Drug exposure episodes from MedicationRequest, MedicationStatement and MedicationAdministration
(and the cellular-therapy Procedures that `facts.procedures` hands over).

Each record naming a tracked ingredient becomes one `Ev.EXPOSURE` item (item = ingredient)
with value "current" or "past", start (date), end, stop reason (detail) and the latest date the
record was asserted (dateAsserted, authoredOn). Whether an open-ended record is outweighed by
staleness or by a later drug of its class is decided by the `Exposure` reducer, from
rules/facts.yaml.

Decisions (documented because they are judgement calls):

* current — a MedicationRequest (intent order/plan-less) or MedicationStatement that is
  `active` or `on-hold` and whose end date is not surely before as_of; a
  MedicationAdministration (or Procedure) that is `in-progress`, or whose date lies within the
  last `administration_current_days` of as_of. Without as_of, end dates and the window are not
  applied (active/on-hold are current; administrations are current only when in-progress).
* past — `completed`, `stopped` or `unknown` status, or an active record whose end has passed.
* not exposure — entered-in-error (any type); MedicationRequest `cancelled`, `draft`,
  intent proposal/plan/option or doNotPerform; MedicationStatement `not-taken` or `intended`;
  MedicationAdministration `not-done`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cds_service.facts import concepts as C
from cds_service.facts.drugs import resolve_medication
from cds_service.facts.evidence import Context, Ev, first_date, latest
from cds_service.facts.matching import match_texts
from cds_service.facts.model import PartialDate, Provenance
from cds_service.facts.reading import ref_of, short, texts_of
from cds_service.fhir_input import as_list

EMITS = frozenset({Ev.EXPOSURE, Ev.BLINATUMOMAB_RESPONSE, Ev.STOP_REASON})

_NOT_EXPOSURE: dict[str, frozenset[str]] = {
    "MedicationRequest": frozenset({"entered-in-error", "cancelled", "draft"}),
    "MedicationStatement": frozenset({"entered-in-error", "not-taken", "intended"}),
    "MedicationAdministration": frozenset({"entered-in-error", "not-done"}),
}
_NOT_ORDERS = frozenset({"proposal", "plan", "option"})
_ONGOING = frozenset({"active", "on-hold"})


def _stop_reason(resource: dict[str, Any]) -> str | None:
    for reason in as_list(resource.get("statusReason")):
        for text in texts_of(reason):
            return short(text)
    return None


def _ended_before(end: PartialDate | None, as_of: dt.date | None) -> bool:
    return end is not None and as_of is not None and end.end < as_of


def _request_period(
    ctx: Context, r: dict[str, Any], ref: str
) -> tuple[PartialDate | None, PartialDate | None]:
    start = first_date(ctx, r, ref, "authoredOn", "dispenseRequest.validityPeriod.start")
    end = first_date(ctx, r, ref, "dispenseRequest.validityPeriod.end")
    for dosage in as_list(r.get("dosageInstruction")):
        if not isinstance(dosage, dict):
            continue
        timing = dosage.get("timing")
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
        if isinstance(bounds, dict):
            start = start or first_date(ctx, bounds, ref, "start")
            end = first_date(ctx, bounds, ref, "end") or end
    return start, end


def exposure_state(
    ctx: Context, r: dict[str, Any], ref: str
) -> tuple[str, PartialDate | None, PartialDate | None, PartialDate | None] | None:
    """("current" | "past", start, end, asserted) of one record, or None if not exposure."""
    rtype = r.get("resourceType", "")
    status = r.get("status")
    if status in _NOT_EXPOSURE.get(rtype, frozenset()):
        return None
    if rtype == "MedicationRequest":
        if r.get("intent") in _NOT_ORDERS or r.get("doNotPerform") is True:
            return None
        start, end = _request_period(ctx, r, ref)
        asserted = first_date(ctx, r, ref, "authoredOn")
        ongoing = status in _ONGOING and not _ended_before(end, ctx.as_of)
        return ("current" if ongoing else "past"), start, end, asserted
    if rtype == "MedicationStatement":
        start = first_date(ctx, r, ref, "effectivePeriod.start", "effectiveDateTime")
        end = first_date(ctx, r, ref, "effectivePeriod.end")
        asserted = first_date(ctx, r, ref, "dateAsserted")
        ongoing = status in _ONGOING and not _ended_before(end, ctx.as_of)
        return ("current" if ongoing else "past"), start, end, asserted
    if rtype in ("MedicationAdministration", "Procedure"):
        if rtype == "Procedure":
            start = first_date(ctx, r, ref, "performedPeriod.start", "performedDateTime")
            end = first_date(ctx, r, ref, "performedPeriod.end")
        else:
            start = first_date(ctx, r, ref, "effectivePeriod.start", "effectiveDateTime")
            end = first_date(ctx, r, ref, "effectivePeriod.end")
        if status == "in-progress":
            return "current", start, end, None
        last = latest(end, start)
        if ctx.as_of is not None and last is not None:
            window = ctx.parameters.exposure.administration_current_days
            if last.end >= ctx.as_of - dt.timedelta(days=window):
                return "current", start, end, None
        return "past", start, end, None
    return None


def _stop_kind(
    ctx: Context, r: dict[str, Any], ref: str, ingredient: str, date: PartialDate | None
) -> None:
    """Why the drug was stopped (resistance / intolerance), when the statusReason says so."""
    texts = [t for reason in as_list(r.get("statusReason")) for t in texts_of(reason)]
    if not texts:
        return
    m = match_texts(ctx.term, texts)
    for concept, value in ((C.STOP_RESISTANCE, "resistance"), (C.STOP_INTOLERANCE, "intolerance")):
        if concept in m:
            matched = f"statusReason {m.hits[concept].matched}"
            prov = Provenance(ref, matched, "text")
            ctx.add(Ev.STOP_REASON, value, date, prov, item=ingredient)
            return


def _response_in_reason(
    ctx: Context, r: dict[str, Any], ref: str, date: PartialDate | None
) -> None:
    """A blinatumomab record stopped "for no response" / "refractory" says how it went."""
    texts = [t for reason in as_list(r.get("statusReason")) for t in texts_of(reason)]
    if not texts:
        return
    m = match_texts(ctx.term, texts)
    for concept, value in ((C.NO_RESPONSE, "no_response"), (C.RESPONSE, "response")):
        if concept in m:
            matched = f"statusReason {m.hits[concept].matched}"
            ctx.add(Ev.BLINATUMOMAB_RESPONSE, value, date, Provenance(ref, matched, "text"))
            return


def visit_medication(ctx: Context, r: dict[str, Any]) -> None:
    """Exposure evidence from one MedicationRequest / Statement / Administration."""
    ref = ref_of(r)
    if r.get("status") == "entered-in-error":
        return
    hits = resolve_medication(ctx, r)
    if not hits:
        return
    state = exposure_state(ctx, r, ref)
    if state is None:
        return
    value, start, end, asserted = state
    reason = _stop_reason(r) if value == "past" else None
    for hit in hits:
        if hit.ingredient == "blinatumomab":
            ctx.blinatumomab_refs.add(ref)
            _response_in_reason(ctx, r, ref, end or start)
        if value == "past":
            _stop_kind(ctx, r, ref, hit.ingredient, end or start)
        ctx.add(
            Ev.EXPOSURE,
            value,
            start,
            hit.provenance,
            detail=reason,
            end=end,
            item=hit.ingredient,
            asserted=asserted,
        )
