"""Evidence from Conditions: diagnoses, relapse, Ph wording, CNS and extramedullary sites,
transplant and CAR-T history codes, CD19 wording, arterial risk factors and smoking.

Refuted, entered-in-error and unconfirmed (provisional, differential) Conditions are skipped;
a negated or equivocal mention ("no CNS involvement", "suspected CNS relapse") is not evidence.

Dates. A diagnosis is dated by its onset (else recordedDate). A relapse — C91.02, a relapse
clinicalStatus on a leukemia code, or relapse wording — is dated by the evidence that the
patient is in relapse: its onset when that onset lies after the first leukemia diagnosis in
the record; otherwise (an onset that is the original diagnosis, or none) the later of
recordedDate and the Condition's encounter, else undated. (The first diagnosis is the
earliest onset of a leukemia Condition that is not itself a relapse record; with none, the
onset is used when nothing later is recorded.) A CNS / extramedullary Condition
that is inactive, in remission or resolved is "resolved" involvement: onset, and abatement as
its end. Structural matches: a leukemia Condition whose bodySite is in the CNS, the testis,
the skin or another extramedullary site counts as involvement of that site (there are no
verified codes).
"""

from __future__ import annotations

from typing import Any

from cds_service.facts import concepts as C
from cds_service.facts.cd19 import cd19_from_text
from cds_service.facts.evidence import Context, Ev, condition_onset, first_date, latest
from cds_service.facts.matching import Matches, match_cc
from cds_service.facts.model import PartialDate, Provenance
from cds_service.facts.procedures import transplant_evidence
from cds_service.facts.reading import clinical_status, condition_is_evidence, ref_of, texts_of
from cds_service.fhir_input import as_list

EMITS = frozenset(
    {
        Ev.B_ALL,
        Ev.CML,
        Ev.CML_LYMPHOID_BLAST,
        Ev.T_ALL,
        Ev.AML,
        Ev.PH,
        Ev.RELAPSE,
        Ev.CNS,
        Ev.EXTRAMEDULLARY,
        Ev.HSCT_ALLOGENEIC,
        Ev.HSCT_HAPLOIDENTICAL,
        Ev.HSCT_TREG_TCON,
        Ev.DLI,
        Ev.EXPOSURE,
        Ev.CD19,
        Ev.ARTERIAL_RISK,
        Ev.SMOKING,
    }
)

_LEUKEMIA = (
    C.B_ALL,
    C.B_ALL_PH_MORPHOLOGY,
    C.CML,
    C.CML_LYMPHOID_BLAST,
    C.LEUKEMIA,
    C.ALL_IN_RELAPSE,
)
_EM_CONTEXT = (
    C.CNS_LEUKEMIA,
    C.TESTICULAR_INVOLVEMENT,
    C.SKIN_INVOLVEMENT,
    C.EXTRAMEDULLARY_DISEASE,
)
_ARTERIAL = (
    C.HYPERTENSION,
    C.DIABETES,
    C.DYSLIPIDEMIA,
    C.CORONARY_ARTERY_DISEASE,
    C.STROKE,
    C.PERIPHERAL_ARTERIAL_DISEASE,
)
_SITE_CONCEPTS = ((C.TESTIS_SITE, "testis"), (C.SKIN_SITE, "skin"), (C.OTHER_EM_SITE, "other"))
_WORDING_SITES = ((C.TESTICULAR_INVOLVEMENT, "testis"), (C.SKIN_INVOLVEMENT, "skin"))
_RESOLVED = frozenset({"inactive", "remission", "resolved"})
_RELAPSING = frozenset({"relapse", "recurrence"})


def first_diagnosis(ctx: Context, conditions: list[dict[str, Any]]) -> PartialDate | None:
    """Earliest onset of a leukemia diagnosis among the Conditions that are not themselves
    about a relapse (evidence only)."""
    onsets: list[PartialDate] = []
    for c in conditions:
        if not condition_is_evidence(c):
            continue
        m = match_cc(ctx.term, c.get("code"))
        if m.any(*_LEUKEMIA) and _relapse_of(m, clinical_status(c), c, ref_of(c)) is None:
            onset = first_date(
                ctx, c, ref_of(c), "onsetDateTime", "onsetPeriod.start", "onsetString"
            )
            if onset is not None:
                onsets.append(onset)
    return min(onsets, key=lambda d: (d.start, d.end)) if onsets else None


