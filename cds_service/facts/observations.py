"""Evidence from Observations: BCR::ABL1 / Ph, CSF and CNS status, CD19, MRD, disease status,
blinatumomab response, extramedullary biopsies, smoking status, and dispatch of ABL1 variant
and mutation results (facts.variants).

Entered-in-error, cancelled and registered Observations are not evidence. Each Observation is
read as a whole and component by component (panels: a CSF cell-count panel with a blasts
component, a flow panel with a CD19 component, a karyotype with an ISCN component); the date is
effective[x] else issued. Equivocal values ("indeterminate", "atypical cells", "suspicious")
are not evidence, positive or negative.

Ph status: positive evidence is a BCR::ABL1 result that is detected (ratio > 0, a log-ratio
value, or qualitative detected), a t(9;22) / Philadelphia finding (karyotype, FISH, ISCN
component), ICD-O-3 9812/3, Ph-positive wording. Negative evidence is a *qualitative* negative
BCR::ABL1 or t(9;22) result or Ph-negative wording. A quantitative ratio of 0 is molecular
response monitoring, not proof of Ph-negative disease, so it only feeds bcr_abl1.latest/trend.

CNS: CSF blasts, CSF cytology or flow, a CNS status (CNS1 / CNS2 / CNS3), and any result that
is part of (or based on) a lumbar-puncture Procedure, read by its value. Smoking status (LOINC
72166-2 or its wording): current / former / never smoker by the value's code or words.
"""

from __future__ import annotations

from typing import Any

from cds_service.facts import concepts as C
from cds_service.facts.cd19 import visit_cd19
from cds_service.facts.evidence import Context, Ev, observation_date
from cds_service.facts.matching import Matches, match_cc, match_texts, read_value
from cds_service.facts.model import PartialDate, Provenance
from cds_service.facts.reading import ref_of, result_is_evidence, texts_of, value_texts
from cds_service.facts.variants import (
    is_variant_observation,
    visit_mutation_analysis,
    visit_variant,
)
from cds_service.fhir_input import as_list
from cds_service.terminology import Terminology, normalise_text

EMITS = frozenset(
    {
        Ev.PH,
        Ev.B_ALL,
        Ev.TRANSCRIPT,
        Ev.BCR_ABL1_RATIO,
        Ev.CNS,
        Ev.EXTRAMEDULLARY,
        Ev.MRD,
        Ev.RELAPSE,
        Ev.BLINATUMOMAB_RESPONSE,
        Ev.SMOKING,
    }
)

_BCR = (
    C.BCR_ABL1_P190,
    C.BCR_ABL1_P210,
    C.BCR_ABL1_P230,
    C.BCR_ABL1_LOG,
    C.BCR_ABL1_RATIO,
    C.BCR_ABL1_ASSAY,
    C.BCR_ABL1_FUSION,
)
_KARYOTYPE = (C.T_9_22, C.CYTOGENETICS, C.ISCN)
_RATIO_UNITS = frozenset({"%", "percent", "%is", "% is", "{ratio}", "ratio", "1", "%{is}", "{%is}"})
_LINKS = ("focus", "partOf", "derivedFrom", "basedOn")
_CNS_RESULT = (C.CSF_BLASTS, C.CSF_CYTOLOGY, C.CSF_FLOW)
_EM_SITES = ((C.TESTIS_SITE, "testis"), (C.SKIN_SITE, "skin"), (C.OTHER_EM_SITE, "other"))
_EM_WORDING = (
    (C.TESTICULAR_INVOLVEMENT, "testis"),
    (C.SKIN_INVOLVEMENT, "skin"),
    (C.EXTRAMEDULLARY_DISEASE, "other"),
)
_SMOKING = ((C.SMOKER_NEVER, "never"), (C.SMOKER_FORMER, "former"), (C.SMOKER_CURRENT, "current"))


def _prov(
    ref: str, m: Matches, concept: str, via_override: str | None = None, extra: str = ""
) -> Provenance:
    hit = m.hits[concept]
    matched = f"{hit.matched}{'; ' + extra if extra else ''}"
    return Provenance(ref, matched, via_override or hit.via)


