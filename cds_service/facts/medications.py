"""Drug exposure episodes from MedicationRequest, MedicationStatement and MedicationAdministration.

Each record naming a tracked ingredient becomes one `exposure.<ingredient>` evidence item with
value "current" or "past", start (date), end and stop reason (detail).

Decisions (documented because they are judgement calls):

* current — a MedicationRequest (intent order/plan-less) or MedicationStatement that is
  `active` or `on-hold` and whose end date is not surely before as_of; a
  MedicationAdministration that is `in-progress`, or whose date lies within the last
  `ADMINISTRATION_CURRENT_DAYS` days of as_of. Without as_of, end dates and the window are not
  applied (active/on-hold are current; administrations are current only when in-progress).
* past — `completed`, `stopped` or `unknown` status, or an active record whose end has passed.
* not exposure — entered-in-error (any type); MedicationRequest `cancelled`, `draft`,
  intent proposal/plan/option or doNotPerform; MedicationStatement `not-taken` or `intended`;
  MedicationAdministration `not-done`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cds_service.facts.drugs import resolve_medication
from cds_service.facts.evidence import Context, first_date, match_texts, ref_of, short, texts_of
from cds_service.facts.model import PartialDate, Provenance
from cds_service.fhir_input import as_list

ADMINISTRATION_CURRENT_DAYS = 30
"""An administration within this many days before as_of counts as current exposure."""

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
) -> tuple[str, PartialDate | None, PartialDate | None] | None:
    """("current" | "past", start, end) of one medication record, or None if not exposure."""
    rtype = r.get("resourceType", "")
    status = r.get("status")
    if status in _NOT_EXPOSURE.get(rtype, frozenset()):
        return None
    if rtype == "MedicationRequest":
        if r.get("intent") in _NOT_ORDERS or r.get("doNotPerform") is True:
            return None
        start, end = _request_period(ctx, r, ref)
        ongoing = status in _ONGOING and not _ended_before(end, ctx.as_of)
        return ("current" if ongoing else "past"), start, end
    if rtype == "MedicationStatement":
        start = first_date(ctx, r, ref, "effectivePeriod.start", "effectiveDateTime")
        end = first_date(ctx, r, ref, "effectivePeriod.end")
        ongoing = status in _ONGOING and not _ended_before(end, ctx.as_of)
        return ("current" if ongoing else "past"), start, end
    if rtype in ("MedicationAdministration", "Procedure"):
        if rtype == "Procedure":
            start = first_date(ctx, r, ref, "performedPeriod.start", "performedDateTime")
            end = first_date(ctx, r, ref, "performedPeriod.end")
        else:
            start = first_date(ctx, r, ref, "effectivePeriod.start", "effectiveDateTime")
            end = first_date(ctx, r, ref, "effectivePeriod.end")
        if status == "in-progress":
            return "current", start, end
        last = end or start
        if ctx.as_of is not None and last is not None:
            window = ctx.as_of - dt.timedelta(days=ADMINISTRATION_CURRENT_DAYS)
            if last.end >= window:
                return "current", start, end
        return "past", start, end
    return None


def _response_in_reason(
    ctx: Context, r: dict[str, Any], ref: str, date: PartialDate | None
) -> None:
    """A blinatumomab record stopped "for no response" / "refractory" says how it went."""
    texts = [t for reason in as_list(r.get("statusReason")) for t in texts_of(reason)]
    if not texts:
        return
    m = match_texts(ctx.term, texts)
    for concept, value in (("no_response", "no_response"), ("response", "response")):
        if concept in m:
            matched = f"statusReason {m.hits[concept].matched}"
            ctx.add("blinatumomab.response", value, date, Provenance(ref, matched, "text"))
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
    value, start, end = state
    reason = _stop_reason(r) if value == "past" else None
    for hit in hits:
        if hit.ingredient == "blinatumomab":
            ctx.blinatumomab_refs.add(ref)
            _response_in_reason(ctx, r, ref, end or start)
        ctx.add(f"exposure.{hit.ingredient}", value, start, hit.provenance, detail=reason, end=end)
