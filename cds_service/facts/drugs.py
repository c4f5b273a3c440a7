"""Resolve what a medication record or order names to canonical ingredients, saying how.

Paths, in order of trust: RxNorm ingredient code ("code"), RxNorm product code from the
curated map in drugs.yaml ("product-code": SCD, SBD, their components and dose-form groups),
ATC ("atc"), then the generic or brand name in the text or a coding display ("text"). A
`medicationReference` is followed to a contained Medication ("#id") or a Medication in the
record ("reference"), whose code and `ingredient[].itemCodeableConcept`
("ingredient") are read the same way. When codes name an ingredient, text naming another one is
not used (and the disagreement is noted in issues).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cds_service.facts.evidence import Context
from cds_service.facts.matching import Matches, match_cc
from cds_service.facts.model import INGREDIENTS, Provenance
from cds_service.facts.reading import cc_text, ref_of
from cds_service.fhir_input import as_list

_INGREDIENT_SET = frozenset(INGREDIENTS)


@dataclass(frozen=True, slots=True)
class IngredientHit:
    ingredient: str
    provenance: tuple[Provenance, ...]


def _from_matches(m: Matches, resource_ref: str) -> dict[str, tuple[Provenance, ...]]:
    out: dict[str, tuple[Provenance, ...]] = {}
    for concept, hit in m.hits.items():
        if concept in _INGREDIENT_SET:
            out[concept] = (Provenance(resource_ref, hit.matched, hit.via),)
    return out


def _prefer_codes(
    ctx: Context,
    coded: dict[str, tuple[Provenance, ...]],
    texted: dict[str, tuple[Provenance, ...]],
    where: str,
) -> dict[str, tuple[Provenance, ...]]:
    if coded:
        extra = set(texted) - set(coded)
        if extra:
            ctx.issues.append(
                f"{where}: text names {sorted(extra)} but codes say {sorted(coded)}; codes used"
            )
        return coded
    return texted


def _split(
    ctx: Context, cc: Any, ref: str
) -> tuple[dict[str, tuple[Provenance, ...]], dict[str, tuple[Provenance, ...]]]:
    m = match_cc(ctx.term, cc)
    coded: dict[str, tuple[Provenance, ...]] = {}
    texted: dict[str, tuple[Provenance, ...]] = {}
    for ingredient, prov in _from_matches(m, ref).items():
        (texted if prov[0].via == "text" else coded)[ingredient] = prov
    return coded, texted


def _medication_resource(
    ctx: Context, owner: dict[str, Any], reference: str
) -> tuple[dict[str, Any] | None, str]:
    if reference.startswith("#"):
        wanted = reference[1:]
        for c in as_list(owner.get("contained")):
            if isinstance(c, dict) and c.get("id") == wanted:
                return c, ref_of(c, parent=ref_of(owner))
        return None, reference
    found = ctx.record.get(reference)
    if found is not None:
        return found, ref_of(found)
    return None, reference


def resolve_medication(ctx: Context, resource: dict[str, Any]) -> list[IngredientHit]:
    """Ingredients named by a MedicationRequest/Statement/Administration (or order)."""
    where = ref_of(resource)
    coded, texted = _split(ctx, resource.get("medicationCodeableConcept"), where)
    med_ref = resource.get("medicationReference")
    if isinstance(med_ref, dict):
        reference = med_ref.get("reference")
        link: Provenance | None = None
        med: dict[str, Any] | None = None
        med_where = where
        if isinstance(reference, str) and reference:
            med, med_where = _medication_resource(ctx, resource, reference)
            if med is None:
                ctx.issues.append(f"{where}: medicationReference not found in the data")
            else:
                link = Provenance(where, f"medicationReference {reference}", "reference")
        if med is not None and link is not None:
            m_coded, m_texted = _split(ctx, med.get("code"), med_where)
            for ing in as_list(med.get("ingredient")):
                if isinstance(ing, dict):
                    i_coded, i_texted = _split(ctx, ing.get("itemCodeableConcept"), med_where)
                    for k, v in i_coded.items():
                        m_coded.setdefault(
                            k, tuple(Provenance(p.resource, p.matched, "ingredient") for p in v)
                        )
                    for k, v in i_texted.items():
                        m_texted.setdefault(k, v)
            for k, v in m_coded.items():
                coded.setdefault(k, (link, *v))
            for k, v in m_texted.items():
                texted.setdefault(k, (link, *v))
        display = med_ref.get("display")
        if isinstance(display, str):
            _c, d_texted = _split(ctx, {"text": display}, where)
            for k, v in d_texted.items():
                texted.setdefault(k, v)
    chosen = _prefer_codes(ctx, coded, texted, where)
    return [IngredientHit(k, v) for k, v in sorted(chosen.items())]


def resolve_concept(ctx: Context, where: str, *ccs: Any) -> list[IngredientHit]:
    """Ingredients named by plain CodeableConcepts (Procedure / ServiceRequest codes)."""
    coded: dict[str, tuple[Provenance, ...]] = {}
    texted: dict[str, tuple[Provenance, ...]] = {}
    for cc in ccs:
        c, t = _split(ctx, cc, where)
        for k, v in c.items():
            coded.setdefault(k, v)
        for k, v in t.items():
            texted.setdefault(k, v)
    chosen = _prefer_codes(ctx, coded, texted, where)
    return [IngredientHit(k, v) for k, v in sorted(chosen.items())]


def medication_codes(ctx: Context, resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The codings naming the medication of a record or order (its own, or its Medication's)."""
    out: list[dict[str, Any]] = []
    mcc = resource.get("medicationCodeableConcept")
    if isinstance(mcc, dict):
        out.extend(c for c in as_list(mcc.get("coding")) if isinstance(c, dict))
    med_ref = resource.get("medicationReference")
    if isinstance(med_ref, dict) and isinstance(med_ref.get("reference"), str):
        med, _ = _medication_resource(ctx, resource, med_ref["reference"])
        if med is not None and isinstance(med.get("code"), dict):
            out.extend(c for c in as_list(med["code"].get("coding")) if isinstance(c, dict))
    return out


def medication_text(ctx: Context, resource: dict[str, Any]) -> str:
    """What the record or order says it is, for display."""
    text = cc_text(resource.get("medicationCodeableConcept"))
    if text:
        return text
    med_ref = resource.get("medicationReference")
    if isinstance(med_ref, dict):
        reference = med_ref.get("reference")
        if isinstance(reference, str):
            med, _ = _medication_resource(ctx, resource, reference)
            if med is not None:
                t = cc_text(med.get("code"))
                if t:
                    return t
        display = med_ref.get("display")
        if isinstance(display, str) and display.strip():
            return display.strip()
    text = cc_text(resource.get("code"))
    return text or "(no medication named)"
