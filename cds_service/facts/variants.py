"""ABL1 kinase-domain mutations from variant Observations and mutation-analysis results.

Recognised shapes:

* HL7 Genomics Reporting variant Observations (LOINC 69548-6): gene from component 48018-6
  (HGNC:76 or "ABL1"; another gene → ignored), protein change from 48005-3, DNA change from
  48004-6 with the transcript in the string or in 51958-7; the Observation value Present /
  Absent (LA9633-4 / LA9634-2, or the words) is respected; a missing value reads as present
  (the Observation reports a found variant). 81252-9 is a cross-reference, never a flag.
* Mutation-analysis results (LOINC 55135-8 or local codes named like it): the variant(s) as
  text or coded value ("T315I detected", "p.(Thr315Ile)", "E255K; T315I not detected",
  "No mutation detected"), also in components.
* A single-mutation assay whose code names T315I, read by its value (detected / not detected).

Protein changes: three-letter (p.Thr315Ile, p.(Thr315Ile), Thr315Ile) or one-letter (p.T315I,
T315I), reported in one-letter form. DNA changes are interpreted only where the value set maps
a transcript-qualified form (NM_005157.x:c.944C>T and NM_007313.x:c.1001C>T → T315I).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from cds_service.facts.evidence import (
    Context,
    Matches,
    match_cc,
    polarity,
    texts_of,
    value_texts,
)
from cds_service.facts.model import PartialDate, Provenance
from cds_service.fhir_input import as_list
from cds_service.terminology import Terminology

_AA3 = {
    "ala": "A", "arg": "R", "asn": "N", "asp": "D", "cys": "C", "gln": "Q", "glu": "E",
    "gly": "G", "his": "H", "ile": "I", "leu": "L", "lys": "K", "met": "M", "phe": "F",
    "pro": "P", "ser": "S", "thr": "T", "trp": "W", "tyr": "Y", "val": "V", "ter": "*",
}  # fmt: skip
_AA1 = "ACDEFGHIKLMNPQRSTVWY"
_RE_P3 = re.compile(
    r"(?<![A-Za-z0-9])(?:p\.)?\(?([A-Za-z]{3})(\d{1,4})([A-Za-z]{3}|\*|=)\)?(?![A-Za-z0-9])"
)
_RE_P1_PREFIXED = re.compile(r"p\.\(?([A-Za-z])(\d{1,4})([A-Za-z*])\)?(?![A-Za-z0-9])")
_RE_P1 = re.compile(rf"(?<![A-Za-z0-9.])([{_AA1}])(\d{{2,4}})([{_AA1}*])(?![A-Za-z0-9])")
_RE_C = re.compile(r"(NM_\d+)(?:\.\d+)?\s*:\s*(c\.\d+[ACGT]>[ACGT])", re.IGNORECASE)
_RE_C_BARE = re.compile(r"(?<![A-Za-z0-9:])(c\.\d+[ACGT]>[ACGT])", re.IGNORECASE)
_RE_NM = re.compile(r"(NM_\d+)(?:\.\d+)?", re.IGNORECASE)
_RE_CLAUSE = re.compile(r"[;\n]|,\s|\.\s")
_NEG_CUES = re.compile(
    r"\b(not detected|negative|absent|none detected|no |not found|wild[- ]?type|undetectable)",
    re.IGNORECASE,
)
_MAX_POSITION = 1130  # ABL1 isoform 1b length


def protein_changes(text: str) -> list[str]:
    """One-letter protein changes named in text (T315I, E255K …), in order of appearance."""
    found: list[tuple[int, str]] = []
    for m in _RE_P3.finditer(text):
        ref, pos, alt = m.group(1).lower(), int(m.group(2)), m.group(3).lower()
        if ref in _AA3 and (alt in _AA3 or alt in ("*", "=")) and 0 < pos <= _MAX_POSITION:
            a = _AA3.get(alt, alt)
            found.append((m.start(), f"{_AA3[ref]}{pos}{a if a != '=' else _AA3[ref]}"))
    for m in _RE_P1_PREFIXED.finditer(text):
        ref, pos, alt = m.group(1).upper(), int(m.group(2)), m.group(3).upper()
        if ref in _AA1 and (alt in _AA1 or alt == "*") and 0 < pos <= _MAX_POSITION:
            found.append((m.start(), f"{ref}{pos}{alt}"))
    for m in _RE_P1.finditer(text):
        pos = int(m.group(2))
        if 0 < pos <= _MAX_POSITION:
            found.append((m.start(), f"{m.group(1)}{pos}{m.group(3)}"))
    seen: dict[str, None] = {}
    for _, mut in sorted(found):
        seen.setdefault(mut, None)
    return list(seen)


@functools.lru_cache(maxsize=8)
def _cdna_map(term: Terminology) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for concept in term.concepts.values():
        protein = concept.attributes.get("protein")
        cdna = concept.attributes.get("cdna")
        if not isinstance(protein, str) or cdna is None:
            continue
        for form in (cdna,) if isinstance(cdna, str) else cdna:
            transcript, _, change = form.partition(":")
            out[(transcript.upper(), change.lower())] = protein
    return out


def dna_changes(term: Terminology, text: str, transcript: str | None = None) -> list[str]:
    """Protein changes for the transcript-qualified c. forms the value sets map."""
    table = _cdna_map(term)
    out: list[str] = []
    for m in _RE_C.finditer(text):
        hit = table.get((m.group(1).upper(), m.group(2).lower()))
        if hit:
            out.append(hit)
    if transcript and not out:
        for m in _RE_C_BARE.finditer(text):
            hit = table.get((transcript.upper(), m.group(1).lower()))
            if hit:
                out.append(hit)
    return out


def mutations_in_text(text: str) -> tuple[list[str], list[str], bool]:
    """(detected, stated absent, 'no mutation' said) from a free-text result."""
    detected: list[str] = []
    absent: list[str] = []
    none_said = False
    for clause in _RE_CLAUSE.split(text):
        muts = protein_changes(clause)
        negative = bool(_NEG_CUES.search(clause + " "))
        if muts:
            (absent if negative else detected).extend(m for m in muts if m not in detected)
        elif negative:
            none_said = True
    return detected, absent, none_said


def _cc_strings(cc: Any) -> list[str]:
    out = list(texts_of(cc))
    if isinstance(cc, dict):
        for coding in as_list(cc.get("coding")):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                out.append(str(coding["code"]))
    return out


def _holder_strings(holder: dict[str, Any]) -> list[str]:
    out = _cc_strings(holder.get("valueCodeableConcept"))
    vs = holder.get("valueString")
    if isinstance(vs, str):
        out.append(vs)
    return out


def _record(
    ctx: Context,
    ref: str,
    date: PartialDate | None,
    detected: list[str],
    absent: list[str],
    none_said: bool,
    matched: str,
    via: str,
) -> None:
    prov = Provenance(ref, matched, via)
    ctx.add("abl1.test", "yes", date, prov)
    for mut in detected:
        ctx.add("abl1.mut", mut, date, Provenance(ref, f"{matched}: {mut}", via))
    for mut in absent:
        ctx.add("abl1.absent", mut, date, Provenance(ref, f"{matched}: {mut} absent", via))
    if none_said and not detected:
        ctx.add("abl1.none", "none", date, Provenance(ref, f"{matched}: no mutation", via))


def visit_variant(ctx: Context, o: dict[str, Any], ref: str, date: PartialDate | None) -> None:
    """A Genomics Reporting variant Observation."""
    gene: str | None = None
    proteins: list[str] = []
    cdna_strings: list[str] = []
    transcript: str | None = None
    for comp in as_list(o.get("component")):
        if not isinstance(comp, dict):
            continue
        cm = match_cc(ctx.term, comp.get("code"))
        if "gene_studied" in cm:
            gm = match_cc(ctx.term, comp.get("valueCodeableConcept"))
            strings = _holder_strings(comp)
            if "abl1_gene" in gm:
                gene = "ABL1"
            elif "bcr_gene" in gm or strings:
                gene = gene or (strings[0] if strings else "other")
        elif "hgvs_p" in cm:
            for s in _holder_strings(comp):
                proteins.extend(p for p in protein_changes(s) if p not in proteins)
        elif "hgvs_c" in cm:
            cdna_strings.extend(_holder_strings(comp))
        elif "transcript_reference" in cm:
            for s in _holder_strings(comp):
                nm = _RE_NM.search(s)
                if nm:
                    transcript = nm.group(1).upper()
    for s in cdna_strings:
        nm = _RE_NM.search(s)
        if nm and transcript is None:
            transcript = nm.group(1).upper()
        for p in dna_changes(ctx.term, s, transcript):
            if p not in proteins:
                proteins.append(p)
    if gene is None and transcript in ("NM_005157", "NM_007313"):
        gene = "ABL1"
    if gene is not None and gene != "ABL1":
        return
    if gene is None:
        ctx.issues.append(f"{ref}: variant Observation without a gene studied; not read as ABL1")
        return
    vm = match_cc(ctx.term, o.get("valueCodeableConcept"))
    absent = vm.any("variant_absent", "result_negative")
    if not proteins:
        ctx.issues.append(f"{ref}: ABL1 variant without an interpretable p. or c. HGVS")
    _record(
        ctx,
        ref,
        date,
        [] if absent else proteins,
        proteins if absent else [],
        False,
        "variant 69548-6 " + ("Absent" if absent else "Present"),
        "component",
    )


def visit_mutation_analysis(
    ctx: Context, o: dict[str, Any], code: Matches, ref: str, date: PartialDate | None
) -> None:
    """An ABL1 mutation-analysis result (55135-8 or alike), or a T315I single-mutation assay."""
    hit = code.first("abl1_mutation_analysis", "abl1_t315i")
    matched = hit[1].matched if hit else "mutation analysis"
    if "abl1_t315i" in code and "abl1_mutation_analysis" not in code:
        pol = polarity(ctx.term, o)
        if pol.value in ("positive", "negative"):
            positive = pol.value == "positive"
            _record(
                ctx,
                ref,
                date,
                ["T315I"] if positive else [],
                [] if positive else ["T315I"],
                False,
                f"{matched}; {pol.matched}",
                "code" if hit and hit[1].via != "text" else "text",
            )
            return
    detected: list[str] = []
    absent: list[str] = []
    none_said = False
    holders = [o, *(c for c in as_list(o.get("component")) if isinstance(c, dict))]
    for holder in holders:
        for s in _holder_strings(holder):
            d, a, n = mutations_in_text(s)
            for p in dna_changes(ctx.term, s):
                if p not in d:
                    d.append(p)
            detected.extend(x for x in d if x not in detected)
            absent.extend(x for x in a if x not in absent)
            none_said = none_said or n
    if not detected and not absent:
        vm = match_cc(ctx.term, o.get("valueCodeableConcept"))
        if vm.any("result_negative", "variant_absent") or any(
            t.strip().lower() in ("none", "negative") for t in value_texts(o)
        ):
            none_said = True
    _record(
        ctx,
        ref,
        date,
        detected,
        absent,
        none_said,
        matched,
        "text" if not hit or hit[1].via == "text" else "code",
    )
