"""The orders under decision, resolved to canonical ingredients with the path that matched.

A draft MedicationRequest resolves through drugs.resolve_medication (RxNorm ingredient code,
curated product code, ATC, brand/generic text, medicationReference to a contained or bundled
Medication). A ServiceRequest (cellular therapy) resolves through its code's codes and text.
A CAR-T order (either type) naming no product is noted in issues and resolved to the
catch-all ingredient "cd19_cart_unnamed": in B-ALL it is CD19-directed, so CD19 safety checks
still apply. An order naming several ingredients yields one OrderedItem per ingredient; an
order naming none yields one OrderedItem with ingredient None, and each of its codes is
recorded as "unrecognised order code SYSTEM|CODE" (issues, and the service's log line): never
a silent miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cds_service.facts import concepts as C
from cds_service.facts.drugs import (
    medication_codes,
    medication_text,
    resolve_concept,
    resolve_medication,
)
from cds_service.facts.evidence import Context
from cds_service.facts.matching import match_cc
from cds_service.facts.model import OrderedItem, Provenance
from cds_service.facts.reading import cc_text, ref_of
from cds_service.fhir_input import as_list, normalise_resource


def resolve_orders(ctx: Context, orders: Sequence[Any]) -> tuple[OrderedItem, ...]:
    items: list[OrderedItem] = []
    for raw in orders:
        if not isinstance(raw, dict):
            ctx.issues.append("an order that is not a FHIR resource was ignored")
            continue
        try:
            items.extend(_resolve_one(ctx, normalise_resource(raw)))
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            ctx.issues.append(f"{ref_of(raw)}: order could not be read ({type(exc).__name__})")
    return tuple(items)


def _resolve_one(ctx: Context, order: dict[str, Any]) -> list[OrderedItem]:
    items: list[OrderedItem] = []
    ref = ref_of(order)
    rtype = order.get("resourceType")
    if rtype == "ServiceRequest":
        concept = order.get("code")
        hits = resolve_concept(ctx, ref, concept)
        text = cc_text(concept) or "(no code)"
    elif rtype in ("MedicationRequest", "MedicationOrder"):
        concept = order.get("medicationCodeableConcept")
        hits = resolve_medication(ctx, order)
        text = medication_text(ctx, order)
    else:
        ctx.issues.append(f"{ref}: {rtype} is not an order type read here, ignored")
        return items
    if not hits and isinstance(concept, dict) and C.CAR_T in match_cc(ctx.term, concept):
        ctx.issues.append(f"{ref}: CAR-T order without a named product")
        matched = Provenance(ref, f"text: {text}", "text")
        return [OrderedItem(ref, "cd19_cart_unnamed", text, (matched,))]
    if not hits:
        codes = (
            medication_codes(ctx, order)
            if rtype != "ServiceRequest"
            else [c for c in as_list(concept.get("coding")) if isinstance(c, dict)]
            if isinstance(concept, dict)
            else []
        )
        shown = [
            f"{c.get('system') or '(no system)'}|{c.get('code')}"
            for c in codes
            if isinstance(c.get("code"), str)
        ]
        for code in shown:
            ctx.issues.append(f"{ref}: unrecognised order code {code}")
        ctx.unrecognised_codes.extend(shown)
        if not shown:
            ctx.issues.append(
                f"{ref}: no tracked ingredient matched (no code; text not recognised)"
            )
        items.append(OrderedItem(ref, None, text))
        return items
    for hit in hits:
        items.append(OrderedItem(ref, hit.ingredient, text, hit.provenance))
    return items
