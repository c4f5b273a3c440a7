"""Transplant history (allogeneic / haploidentical / Treg-Tcon HSCT, DLI) and cellular-therapy
Procedures.

There are no verified codes for these procedures (EVIDENCE.md), so a Procedure (or Condition)
is read by its wording: a stem cell transplant (`hsct`) with an allogeneic qualifier is an
allogeneic HSCT; one with no qualifier counts too, with detail "type not stated" (in ALL nearly
all are allogeneic, as ICD-10-CM Z94.84 is read); autologous wording vetoes it. Haploidentical
and Treg/Tcon wording imply an allogeneic HSCT. Procedures `not-done`, `entered-in-error` or
`preparation` are not evidence. A Procedure naming a drug or CAR-T product (by code or text), or
unnamed "CAR-T" wording, is an exposure like an administration (see medications.py).
"""

from __future__ import annotations

from typing import Any

from cds_service.facts.drugs import resolve_concept
from cds_service.facts.evidence import Context, Matches, match_cc, procedure_date, ref_of
from cds_service.facts.medications import exposure_state
from cds_service.facts.model import PartialDate, Provenance
from cds_service.fhir_input import as_list

_NOT_DONE = frozenset({"not-done", "entered-in-error", "preparation"})


def transplant_evidence(ctx: Context, m: Matches, ref: str, date: PartialDate | None) -> None:
    """hsct.* and dli evidence from matched wording."""

    def prov(concept: str) -> Provenance:
        hit = m.hits[concept]
        return Provenance(ref, hit.matched, hit.via)

    haplo = "haploidentical" in m and ("hsct" in m or "allo_qualifier" in m)
    treg = "treg_tcon" in m
    if "hsct" in m and "auto_qualifier" not in m:
        if "allo_qualifier" in m:
            ctx.add("hsct.allogeneic", "yes", date, (prov("hsct"), prov("allo_qualifier")))
        else:
            ctx.add("hsct.allogeneic", "yes", date, prov("hsct"), detail="type not stated")
    elif treg or haplo:
        concept = "treg_tcon" if treg else "haploidentical"
        ctx.add("hsct.allogeneic", "yes", date, prov(concept), detail=f"implied by {concept}")
    if haplo:
        ctx.add("hsct.haploidentical", "yes", date, prov("haploidentical"))
    if treg:
        ctx.add("hsct.treg_tcon", "yes", date, prov("treg_tcon"))
    if "dli" in m:
        ctx.add("dli", "yes", date, prov("dli"))


def visit_procedure(ctx: Context, p: dict[str, Any]) -> None:
    if p.get("status") in _NOT_DONE:
        return
    ref = ref_of(p)
    date = procedure_date(ctx, p, ref)
    codes = [p.get("code"), *as_list(p.get("usedCode"))]
    m = match_cc(ctx.term, *codes)
    transplant_evidence(ctx, m, ref, date)
    hits = resolve_concept(ctx, ref, *codes)
    car_t = "car_t" in m and not any(h.ingredient.endswith("leucel") for h in hits)
    if not hits and not car_t:
        return
    state = exposure_state(ctx, p, ref)
    if state is None:
        return
    value, start, end = state
    for hit in hits:
        if hit.ingredient == "blinatumomab":
            ctx.blinatumomab_refs.add(ref)
        ctx.add(f"exposure.{hit.ingredient}", value, start, hit.provenance, end=end)
    if car_t:
        cm = m.hits["car_t"]
        ctx.add(
            "exposure.cd19_cart",
            value,
            start,
            Provenance(ref, cm.matched, cm.via),
            end=end,
            detail="CAR-T product not named",
        )