def _transcript(m: Matches, term_attrs: dict[str, str]) -> str | None:
    found = {term_attrs[c] for c in _BCR if c in m and c in term_attrs}
    return found.pop() if len(found) == 1 else None


def visit_observation(ctx: Context, o: dict[str, Any]) -> None:
    if not result_is_evidence(o):
        return
    code = match_cc(ctx.term, o.get("code"))
    components = [c for c in as_list(o.get("component")) if isinstance(c, dict)]
    if not code.hits and not components and not _has_text_value(o) and not _has_links(o):
        return  # an unrelated numeric result (vitals, chemistry): the bulk of a real record
    ref = ref_of(o)
    date = observation_date(ctx, o, ref)
    # ABL1 and BCR::ABL1 variants: the Observation is one unit (components are its parts)
    if is_variant_observation(ctx.term, o, code):
        visit_variant(ctx, o, ref, date)
        return
    if code.any(C.ABL1_MUTATION_ANALYSIS, C.ABL1_T315I):
        visit_mutation_analysis(ctx, o, code, ref, date)
        return
    if C.SMOKING_STATUS in code:
        _smoking(ctx, o, code, ref, date)
        return
    lp = _lumbar_puncture(ctx, o)
    if lp is not None:
        _cns_from_lp(ctx, o, ref, date, lp)
    context = tuple(texts_of(o.get("code")))
    _read_unit(ctx, o, code, ref, date, "code", o, ())
    for comp in components:
        cm = match_cc(ctx.term, comp.get("code"))
        if cm.hits:
            _read_unit(ctx, comp, cm, ref, date, "component", o, context)
    # ICD-O-3 9812/3 or Ph wording carried as a value (histology, diagnosis observations)
    vm = match_cc(ctx.term, o.get("valueCodeableConcept"))
    if C.B_ALL_PH_MORPHOLOGY in vm:
        ctx.add(Ev.PH, "positive", date, _prov(ref, vm, C.B_ALL_PH_MORPHOLOGY))
        ctx.add(Ev.B_ALL, "yes", date, _prov(ref, vm, C.B_ALL_PH_MORPHOLOGY))
    _response(ctx, o, code, ref, date)


def unread_observation(term: Terminology, o: dict[str, Any]) -> bool:
    """True when visit_observation would surely read nothing from `o` as sent (before
    normalisation): an Observation whose code is a well-formed CodeableConcept matching no
    concept, with no component, no coded or string value and no link. Odd shapes answer
    False (they are normalised and read as usual)."""
    if o.get("resourceType") != "Observation":
        return False
    if "component" in o or _has_text_value(o) or _has_links(o) or _has_genetics(o):
        return False
    code = o.get("code")
    if not isinstance(code, dict):
        return False
    fast = _unread_single_coding(term, code)
    if fast is not None:
        return fast
    codings = code.get("coding")
    if codings is None and "code" not in code and "system" not in code:
        codings = []  # text only
    if not isinstance(codings, list) or not all(
        isinstance(c, dict) and isinstance(c.get("code", ""), str) for c in codings
    ):
        return False  # normalise_cc would rewrite it: let the normal path read it
    return not match_cc(term, code).hits


_UNREAD_MEMO_MAX = 20000


def _unread_single_coding(term: Terminology, code: dict[str, Any]) -> bool | None:
    """The common shape — one coding with a string code, optional text — answered from a flat
    memo key; None for any other shape (the general path decides). Same answer as the
    general path: a code matching no concept, by code or by text."""
    codings = code.get("coding")
    if type(codings) is not list or len(codings) != 1:
        return None
    coding = codings[0]
    if type(coding) is not dict or type(coding.get("code", "")) is not str:
        return None
    key = (
        "unread",
        coding.get("system"),
        coding.get("code"),
        coding.get("display"),
        code.get("text"),
    )
    try:
        cached = term.memo.get(key)
    except TypeError:  # an unhashable value: let the general path decide
        return None
    if cached is None:
        cached = not match_cc(term, code).hits
        if len(term.memo) >= _UNREAD_MEMO_MAX:
            term.memo.clear()
        term.memo[key] = cached
    return bool(cached)


def _has_links(o: dict[str, Any]) -> bool:
    return any(name in o for name in _LINKS)