def _relapse_of(m: Matches, status: str | None, c: dict[str, Any], ref: str) -> Provenance | None:
    """What makes this Condition a relapse record, or None."""

    def prov(concept: str) -> Provenance:
        hit = m.hits[concept]
        return Provenance(ref, hit.matched, hit.via)

    if C.ALL_IN_RELAPSE in m:
        return prov(C.ALL_IN_RELAPSE)
    if C.RELAPSE_EXACT in m:
        return prov(C.RELAPSE_EXACT)
    if C.RELAPSE in m and (m.any(*_LEUKEMIA) or m.any(*_EM_CONTEXT)):
        return prov(C.RELAPSE)
    if status in _RELAPSING and m.any(*_LEUKEMIA):
        return Provenance(ref, f"clinicalStatus {status}", "status")
    return None


def _encounter_start(ctx: Context, c: dict[str, Any], ref: str) -> PartialDate | None:
    enc = c.get("encounter")
    reference = enc.get("reference") if isinstance(enc, dict) else None
    target = ctx.record.get(reference) if isinstance(reference, str) else None
    if target is None:
        return None
    return first_date(ctx, target, f"{ref} encounter", "period.start", "period.end")


def relapse_date(ctx: Context, c: dict[str, Any], ref: str) -> PartialDate | None:
    """When a relapse Condition says the patient was in relapse (see the module docstring)."""
    onset = first_date(ctx, c, ref, "onsetDateTime", "onsetPeriod.start", "onsetString")
    first = ctx.first_diagnosis
    if onset is not None and first is not None and onset.surely_after(first):
        return onset
    recorded = first_date(ctx, c, ref, "recordedDate")
    later = latest(recorded, _encounter_start(ctx, c, ref))
    if later is not None and (onset is None or not onset.surely_after(later)):
        return later
    return onset if first is None else None


