"""Evidence from Conditions: diagnoses, relapse, Ph wording, CNS and extramedullary sites,
transplant and CAR-T history codes, CD19 wording, and arterial risk factors.

Refuted and entered-in-error Conditions are skipped; a negated mention ("no CNS involvement")
is not evidence. The date is onset (dateTime, period start, string) else recordedDate.
Structural matches: a leukemia Condition whose bodySite is in the CNS, the testis, the skin or
another extramedullary site counts as involvement of that site (there are no verified codes).
"""

from __future__ import annotations

from typing import Any

from cds_service.facts.cd19 import cd19_from_text
from cds_service.facts.evidence import (
    Context,
    Matches,
    clinical_status,
    condition_date,
    condition_is_evidence,
    match_cc,
    ref_of,
    texts_of,
)
from cds_service.facts.model import Provenance
from cds_service.facts.transplant import transplant_evidence
from cds_service.fhir_input import as_list

_LEUKEMIA = (
    "b_all",
    "b_all_ph_morphology",
    "cml",
    "cml_lymphoid_blast",
    "leukemia",
    "all_in_relapse",
)
_EM_CONTEXT = (
    "cns_leukemia",
    "testicular_involvement",
    "skin_involvement",
    "extramedullary_disease",
)
_ARTERIAL = (
    "hypertension",
    "diabetes",
    "dyslipidemia",
    "smoking",
    "coronary_artery_disease",
    "stroke",
    "peripheral_arterial_disease",
)
SITE_CONCEPTS = (("testis_site", "testis"), ("skin_site", "skin"), ("other_em_site", "other"))
WORDING_SITES = (
    ("testicular_involvement", "testis"),
    ("skin_involvement", "skin"),
)


def visit_condition(ctx: Context, c: dict[str, Any]) -> None:
    if not condition_is_evidence(c):
        return
    m = match_cc(ctx.term, c.get("code"))
    if not m.hits:
        return  # nothing this layer knows (most Conditions of a real record)
    ref = ref_of(c)
    date = condition_date(ctx, c, ref)
    stage = match_cc(
        ctx.term, *(s.get("summary") for s in as_list(c.get("stage")) if isinstance(s, dict))
    )

    def prov(concept: str, mm: Matches = m) -> Provenance:
        hit = mm.hits[concept]
        return Provenance(ref, hit.matched, hit.via)

    leukemia = m.any(*_LEUKEMIA)
    # diagnoses
    if m.any("b_all", "b_all_ph_morphology"):
        concept = "b_all" if "b_all" in m else "b_all_ph_morphology"
        ctx.add("diagnosis.b_all", "yes", date, prov(concept))
    lbp = m.first("cml_lymphoid_blast") or (
        stage.first("cml_lymphoid_blast") if m.any("cml", "cml_icd10_bcr_abl_positive") else None
    )
    if lbp is not None:
        _, hit = lbp
        p = Provenance(ref, hit.matched, hit.via if "cml_lymphoid_blast" in m else "stage")
        ctx.add("diagnosis.cml_lymphoid_blast", "yes", date, p)
        ctx.add("diagnosis.cml", "yes", date, p)
    if m.any("cml", "cml_icd10_bcr_abl_positive"):
        concept = "cml" if "cml" in m else "cml_icd10_bcr_abl_positive"
        ctx.add("diagnosis.cml", "yes", date, prov(concept))
    # Ph status
    if "cml_icd10_bcr_abl_positive" in m:
        ctx.add(
            "ph",
            "positive",
            date,
            prov("cml_icd10_bcr_abl_positive"),
            detail="C92.1x is BCR/ABL-positive CML",
        )
    if "b_all_ph_morphology" in m:
        ctx.add("ph", "positive", date, prov("b_all_ph_morphology"))
    if "ph_positive" in m:
        ctx.add("ph", "positive", date, prov("ph_positive"))
    elif "ph_negative" in m:
        ctx.add("ph", "negative", date, prov("ph_negative"))
    # relapse
    status = clinical_status(c)
    if "all_in_relapse" in m:
        ctx.add("relapse", "yes", date, prov("all_in_relapse"))
    elif "relapse_exact" in m:
        ctx.add("relapse", "yes", date, prov("relapse_exact"))
    elif "relapse" in m and (leukemia or m.any(*_EM_CONTEXT)):
        ctx.add("relapse", "yes", date, prov("relapse"))
    elif status in ("relapse", "recurrence") and leukemia:
        ctx.add("relapse", "yes", date, Provenance(ref, f"clinicalStatus {status}", "status"))
    # CNS and other extramedullary sites
    body = match_cc(ctx.term, *as_list(c.get("bodySite")))
    if "cns_leukemia" in m:
        ctx.add("cns", "yes", date, prov("cns_leukemia"))
    elif leukemia and "cns_site" in body:
        ctx.add(
            "cns",
            "yes",
            date,
            Provenance(ref, f"bodySite {body.hits['cns_site'].matched}", "body-site"),
        )
    sites: set[str] = set()
    for concept, site in WORDING_SITES:
        if concept in m:
            sites.add(site)
            ctx.add("em", site, date, prov(concept))
    if leukemia or m.any(*_EM_CONTEXT):
        for concept, site in SITE_CONCEPTS:
            if concept in body and site not in sites:
                sites.add(site)
                hit = body.hits[concept]
                ctx.add("em", site, date, Provenance(ref, f"bodySite {hit.matched}", "body-site"))
    if "extramedullary_disease" in m and not sites and "cns_leukemia" not in m:
        ctx.add("em", "other", date, prov("extramedullary_disease"))
    # transplant, DLI, CAR-T history
    if "hsct_status" in m:
        ctx.add(
            "hsct.allogeneic", "yes", date, prov("hsct_status"), detail="type not stated (Z94.84)"
        )
    transplant_evidence(ctx, m, ref, date)
    if "car_t_history" in m:
        ctx.add(
            "exposure.cd19_cart",
            "past",
            date,
            prov("car_t_history"),
            detail="CAR-T history (Z92.850)",
        )
    # CD19 wording ("CD19-negative relapse")
    for text in texts_of(c.get("code")):
        reading = cd19_from_text(text)
        if reading is not None:
            ctx.add("cd19", reading, date, Provenance(ref, f'text "cd19 {reading}"', "text"))
            break
    # arterial risk factors
    for concept in _ARTERIAL:
        if concept in m:
            ctx.add("arterial_risk", "yes", date, prov(concept), detail=concept.replace("_", " "))