def _has_genetics(o: dict[str, Any]) -> bool:
    """R4 core observation-genetics extensions make an Observation a variant result."""
    ext = o.get("extension")
    return isinstance(ext, list) and any(
        isinstance(e, dict) and "genetics" in str(e.get("url", "")).lower() for e in ext
    )


def _has_text_value(o: dict[str, Any]) -> bool:
    return "valueCodeableConcept" in o or "valueString" in o


def _references(o: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name in _LINKS:
        for item in as_list(o.get(name)):
            if isinstance(item, dict) and isinstance(item.get("reference"), str):
                out.append(item["reference"])
    return out


def _read_unit(
    ctx: Context,
    holder: dict[str, Any],
    code: Matches,
    ref: str,
    date: PartialDate | None,
    via: str,
    obs: dict[str, Any],
    context: tuple[str, ...],
) -> None:
    if code.any(*_BCR, *_KARYOTYPE):
        _bcr_abl1(ctx, holder, code, ref, date, via)
    if code.any(*_CNS_RESULT, C.CNS_STATUS):
        _cns(ctx, holder, code, ref, date, via)
    if code.any(C.CD19_TEST, C.IMMUNOPHENOTYPE):
        visit_cd19(ctx, holder, code, ref, date, via, context)
    if C.MRD in code and not code.any(*_BCR):
        reading = read_value(ctx.term, holder)
        if reading.value in ("positive", "negative"):
            ctx.add(
                Ev.MRD,
                reading.value,
                date,
                _prov(ref, code, C.MRD, via if via == "component" else None, reading.matched),
                number=reading.number,
            )
    if C.DISEASE_STATUS in code:
        vm = match_texts(ctx.term, value_texts(holder))
        if C.RELAPSE in vm or C.RELAPSE_EXACT in vm:
            concept = C.RELAPSE if C.RELAPSE in vm else C.RELAPSE_EXACT
            ctx.add(
                Ev.RELAPSE,
                "yes",
                date,
                Provenance(ref, f"disease status value {vm.hits[concept].matched}", "value"),
            )
    if via == "code":
        _extramedullary(ctx, obs, code, ref, date)


def _bcr_abl1(
    ctx: Context,
    holder: dict[str, Any],
    code: Matches,
    ref: str,
    date: PartialDate | None,
    via: str,
) -> None:
    attrs = {
        c: str(ctx.term.concepts[c].attributes.get("transcript", ""))
        for c in _BCR
        if c in ctx.term.concepts and ctx.term.concepts[c].attributes.get("transcript")
    }
    concept = code.first(*_BCR, *_KARYOTYPE)
    assert concept is not None
    cname, hit = concept
    texts = value_texts(holder)
    vmatch = match_texts(ctx.term, texts)
    transcript = _transcript(code, attrs) or _transcript(vmatch, attrs)
    if cname in _KARYOTYPE:
        # karyotype / FISH / ISCN: t(9;22) named in the value, or a t(9;22) test read by value
        if C.T_9_22 in vmatch or C.BCR_ABL1_FUSION in vmatch:
            found = C.T_9_22 if C.T_9_22 in vmatch else C.BCR_ABL1_FUSION
            ctx.add(
                Ev.PH,
                "positive",
                date,
                Provenance(ref, f"{hit.matched}; value {vmatch.hits[found].matched}", via),
            )
            return
        if C.T_9_22 in vmatch.negated or C.BCR_ABL1_FUSION in vmatch.negated:
            ctx.add(
                Ev.PH,
                "negative",
                date,
                Provenance(ref, f"{hit.matched}; value t(9;22) negated", via),
                detail="qualitative result",
            )
            return
        if cname == C.T_9_22:
            reading = read_value(ctx.term, holder)
            if reading.value in ("positive", "negative"):
                ctx.add(
                    Ev.PH,
                    reading.value,
                    date,
                    Provenance(ref, f"{hit.matched}; {reading.matched}", via),
                    detail="qualitative result" if reading.value == "negative" else None,
                )
        return
    log_scale = cname == C.BCR_ABL1_LOG or "log" in normalise_text(
        " ".join(texts_of(holder.get("code")))
    )
    reading = read_value(ctx.term, holder)
    prov = Provenance(
        ref,
        f"{hit.matched}{'; ' + reading.matched if reading.matched else ''}",
        via if via == "component" else hit.via,
    )
    if reading.number is not None:
        if log_scale:
            if reading.comparator not in ("<", "<="):
                ctx.add(Ev.PH, "positive", date, prov, detail="log ratio reported")
                if transcript:
                    ctx.add(Ev.TRANSCRIPT, transcript, date, prov)
            return
        unit = (reading.unit or "").strip().lower()
        if unit and unit not in _RATIO_UNITS:
            ctx.issues.append(f"{ref}: BCR::ABL1 value in unit not read as a ratio, ignored")
            return
        number = 0.0 if reading.comparator in ("<", "<=") else reading.number
        unit_shown = f" {reading.unit}" if reading.unit else ""
        detail = f"{reading.comparator or ''}{reading.number}{unit_shown}"
        ctx.add(Ev.BCR_ABL1_RATIO, "ratio", date, prov, number=number, detail=detail)
        if number > 0:
            ctx.add(Ev.PH, "positive", date, prov, detail=detail)
            if transcript:
                ctx.add(Ev.TRANSCRIPT, transcript, date, prov)
        return
    if reading.value == "positive":
        ctx.add(Ev.PH, "positive", date, prov)
        if transcript:
            ctx.add(Ev.TRANSCRIPT, transcript, date, prov)
    elif reading.value == "negative":
        ctx.add(Ev.PH, "negative", date, prov, detail="qualitative result")
    elif not reading.equivocal and texts:
        # "BCR-ABL1 transcript type": value names the transcript (e1a2, p210 …)
        vt = _transcript(vmatch, attrs)
        if vt:
            ctx.add(Ev.TRANSCRIPT, vt, date, prov)
            ctx.add(Ev.PH, "positive", date, prov, detail=f"transcript {vt} reported")


def _cns(
    ctx: Context,
    holder: dict[str, Any],
    code: Matches,
    ref: str,
    date: PartialDate | None,
    via: str,
) -> None:
    if C.CNS_STATUS in code:
        vm = match_texts(ctx.term, value_texts(holder))
        if C.CNS_LEUKEMIA in vm:
            extra = f"value {vm.hits[C.CNS_LEUKEMIA].matched}"
            ctx.add(Ev.CNS, "yes", date, _prov(ref, code, C.CNS_STATUS, extra=extra))
        elif C.CNS1 in vm:
            extra = f"value {vm.hits[C.CNS1].matched}"
            ctx.add(Ev.CNS, "no", date, _prov(ref, code, C.CNS_STATUS, extra=extra))
        return
    first = code.first(*_CNS_RESULT)
    assert first is not None
    cname, _ = first
    reading = read_value(ctx.term, holder)
    if reading.value in ("positive", "negative"):
        ctx.add(
            Ev.CNS,
            "yes" if reading.value == "positive" else "no",
            date,
            _prov(ref, code, cname, via if via == "component" else None, reading.matched),
        )


def _lumbar_puncture(ctx: Context, o: dict[str, Any]) -> str | None:
    if not ctx.lumbar_punctures:
        return None
    for reference in _references(o):
        target = ctx.record.get(reference)
        key = f"{target.get('resourceType')}/{target.get('id')}" if target else reference
        if key in ctx.lumbar_punctures:
            return key
    return None


def _cns_from_lp(
    ctx: Context, o: dict[str, Any], ref: str, date: PartialDate | None, lp: str
) -> None:
    """A result that is part of a lumbar puncture is a CNS assessment, read by its value."""
    vm = match_texts(ctx.term, value_texts(o))
    if C.CNS_LEUKEMIA in vm:
        matched = f"part of {lp}; value {vm.hits[C.CNS_LEUKEMIA].matched}"
        ctx.add(Ev.CNS, "yes", date, Provenance(ref, matched, "link"))
        return
    if C.CNS1 in vm:
        ctx.add(Ev.CNS, "no", date, Provenance(ref, f"part of {lp}; value CNS1", "link"))
        return
    reading = read_value(ctx.term, o)
    if reading.value in ("positive", "negative"):
        ctx.add(
            Ev.CNS,
            "yes" if reading.value == "positive" else "no",
            date,
            Provenance(ref, f"part of {lp}; {reading.matched}", "link"),
        )


def _extramedullary(
    ctx: Context, o: dict[str, Any], code: Matches, ref: str, date: PartialDate | None
) -> None:
    texts = value_texts(o)
    if not texts and not o.get("bodySite"):
        return
    vm = match_texts(ctx.term, texts)
    for concept, site in _EM_WORDING:
        if concept in vm:
            prov = Provenance(ref, f"value {vm.hits[concept].matched}", "value")
            ctx.add(Ev.EXTRAMEDULLARY, "yes", date, prov, item=site)
            return
        if concept in vm.negated:
            prov = Provenance(ref, f"value: {concept.replace('_', ' ')} negated", "value")
            ctx.add(Ev.EXTRAMEDULLARY, "no", date, prov, item=site)
            return
    body = match_cc(ctx.term, *as_list(o.get("bodySite")))
    if not body.hits:
        return
    leukemic = vm.mentioned(C.LEUKEMIA, C.B_ALL, C.CML) or code.any(C.LEUKEMIA, C.B_ALL, C.CML)
    reading = read_value(ctx.term, o)
    if not leukemic or reading.value not in ("positive", "negative"):
        return
    value = "yes" if reading.value == "positive" else "no"
    for concept, site in _EM_SITES:
        if concept in body:
            matched = f"bodySite {body.hits[concept].matched}; {reading.matched}"
            prov = Provenance(ref, matched, "body-site")
            ctx.add(Ev.EXTRAMEDULLARY, value, date, prov, item=site)
            return
    if C.CNS_SITE in body:
        matched = f"bodySite {body.hits[C.CNS_SITE].matched}; {reading.matched}"
        ctx.add(Ev.CNS, value, date, Provenance(ref, matched, "body-site"))


def _smoking(
    ctx: Context, o: dict[str, Any], code: Matches, ref: str, date: PartialDate | None
) -> None:
    vm = match_cc(ctx.term, o.get("valueCodeableConcept"))
    if not vm.hits and isinstance(o.get("valueString"), str):
        vm = match_texts(ctx.term, [o["valueString"]])
    for concept, value in _SMOKING:
        if concept in vm:
            hit = vm.hits[concept]
            prov = Provenance(
                ref, f"{code.hits[C.SMOKING_STATUS].matched}; value {hit.matched}", hit.via
            )
            ctx.add(Ev.SMOKING, value, date, prov, detail="smoking")
            return


def _linked_to_blinatumomab(ctx: Context, o: dict[str, Any]) -> str | None:
    if not ctx.blinatumomab_refs:
        return None
    for name in _LINKS:
        for item in as_list(o.get(name)):
            if isinstance(item, dict):
                reference = item.get("reference")
                if isinstance(reference, str):
                    target = ctx.record.get(reference)
                    key = (
                        f"{target.get('resourceType')}/{target.get('id')}" if target else reference
                    )
                    if key in ctx.blinatumomab_refs:
                        return f"{name} {key}"
    return None


def _response(
    ctx: Context, o: dict[str, Any], code: Matches, ref: str, date: PartialDate | None
) -> None:
    link = _linked_to_blinatumomab(ctx, o)
    texts = value_texts(o)
    named = C.BLINATUMOMAB in code or C.BLINATUMOMAB in match_texts(ctx.term, texts)
    if link is None and not (named and code.any(C.DISEASE_STATUS, C.RESPONSE, C.NO_RESPONSE)):
        return
    vm = match_texts(ctx.term, texts)
    value: str | None = None
    if C.NO_RESPONSE in vm:
        value, matched = "no_response", vm.hits[C.NO_RESPONSE].matched
    elif C.RESPONSE in vm:
        value, matched = "response", vm.hits[C.RESPONSE].matched
    elif C.RESPONSE in vm.negated:
        value, matched = "no_response", "negated response wording"
    if value is None:
        return
    how = link or "blinatumomab named in the result"
    ctx.add(
        Ev.BLINATUMOMAB_RESPONSE,
        value,
        date,
        Provenance(ref, f"{how}; value {matched}", "link" if link else "text"),
    )