def visit_condition(ctx: Context, c: dict[str, Any]) -> None:
    if not condition_is_evidence(c):
        return
    m = match_cc(ctx.term, c.get("code"))
    if not m.hits:
        return  # nothing this layer knows (most Conditions of a real record)
    ref = ref_of(c)
    date = condition_onset(ctx, c, ref)
    status = clinical_status(c)
    stage = match_cc(
        ctx.term, *(s.get("summary") for s in as_list(c.get("stage")) if isinstance(s, dict))
    )

    def prov(concept: str, mm: Matches = m) -> Provenance:
        hit = mm.hits[concept]
        return Provenance(ref, hit.matched, hit.via)

    leukemia = m.any(*_LEUKEMIA)
    # diagnoses
    if m.any(C.B_ALL, C.B_ALL_PH_MORPHOLOGY):
        concept = C.B_ALL if C.B_ALL in m else C.B_ALL_PH_MORPHOLOGY
        ctx.add(Ev.B_ALL, "yes", date, prov(concept))
    cml = m.any(C.CML, C.CML_ICD10_BCR_ABL_POSITIVE)
    lbp = m.first(C.CML_LYMPHOID_BLAST) or (stage.first(C.CML_LYMPHOID_BLAST) if cml else None)
    if lbp is not None:
        _, hit = lbp
        p = Provenance(ref, hit.matched, hit.via if C.CML_LYMPHOID_BLAST in m else "stage")
        ctx.add(Ev.CML_LYMPHOID_BLAST, "yes", date, p)
        ctx.add(Ev.CML, "yes", date, p)
    if cml:
        concept = C.CML if C.CML in m else C.CML_ICD10_BCR_ABL_POSITIVE
        ctx.add(Ev.CML, "yes", date, prov(concept))
    # other lineages, so that rules for Ph+ B-ALL can stay silent on them
    if C.T_ALL in m:
        ctx.add(Ev.T_ALL, "yes", date, prov(C.T_ALL))
    if C.AML in m:
        ctx.add(Ev.AML, "yes", date, prov(C.AML))
    # Ph status
    if C.CML_ICD10_BCR_ABL_POSITIVE in m:
        ctx.add(
            Ev.PH,
            "positive",
            date,
            prov(C.CML_ICD10_BCR_ABL_POSITIVE),
            detail="C92.1x is BCR/ABL-positive CML",
        )
    if C.B_ALL_PH_MORPHOLOGY in m:
        ctx.add(Ev.PH, "positive", date, prov(C.B_ALL_PH_MORPHOLOGY))
    if C.PH_POSITIVE in m:
        ctx.add(Ev.PH, "positive", date, prov(C.PH_POSITIVE))
    elif C.PH_NEGATIVE in m:
        ctx.add(Ev.PH, "negative", date, prov(C.PH_NEGATIVE))
    # relapse
    relapse = _relapse_of(m, status, c, ref)
    when_relapsed = relapse_date(ctx, c, ref) if relapse is not None else None
    if relapse is not None:
        ctx.add(Ev.RELAPSE, "yes", when_relapsed, relapse)
    # the date of what this Condition says is present now: the relapse, or its onset
    present = when_relapsed if relapse is not None or status in _RELAPSING else date
    # CNS and other extramedullary sites
    body = match_cc(ctx.term, *as_list(c.get("bodySite")))
    cns: Provenance | None = None
    if C.CNS_LEUKEMIA in m:
        cns = prov(C.CNS_LEUKEMIA)
    elif leukemia and C.CNS_SITE in body:
        cns = Provenance(ref, f"bodySite {body.hits[C.CNS_SITE].matched}", "body-site")
    sites: dict[str, Provenance] = {}
    for concept, site in _WORDING_SITES:
        if concept in m:
            sites[site] = prov(concept)
    if leukemia or m.any(*_EM_CONTEXT):
        for concept, site in _SITE_CONCEPTS:
            if concept in body and site not in sites:
                hit = body.hits[concept]
                sites[site] = Provenance(ref, f"bodySite {hit.matched}", "body-site")
    if C.EXTRAMEDULLARY_DISEASE in m and not sites and C.CNS_LEUKEMIA not in m:
        sites["other"] = prov(C.EXTRAMEDULLARY_DISEASE)
    if cns is not None or sites:
        resolved = status in _RESOLVED
        value = "resolved" if resolved else "yes"
        end = (
            first_date(ctx, c, ref, "abatementDateTime", "abatementPeriod.end", "abatementString")
            if resolved
            else None
        )
        if cns is not None:
            ctx.add(Ev.CNS, value, present, cns, end=end)
        for site, p in sites.items():
            ctx.add(Ev.EXTRAMEDULLARY, value, present, p, end=end, item=site)
    # transplant, DLI, CAR-T history
    if C.HSCT_STATUS in m:
        ctx.add(
            Ev.HSCT_ALLOGENEIC,
            "yes",
            date,
            prov(C.HSCT_STATUS),
            detail="type not stated (Z94.84)",
        )
    transplant_evidence(ctx, m, ref, date)
    if C.CAR_T_HISTORY in m:
        ctx.add(
            Ev.EXPOSURE,
            "past",
            date,
            prov(C.CAR_T_HISTORY),
            detail="CAR-T history (Z92.850)",
            item="cd19_cart_unnamed",
        )
    # CD19 wording ("CD19-negative relapse"): about the leukemia, so about blasts
    for text in texts_of(c.get("code")):
        reading = cd19_from_text(ctx.term, text)
        if reading is not None:
            ctx.add(
                Ev.CD19,
                reading,
                present,
                Provenance(ref, f'text "cd19 {reading}"', "text"),
                item="blasts",
            )
            break
    # arterial risk factors and smoking
    for concept in _ARTERIAL:
        if concept in m:
            label = concept.replace("_", " ")
            ctx.add(Ev.ARTERIAL_RISK, "yes", date, prov(concept), detail=label, item=concept)
    if C.SMOKING in m:
        smoking = "former" if status in _RESOLVED else "current"
        ctx.add(Ev.SMOKING, smoking, date, prov(C.SMOKING), detail="smoking")
