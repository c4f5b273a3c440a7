"""Evidence of intrathecal therapy (CNS prophylaxis or treatment): a medication given by the
intrathecal route, or a Procedure or medication record worded as intrathecal chemotherapy.

A medication record counts when it was given — a MedicationAdministration that is completed
or in progress, a MedicationStatement that is active or completed — and its dosage route is
intrathecal (SNOMED 72607000, or the word) or its medication text says intrathecal ("IT
methotrexate", "triple intrathecal therapy"). A Procedure counts when it is completed (or in
progress) and its code says intrathecal chemotherapy. Orders, drafts and plans are not
evidence that it was given; negated or equivocal wording is not either. A lumbar puncture
alone is a CNS assessment, not intrathecal therapy (procedures.py).
"""

from __future__ import annotations

from typing import Any

from cds_service.facts import concepts as C
from cds_service.facts.evidence import Context, Ev, first_date
from cds_service.facts.matching import Matches, match_cc
from cds_service.facts.model import Provenance
from cds_service.facts.reading import ref_of
from cds_service.fhir_input import as_list

EMITS = frozenset({Ev.INTRATHECAL})

_GIVEN = {
    "MedicationAdministration": frozenset({"completed", "in-progress"}),
    "MedicationStatement": frozenset({"active", "completed"}),
    "Procedure": frozenset({"completed", "in-progress"}),
}
_DATES = (
    "effectiveDateTime",
    "effectivePeriod.start",
    "performedDateTime",
    "performedPeriod.start",
    "dateAsserted",
)


def _routes(resource: dict[str, Any]) -> list[Any]:
    dosages = [resource.get("dosage"), *as_list(resource.get("dosage"))]
    return [d.get("route") for d in dosages if isinstance(d, dict) and d.get("route")]


def _hit(m: Matches, concept: str, ref: str, via: str | None = None) -> Provenance:
    hit = m.hits[concept]
    return Provenance(ref, hit.matched, via or hit.via)


def visit_intrathecal(ctx: Context, resource: dict[str, Any]) -> None:
    rtype = resource.get("resourceType")
    if rtype not in _GIVEN or resource.get("status") not in _GIVEN[rtype]:
        return
    ref = ref_of(resource)
    prov: Provenance | None = None
    if rtype == "Procedure":
        m = match_cc(ctx.term, resource.get("code"))
        if C.INTRATHECAL_THERAPY in m:
            prov = _hit(m, C.INTRATHECAL_THERAPY, ref)
    else:
        route = match_cc(ctx.term, *_routes(resource))
        if C.INTRATHECAL_ROUTE in route:
            prov = _hit(route, C.INTRATHECAL_ROUTE, ref, "route")
        else:
            m = match_cc(ctx.term, resource.get("medicationCodeableConcept"))
            if C.INTRATHECAL_THERAPY in m:
                prov = _hit(m, C.INTRATHECAL_THERAPY, ref)
    if prov is None:
        return
    ctx.add(Ev.INTRATHECAL, "yes", first_date(ctx, resource, ref, *_DATES), prov)
