"""Evidence from Observations: BCR::ABL1 / Ph, CSF and CNS status, CD19, MRD, disease status,
blinatumomab response, extramedullary biopsies, and dispatch of ABL1 mutation results.

Entered-in-error and cancelled Observations are not evidence. Each Observation is read as a
whole and component by component (panels: a CSF cell-count panel with a blasts component, a
flow panel with a CD19 component); the date is effective[x] else issued.

Ph status (decision): positive evidence is a BCR::ABL1 result that is detected (ratio > 0, a
log-ratio value, or qualitative detected), a t(9;22) / Philadelphia finding, ICD-O-3 9812/3,
Ph-positive wording. Negative evidence is a *qualitative* negative BCR::ABL1 or t(9;22) result
or Ph-negative wording. A quantitative ratio of 0 is molecular response monitoring, not proof
of Ph-negative disease, so it only feeds bcr_abl1.latest / trend.
"""

from __future__ import annotations

from typing import Any

from cds_service.facts.cd19 import visit_cd19
from cds_service.facts.evidence import (
    Context,
    Matches,
    match_cc,
    match_texts,
    observation_date,
    observation_is_evidence,
    polarity,
    ref_of,
    texts_of,
    value_texts,
)
from cds_service.facts.model import PartialDate, Provenance
from cds_service.facts.variants import visit_mutation_analysis, visit_variant
from cds_service.fhir_input import as_list
from cds_service.terminology import Terminology, normalise_text

_BCR = ("bcr_abl1_p190", "bcr_abl1_p210", "bcr_abl1_p230", "bcr_abl1_log", "bcr_abl1_ratio")
_RATIO_UNITS = frozenset({"%", "percent", "%is", "% is", "{ratio}", "ratio", "1", "%{is}", "{%is}"})
_LINKS = ("focus", "partOf", "derivedFrom", "basedOn")
_CNS_RESULT = ("csf_blasts", "csf_cytology", "csf_flow")
_EM_SITES = (("testis_site", "testis"), ("skin_site", "skin"), ("other_em_site", "other"))
_EM_WORDING = (
    ("testicular_involvement", "testis"),
    ("skin_involvement", "skin"),
    ("extramedullary_disease", "other"),
)


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
    if not observation_is_evidence(o):
        return
    code = match_cc(ctx.term, o.get("code"))
    components = [c for c in as_list(o.get("component")) if isinstance(c, dict)]
    if not code.hits and not components and not _has_text_value(o) and not _has_links(o):
        return  # an unrelated numeric result (vitals, chemistry): the bulk of a real record
    ref = ref_of(o)
    date = observation_date(ctx, o, ref)
    # ABL1 mutations: the Observation is one unit (components are its parts)
    if "genetic_variant_assessment" in code:
        visit_variant(ctx, o, ref, date)
        return
    if code.any("abl1_mutation_analysis", "abl1_t315i"):
        visit_mutation_analysis(ctx, o, code, ref, date)
        return
    _read_unit(ctx, o, code, ref, date, "code", o)
    for comp in components:
        cm = match_cc(ctx.term, comp.get("code"))
        if cm.hits:
            _read_unit(ctx, comp, cm, ref, date, "component", o)
    # ICD-O-3 9812/3 or Ph wording carried as a value (histology, diagnosis observations)
    vm = match_cc(ctx.term, o.get("valueCodeableConcept"))
    if "b_all_ph_morphology" in vm:
        ctx.add("ph", "positive", date, _prov(ref, vm, "b_all_ph_morphology"))
        ctx.add("diagnosis.b_all", "yes", date, _prov(ref, vm, "b_all_ph_morphology"))
    # blinatumomab response
    _response(ctx, o, code, ref, date)


def unread_observation(term: Terminology, o: dict[str, Any]) -> bool:
    """True when visit_observation would surely read nothing from `o` as sent (before
    normalisation): an Observation whose code is a well-formed CodeableConcept matching no
    concept, with no component, no coded or string value and no link. Odd shapes answer
    False (they are normalised and read as usual)."""
    if o.get("resourceType") != "Observation":
        return False
    if "component" in o or _has_text_value(o) or _has_links(o):
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


def _has_text_value(o: dict[str, Any]) -> bool:
    return "valueCodeableConcept" in o or "valueString" in o


