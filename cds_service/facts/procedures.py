"""Procedures: transplant history (allogeneic / haploidentical / Treg-Tcon HSCT, DLI), cellular
therapy given as a procedure, and lumbar punctures (their Observations assess the CNS).

There are no verified codes for the transplant procedures (EVIDENCE.md), so a Procedure (or
Condition) is read by its wording: a stem cell transplant (`hsct`) with an allogeneic
qualifier is an allogeneic HSCT; one with no qualifier counts too, with detail "type not
stated" (in ALL nearly all are allogeneic, as ICD-10-CM Z94.84 is read); autologous wording
vetoes it. Haploidentical and Treg/Tcon wording imply an allogeneic HSCT. Procedures
`not-done`, `entered-in-error` or `preparation` are not evidence. A Procedure naming a drug or
CAR-T product (by code or text), or unnamed "CAR-T" wording (read as the catch-all
`cd19_cart_unnamed`), is an exposure like an administration (see facts.exposure).
"""

from __future__ import annotations

from typing import Any

from cds_service.facts import concepts as C
from cds_service.facts.drugs import resolve_concept
from cds_service.facts.evidence import Context, Ev, procedure_date
from cds_service.facts.exposure import exposure_state
from cds_service.facts.matching import Matches, match_cc
from cds_service.facts.model import PartialDate, Provenance
from cds_service.facts.reading import ref_of
from cds_service.fhir_input import as_list

EMITS = frozenset(
    {Ev.HSCT_ALLOGENEIC, Ev.HSCT_HAPLOIDENTICAL, Ev.HSCT_TREG_TCON, Ev.DLI, Ev.EXPOSURE}
)

_NOT_DONE = frozenset({"not-done", "entered-in-error", "preparation"})


def transplant_evidence(ctx: Context, m: Matches, ref: str, date: PartialDate | None) -> None:
    """hsct.* and dli evidence from matched wording."""

    def prov(concept: str) -> Provenance:
        hit = m.hits[concept]
        return Provenance(ref, hit.matched, hit.via)

    haplo = C.HAPLOIDENTICAL in m and (C.HSCT in m or C.ALLO_QUALIFIER in m)
    treg = C.TREG_TCON in m
    if C.HSCT in m and C.AUTO_QUALIFIER not in m:
        if C.ALLO_QUALIFIER in m:
            ctx.add(Ev.HSCT_ALLOGENEIC, "yes", date, (prov(C.HSCT), prov(C.ALLO_QUALIFIER)))
        else:
            ctx.add(Ev.HSCT_ALLOGENEIC, "yes", date, prov(C.HSCT), detail="type not stated")
    elif treg or haplo:
        concept = C.TREG_TCON if treg else C.HAPLOIDENTICAL
        label = concept.replace("_", "/")
        ctx.add(Ev.HSCT_ALLOGENEIC, "yes", date, prov(concept), detail=f"implied by {label}")
    if haplo:
        ctx.add(Ev.HSCT_HAPLOIDENTICAL, "yes", date, prov(C.HAPLOIDENTICAL))
    if treg:
        ctx.add(Ev.HSCT_TREG_TCON, "yes", date, prov(C.TREG_TCON))
    if C.DLI in m:
        ctx.add(Ev.DLI, "yes", date, prov(C.DLI))


def visit_procedure(ctx: Context, p: dict[str, Any]) -> None:
    if p.get("status") in _NOT_DONE:
        return
    ref = ref_of(p)
    codes = [p.get("code"), *as_list(p.get("usedCode"))]
    m = match_cc(ctx.term, *codes)
    if C.LUMBAR_PUNCTURE in m:
        ctx.lumbar_punctures.add(ref)
    date = procedure_date(ctx, p, ref)
    transplant_evidence(ctx, m, ref, date)
    hits = resolve_concept(ctx, ref, *codes)
    car_t = C.CAR_T in m and not any(h.ingredient.endswith("leucel") for h in hits)
    if not hits and not car_t:
        return
    state = exposure_state(ctx, p, ref)
    if state is None:
        return
    value, start, end, _ = state
    for hit in hits:
        if hit.ingredient == "blinatumomab":
            ctx.blinatumomab_refs.add(ref)
        ctx.add(Ev.EXPOSURE, value, start, hit.provenance, end=end, item=hit.ingredient)
    if car_t:
        cm = m.hits[C.CAR_T]
        ctx.add(
            Ev.EXPOSURE,
            value,
            start,
            Provenance(ref, cm.matched, cm.via),
            end=end,
            detail="CAR-T product not named",
            item="cd19_cart_unnamed",
        )
