"""ABL1 kinase-domain mutations and BCR::ABL1 fusions, from variant Observations and
mutation-analysis results, in the shapes the HL7 Genomics Reporting and mCODE IGs send them.

Variant Observations (LOINC 69548-6, or any Observation carrying gene-studied components or
the FHIR R4 core observation-genetics extensions):

* gene: component 48018-6 (or the geneticsGene extension) — HGNC:76 / 76 (ABL1) and HGNC:1014
  / 1014 (BCR) under `http://www.genenames.org`, `http://www.genenames.org/geneId` or the HGNC
  OID, with or without display; the symbol as code, display or text; "BCR::ABL1" as one value.
* the change: 48005-3 (p.), 48004-6 (c.), 81290-9 (g., or c. with transcript), 81252-9 (the
  ClinVar display "NM_005157.6(ABL1):c.944C>T (p.Thr315Ile)"), 51958-7 (transcript), in
  valueCodeableConcept (code, display, text) or valueString; the geneticsAminoAcidChange and
  geneticsVariant / DNASequenceVariant extensions; ISCN (81291-7) and structural-variant
  wording for fusions.
* the value: LL1971-2 — Present (LA9633-4), Absent (LA9634-2), No call (LA18198-4),
  Indeterminate (LA11884-6). No call, Indeterminate and a missing value are *unknown*: an
  interpretation ("Positive") alone never makes a variant present.

A BCR::ABL1 fusion (BCR and ABL1 both studied, a BCR::ABL1 gene value, ISCN t(9;22), fusion /
translocation wording with ABL1) is Ph evidence — present → positive, absent → negative — and
never a kinase-domain mutation result. An ABL1 variant whose change cannot be interpreted is an
"uninterpretable" result, never "tested, absent".

Mutation-analysis results (LOINC 55135-8 or local codes named like it) carry the variant(s) as
text or coded value ("T315I detected", "p.(Thr315Ile)", "No T315I. E255K detected.", "No
mutation detected"), also in components; each mention's polarity comes from the one polarity
engine (scope: its clause, ended by another mutation). A single-mutation assay whose code
names T315I is read by its value. A result that names no mutation and does not say "none" is
uninterpretable.

Protein changes: three-letter (p.Thr315Ile, p.(Thr315Ile), Thr315Ile) or one-letter (p.T315I,
T315I), reported in one-letter form. DNA changes are interpreted only where the value set maps
a transcript-qualified form (NM_005157.x:c.944C>T and NM_007313.x:c.1001C>T → T315I).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from cds_service.facts import concepts as C
from cds_service.facts.evidence import Context, Ev
from cds_service.facts.matching import Matches, match_cc, match_texts, read_value
from cds_service.facts.model import PartialDate, Provenance
from cds_service.facts.reading import codes_of, texts_of
from cds_service.fhir_input import as_list
from cds_service.terminology import HGNC, Terminology, canonical_system, normalise_text

EMITS = frozenset({Ev.ABL1_RESULT, Ev.ABL1_DETECTED, Ev.ABL1_ABSENT, Ev.PH})

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
_RE_C = re.compile(
    r"(NM_\d+)(?:\.\d+)?(?:\([A-Za-z0-9-]+\))?\s*:\s*(c\.\d+[ACGT]>[ACGT])", re.IGNORECASE
)
_RE_C_BARE = re.compile(r"(?<![A-Za-z0-9:])(c\.\d+[ACGT]>[ACGT])", re.IGNORECASE)
_RE_NM = re.compile(r"(NM_\d+)(?:\.\d+)?", re.IGNORECASE)
_RE_CLAUSE = re.compile(r"[;\n]|,\s|\.\s|\.$")
_RE_MUTATION_TOKEN = re.compile(r"^(?:[a-z]\d{2,4}[a-z]|[a-z]{3}\d{1,4}[a-z]{3}|\d+[acgt])$")
_MAX_POSITION = 1130  # ABL1 isoform 1b length
_ABL1_TRANSCRIPTS = ("NM_005157", "NM_007313")
_GENE_IDS = {"76": "ABL1", "1014": "BCR"}
_EXT_GENE = ("geneticsgene",)
_EXT_PROTEIN = ("aminoacidchange",)
_EXT_DNA = ("geneticsvariant", "dnasequencevariant", "dnavariantid", "dnaregionname")


def protein_changes(text: str) -> list[str]:
    """One-letter protein changes named in text (T315I, E255K …), in order of appearance."""
    return [m for _, m, _ in _protein_spans(text)]


def _protein_spans(text: str) -> list[tuple[int, str, str]]:
    """(offset, one-letter change, the raw text) of each protein change, in order."""
    found: list[tuple[int, str, str]] = []
    for m in _RE_P3.finditer(text):
        ref, pos, alt = m.group(1).lower(), int(m.group(2)), m.group(3).lower()
        if ref in _AA3 and (alt in _AA3 or alt in ("*", "=")) and 0 < pos <= _MAX_POSITION:
            a = _AA3.get(alt, alt)
            found.append((m.start(), f"{_AA3[ref]}{pos}{a if a != '=' else _AA3[ref]}", m.group(0)))
    for m in _RE_P1_PREFIXED.finditer(text):
        ref, pos, alt = m.group(1).upper(), int(m.group(2)), m.group(3).upper()
        if ref in _AA1 and (alt in _AA1 or alt == "*") and 0 < pos <= _MAX_POSITION:
            found.append((m.start(), f"{ref}{pos}{alt}", m.group(0)))
    for m in _RE_P1.finditer(text):
        pos = int(m.group(2))
        if 0 < pos <= _MAX_POSITION:
            found.append((m.start(), f"{m.group(1)}{pos}{m.group(3)}", m.group(0)))
    seen: dict[str, tuple[int, str, str]] = {}
    for item in sorted(found):
        seen.setdefault(item[1], item)
    return list(seen.values())


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
    return [m for m, _ in _dna_spans(term, text, transcript)]


def _dna_spans(
    term: Terminology, text: str, transcript: str | None = None
) -> list[tuple[str, str]]:
    table = _cdna_map(term)
    out: list[tuple[str, str]] = []
    for m in _RE_C.finditer(text):
        hit = table.get((m.group(1).upper(), m.group(2).lower()))
        if hit:
            out.append((hit, m.group(0)))
    if transcript and not out:
        for m in _RE_C_BARE.finditer(text):
            hit = table.get((transcript.upper(), m.group(1).lower()))
            if hit:
                out.append((hit, m.group(0)))
    return out


def _is_mutation_token(token: str) -> bool:
    return bool(_RE_MUTATION_TOKEN.match(token))


def _mention_polarity(term: Terminology, clause: str, raw: str) -> str:
    """Polarity of one mutation mention inside its clause, from the one polarity engine."""
    tokens = normalise_text(clause).split()
    target = normalise_text(raw).split()
    n = len(target)
    for i in range(len(tokens) - n + 1):
        if tokens[i : i + n] == target:
            return term.cues.polarity(tokens, i, i + n, stop=_is_mutation_token)
    return term.cues.of_text(normalise_text(clause))


def mutations_in_text(
    term: Terminology, text: str, transcript: str | None = None
) -> tuple[list[str], list[str], bool, bool]:
    """(detected, stated absent, "no mutation" said, something equivocal) in a result text."""
    detected: list[str] = []
    absent: list[str] = []
    none_said = False
    equivocal = False
    for clause in _RE_CLAUSE.split(text):
        if not clause.strip():
            continue
        mentions = [(mut, raw) for _, mut, raw in _protein_spans(clause)]
        mentions += [(mut, raw) for mut, raw in _dna_spans(term, clause, transcript)]
        if not mentions:
            clause_pol = term.cues.of_text(normalise_text(clause))
            if clause_pol == "equivocal":
                equivocal = True
            elif clause_pol == "negated" or _says_none(term, clause):
                none_said = True
            continue
        for mut, raw in mentions:
            pol = _mention_polarity(term, clause, raw)
            if pol == "equivocal":
                equivocal = True
            elif pol == "negated":
                if mut not in absent and mut not in detected:
                    absent.append(mut)
            elif mut not in detected:
                detected.append(mut)
                if mut in absent:
                    absent.remove(mut)
    return detected, absent, none_said, equivocal


def _says_none(term: Terminology, text: str) -> bool:
    m = match_texts(term, [text])
    return m.any(C.RESULT_NEGATIVE, C.VARIANT_ABSENT)


def _cc_strings(cc: Any) -> list[str]:
    return [*texts_of(cc), *codes_of(cc)]


def _holder_strings(holder: dict[str, Any]) -> list[str]:
    out = _cc_strings(holder.get("valueCodeableConcept"))
    vs = holder.get("valueString")
    if isinstance(vs, str):
        out.append(vs)
    return out


def _walk_extensions(resource: dict[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    """(lower-cased url path, extension) of every extension, nested ones included."""
    for ext in as_list(resource.get("extension")):
        if isinstance(ext, dict) and isinstance(ext.get("url"), str):
            url = f"{path}/{ext['url'].rsplit('/', 1)[-1].lower()}"
            yield url, ext
            yield from _walk_extensions(ext, url)


def _genes(term: Terminology, cc: Any, strings: list[str]) -> set[str]:
    """Gene symbols a gene-studied value names: ABL1, BCR, or other (unknown genes)."""
    found: set[str] = set()
    if isinstance(cc, dict):
        for coding in as_list(cc.get("coding")):
            if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
                continue
            code = coding["code"].strip().upper().removeprefix("HGNC:")
            if canonical_system(coding.get("system")) == HGNC and code in _GENE_IDS:
                found.add(_GENE_IDS[code])
            elif code in ("ABL1", "BCR"):
                found.add(code)
    m = match_cc(term, cc) if isinstance(cc, dict) else match_texts(term, strings)
    if C.BCR_ABL1_FUSION in m:
        found |= {"ABL1", "BCR"}
    if C.ABL1_GENE in m:
        found.add("ABL1")
    if C.BCR_GENE in m:
        found.add("BCR")
    if not found and strings:
        found.add("other")
    return found


def is_variant_observation(term: Terminology, o: dict[str, Any], code: Matches) -> bool:
    """A Genomics Reporting / mCODE variant Observation, or one in the R4 genetics shape."""
    if C.GENETIC_VARIANT_ASSESSMENT in code:
        return True
    if any(url.endswith(_EXT_GENE) for url, _ in _walk_extensions(o)):
        return True
    if code.any(C.ABL1_MUTATION_ANALYSIS, C.ABL1_T315I, *_bcr_codes()):
        return False
    return any(
        C.GENE_STUDIED in match_cc(term, comp.get("code"))
        for comp in as_list(o.get("component"))
        if isinstance(comp, dict)
    )


def _bcr_codes() -> tuple[str, ...]:
    return (C.BCR_ABL1_RATIO, C.BCR_ABL1_P190, C.BCR_ABL1_P210, C.BCR_ABL1_LOG, C.BCR_ABL1_ASSAY)


def visit_variant(ctx: Context, o: dict[str, Any], ref: str, date: PartialDate | None) -> None:
    """One variant Observation: an ABL1 kinase-domain result, a BCR::ABL1 fusion, or nothing."""
    genes: set[str] = set()
    protein_strings: list[str] = []
    dna_strings: list[str] = []
    transcript: str | None = None
    fusion_words = False
    for comp in as_list(o.get("component")):
        if not isinstance(comp, dict):
            continue
        cm = match_cc(ctx.term, comp.get("code"))
        strings = _holder_strings(comp)
        if C.GENE_STUDIED in cm:
            genes |= _genes(ctx.term, comp.get("valueCodeableConcept"), strings)
        elif C.HGVS_P in cm:
            protein_strings.extend(strings)
        elif cm.any(C.HGVS_C, C.HGVS_G, C.VARIANT_DATABASE_ID):
            dna_strings.extend(strings)
            protein_strings.extend(strings)  # ClinVar / g. displays often name the p. change
        elif C.TRANSCRIPT_REFERENCE in cm:
            for s in strings:
                nm = _RE_NM.search(s)
                if nm:
                    transcript = nm.group(1).upper()
        elif C.ISCN in cm:
            vm = match_texts(ctx.term, strings)
            if C.T_9_22 in vm or C.BCR_ABL1_FUSION in vm:
                genes |= {"ABL1", "BCR"}
        if C.GENE_FUSION in match_texts(ctx.term, strings):
            fusion_words = True
    for url, ext in _walk_extensions(o):
        strings = _holder_strings(ext)
        if url.endswith(_EXT_GENE):
            genes |= _genes(ctx.term, ext.get("valueCodeableConcept"), strings)
        elif any(part in url for part in _EXT_PROTEIN):
            protein_strings.extend(strings)
        elif any(part in url for part in _EXT_DNA):
            dna_strings.extend(strings)
            protein_strings.extend(strings)
    for s in dna_strings:
        nm = _RE_NM.search(s)
        if nm and transcript is None:
            transcript = nm.group(1).upper()
    if not genes and transcript in _ABL1_TRANSCRIPTS:
        genes.add("ABL1")
    presence = _presence(ctx.term, o)
    fusion = {"ABL1", "BCR"} <= genes or (fusion_words and "ABL1" in genes)
    proteins: list[str] = []
    for s in protein_strings:
        proteins.extend(p for p in protein_changes(s) if p not in proteins)
    for s in dna_strings:
        proteins.extend(p for p in dna_changes(ctx.term, s, transcript) if p not in proteins)
    if fusion:
        _fusion(ctx, ref, date, presence, proteins)
        return
    if "ABL1" not in genes:
        if not genes:
            ctx.issues.append(f"{ref}: variant Observation without a gene studied; not read")
        return
    matched = f"variant 69548-6, ABL1, value {presence or 'not stated'}"
    if presence is None or presence == "not called":
        ctx.issues.append(f"{ref}: ABL1 variant whose presence is not called; read as unknown")
        ctx.add(Ev.ABL1_RESULT, "uninterpretable", date, Provenance(ref, matched, "component"))
        return
    if not proteins:
        ctx.issues.append(f"{ref}: ABL1 variant without an interpretable p. or c. HGVS")
        ctx.add(Ev.ABL1_RESULT, "uninterpretable", date, Provenance(ref, matched, "component"))
        return
    prov = Provenance(ref, matched, "hgvs")
    if presence == "present":
        emit_result(ctx, date, prov, proteins, [], False, False)
    else:
        emit_result(ctx, date, prov, [], proteins, False, False)


def _presence(term: Terminology, o: dict[str, Any]) -> str | None:
    """present / absent / not called from the value (LL1971-2 or words); None when missing."""
    vm = match_cc(term, o.get("valueCodeableConcept"))
    if vm.any(C.VARIANT_NOT_CALLED, C.RESULT_EQUIVOCAL) or vm.equivocal:
        return "not called"
    if vm.any(C.VARIANT_ABSENT):
        return "absent"
    if vm.any(C.VARIANT_PRESENT):
        return "present"
    reading = read_value(term, o, interpretation=False)
    if reading.equivocal:
        return "not called"
    if reading.value == "positive":
        return "present"
    if reading.value == "negative":
        return "absent"
    return None


def _fusion(
    ctx: Context, ref: str, date: PartialDate | None, presence: str | None, proteins: list[str]
) -> None:
    """A BCR::ABL1 fusion variant: Ph evidence, never a kinase-domain result."""
    matched = f"variant Observation: BCR::ABL1 fusion, value {presence or 'not stated'}"
    if presence == "present":
        prov = Provenance(ref, matched, "component")
        ctx.add(Ev.PH, "positive", date, prov, detail="BCR::ABL1 fusion reported")
        for mut in proteins:  # a kinase-domain change reported beside the fusion still counts
            ctx.add(
                Ev.ABL1_DETECTED,
                "detected",
                date,
                Provenance(ref, f"{matched}: {mut}", "hgvs"),
                item=mut,
            )
    elif presence == "absent":
        prov = Provenance(ref, matched, "component")
        ctx.add(Ev.PH, "negative", date, prov, detail="qualitative result")
    else:
        ctx.issues.append(f"{ref}: BCR::ABL1 fusion variant whose presence is not called")


def visit_mutation_analysis(
    ctx: Context, o: dict[str, Any], code: Matches, ref: str, date: PartialDate | None
) -> None:
    """An ABL1 mutation-analysis result (55135-8 or alike), or a T315I single-mutation assay."""
    hit = code.first(C.ABL1_MUTATION_ANALYSIS, C.ABL1_T315I)
    matched = hit[1].matched if hit else "mutation analysis"
    via = "text" if not hit or hit[1].via == "text" else "code"
    if C.ABL1_T315I in code and C.ABL1_MUTATION_ANALYSIS not in code:
        reading = read_value(ctx.term, o)
        if reading.value in ("positive", "negative"):
            prov = Provenance(ref, f"{matched}; {reading.matched}", via)
            positive = reading.value == "positive"
            found, gone = (["T315I"], []) if positive else ([], ["T315I"])
            emit_result(ctx, date, prov, found, gone, False, False)
            return
    detected: list[str] = []
    absent: list[str] = []
    none_said = False
    equivocal = False
    holders = [o, *(c for c in as_list(o.get("component")) if isinstance(c, dict))]
    for holder in holders:
        for s in _holder_strings(holder):
            d, a, n, e = mutations_in_text(ctx.term, s)
            detected.extend(x for x in d if x not in detected)
            absent.extend(x for x in a if x not in absent and x not in detected)
            none_said = none_said or n
            equivocal = equivocal or e
    if not detected and not absent and not none_said:
        reading = read_value(ctx.term, o)
        none_said = reading.value == "negative"
        equivocal = equivocal or reading.equivocal
    emit_result(ctx, date, Provenance(ref, matched, via), detected, absent, none_said, equivocal)


def emit_result(
    ctx: Context,
    date: PartialDate | None,
    prov: Provenance,
    detected: list[str],
    absent: list[str],
    none_said: bool,
    equivocal: bool,
) -> None:
    """The evidence of one kinase-domain result (see Ev.ABL1_RESULT). Anything equivocal makes
    the result uninterpretable for what it did not detect; what it detected still counts."""
    if equivocal or not (detected or absent or none_said):
        ctx.issues.append(f"{prov.resource}: ABL1 mutation result could not be interpreted")
        ctx.add(Ev.ABL1_RESULT, "uninterpretable", date, prov)
        absent = []
    elif detected:
        ctx.add(Ev.ABL1_RESULT, "mutations", date, prov)
    else:
        ctx.add(Ev.ABL1_RESULT, "none" if none_said else "absent_only", date, prov)
    for mut in detected:
        ctx.add(
            Ev.ABL1_DETECTED,
            "detected",
            date,
            Provenance(prov.resource, f"{prov.matched}: {mut}", prov.via),
            item=mut,
        )
    for mut in absent:
        ctx.add(
            Ev.ABL1_ABSENT,
            "absent",
            date,
            Provenance(prov.resource, f"{prov.matched}: {mut} absent", prov.via),
            item=mut,
        )