def _read_unit(
    ctx: Context,
    holder: dict[str, Any],
    code: Matches,
    ref: str,
    date: PartialDate | None,
    via: str,
    obs: dict[str, Any],
) -> None:
    if code.any(*_BCR) or "t_9_22" in code or "cytogenetics" in code:
        _bcr_abl1(ctx, holder, code, ref, date, via)
    if code.any(*_CNS_RESULT, "cns_status"):
        _cns(ctx, holder, code, ref, date, via)
    if code.any("cd19_test", "immunophenotype"):
        visit_cd19(ctx, holder, code, ref, date, via)
    if "mrd" in code and not code.any(*_BCR):
        pol = polarity(ctx.term, holder)
        if pol.value in ("positive", "negative"):
            ctx.add(
                "mrd",
                pol.value,
                date,
                _prov(ref, code, "mrd", via if via == "component" else None, pol.matched),
                number=pol.number,
            )
    if "disease_status" in code:
        vm = match_texts(ctx.term, value_texts(holder))
        if "relapse" in vm or "relapse_exact" in vm:
            concept = "relapse" if "relapse" in vm else "relapse_exact"
            ctx.add(
                "relapse",
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
    concept = code.first(*_BCR, "t_9_22", "cytogenetics")
    assert concept is not None
    cname, hit = concept
    texts = value_texts(holder)
    vmatch = match_texts(ctx.term, texts)
    transcript = _transcript(code, attrs) or _transcript(vmatch, attrs)
    if cname in ("t_9_22", "cytogenetics"):
        # karyotype / FISH: t(9;22) named in the value, or a t(9;22) test read by its value
        if "t_9_22" in vmatch:
            ctx.add(
                "ph",
                "positive",
                date,
                Provenance(ref, f"{hit.matched}; value {vmatch.hits['t_9_22'].matched}", via),
            )
            return
        if "t_9_22" in vmatch.negated:
            ctx.add(
                "ph",
                "negative",
                date,
                Provenance(ref, f"{hit.matched}; value t(9;22) negated", via),
            )
            return
        if cname == "t_9_22":
            pol = polarity(ctx.term, holder)
            if pol.value in ("positive", "negative"):
                ctx.add(
                    "ph", pol.value, date, Provenance(ref, f"{hit.matched}; {pol.matched}", via)
                )
        return
    log_scale = cname == "bcr_abl1_log" or "log" in normalise_text(" ".join(_code_texts(holder)))
    pol = polarity(ctx.term, holder)
    prov = Provenance(
        ref,
        f"{hit.matched}{'; ' + pol.matched if pol.matched else ''}",
        via if via == "component" else hit.via,
    )
    if pol.number is not None:
        if log_scale:
            if pol.comparator not in ("<", "<="):
                ctx.add("ph", "positive", date, prov, detail="log ratio reported")
                if transcript:
                    ctx.add("transcript", transcript, date, prov)
            return
        unit = (pol.unit or "").strip().lower()
        if unit and unit not in _RATIO_UNITS:
            ctx.issues.append(f"{ref}: BCR::ABL1 value in unit not read as a ratio, ignored")
            return
        number = 0.0 if pol.comparator in ("<", "<=") else pol.number
        detail = f"{pol.comparator or ''}{pol.number}{' ' + pol.unit if pol.unit else ''}"
        ctx.add("bcr_abl1.quant", "ratio", date, prov, number=number, detail=detail)
        if number > 0:
            ctx.add("ph", "positive", date, prov, detail=detail)
            if transcript:
                ctx.add("transcript", transcript, date, prov)
        return
    if pol.value == "positive":
        ctx.add("ph", "positive", date, prov)
        if transcript:
            ctx.add("transcript", transcript, date, prov)
    elif pol.value == "negative":
        ctx.add("ph", "negative", date, prov, detail="qualitative result")
    elif transcript and texts:
        # "BCR-ABL1 transcript type": value names the transcript (e1a2, p210 …)
        vt = _transcript(vmatch, attrs)
        if vt:
            ctx.add("transcript", vt, date, prov)
            ctx.add("ph", "positive", date, prov, detail=f"transcript {vt} reported")


def _code_texts(holder: dict[str, Any]) -> list[str]:
    return list(texts_of(holder.get("code")))


def _cns(
    ctx: Context,
    holder: dict[str, Any],
    code: Matches,
    ref: str,
    date: PartialDate | None,
    via: str,
) -> None:
    if "cns_status" in code:
        vm = match_texts(ctx.term, value_texts(holder))
        if "cns_leukemia" in vm:
            ctx.add(
                "cns",
                "yes",
                date,
                _prov(ref, code, "cns_status", extra=f"value {vm.hits['cns_leukemia'].matched}"),
            )
        elif "cns1" in vm:
            ctx.add(
                "cns",
                "no",
                date,
                _prov(ref, code, "cns_status", extra=f"value {vm.hits['cns1'].matched}"),
            )
        return
    first = code.first(*_CNS_RESULT)
    assert first is not None
    cname, _ = first
    pol = polarity(ctx.term, holder)
    if pol.value in ("positive", "negative"):
        ctx.add(
            "cns",
            "yes" if pol.value == "positive" else "no",
            date,
            _prov(ref, code, cname, via if via == "component" else None, pol.matched),
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
            ctx.add("em", site, date, Provenance(ref, f"value {vm.hits[concept].matched}", "value"))
            return
    body = match_cc(ctx.term, *as_list(o.get("bodySite")))
    if not body.hits:
        return
    leukemic = vm.any("leukemia", "b_all", "cml") or code.any("leukemia", "b_all", "cml")
    pol = polarity(ctx.term, o)
    if not leukemic or pol.value != "positive":
        return
    for concept, site in _EM_SITES:
        if concept in body:
            ctx.add(
                "em",
                site,
                date,
                Provenance(
                    ref, f"bodySite {body.hits[concept].matched}; {pol.matched}", "body-site"
                ),
            )
            return
    if "cns_site" in body:
        ctx.add(
            "cns",
            "yes",
            date,
            Provenance(
                ref, f"bodySite {body.hits['cns_site'].matched}; {pol.matched}", "body-site"
            ),
        )


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
    named = "blinatumomab" in code or "blinatumomab" in match_texts(ctx.term, texts)
    if link is None and not (named and (code.any("disease_status", "response", "no_response"))):
        return
    vm = match_texts(ctx.term, texts)
    value: str | None = None
    if "no_response" in vm:
        value, matched = "no_response", vm.hits["no_response"].matched
    elif "response" in vm:
        value, matched = "response", vm.hits["response"].matched
    elif "response" in vm.negated:
        value, matched = "no_response", "negated response wording"
    if value is None:
        return
    how = link or "blinatumomab named in the result"
    ctx.add(
        "blinatumomab.response",
        value,
        date,
        Provenance(ref, f"{how}; value {matched}", "link" if link else "text"),
    )
