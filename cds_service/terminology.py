"""Value sets as data: load `rules/valuesets/*.yaml` and match codes and text against them.

A value-set file has an `id`, a `title`, a `description`, and `concepts` (each with an `id`
unique across all files, `codes` and text synonyms) and/or `include` (concept ids defined in
another file). Every code carries `verified:` (where it was verified) or the word `unverified`.
See rules/valuesets/README.md for the full schema.

Matching is precomputed once at load time and memoised:

* codes: one dict from (canonical system, normalised code) to concepts; ICD-10 codes compare
  without the dot and case-insensitively, `match: prefix` codes cover a family (C91.0 → C91.0x);
  common system aliases (OIDs, bare names) are folded onto the canonical URL.
* text: `normalise_text` casefolds, turns "+" into "positive" and a trailing "-" into
  "negative" ("Ph+" → "ph positive", "CD19-" → "cd19 negative"), folds British "-aem-"
  spellings, keeps clause breaks (". ", "; ", ", ") as a "|" token and turns every other
  punctuation into a space. A synonym matches as a whole-token sequence; `text_exact` synonyms
  only when they are the whole text; `exclude_text` vetoes the concept for that text
  ("T-cell acute lymphoblastic leukemia" is not B-ALL). Each match carries its polarity from
  the one polarity engine (`Cues`): affirmed, negated ("no", "negative for" … before it, "not
  detected", "absent" … after it) or equivocal ("suspicious for", "indeterminate", "no call" …),
  within the same clause; the cue lists are data (rules/valuesets/polarity.yaml). Callers
  decide what a negated match means; an equivocal one is never evidence.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from cds_service.errors import RuleSetError

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
HGNC = "http://www.genenames.org"
HGVS = "http://varnomen.hgvs.org"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

# System identifiers seen in the wild for the same code systems. The OIDs are the HL7 ones
# (RxNorm .6.88, LOINC .6.1, SNOMED CT .6.96, ICD-10-CM .6.90), checked against public code.
# WHO ICD-10 is folded onto ICD-10-CM: the families used here (C91.0, C92.1) mean the same.
_SYSTEM_ALIASES: Mapping[str, str] = {
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "rxnorm": RXNORM,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "loinc": LOINC,
    "http://loinc.org/": LOINC,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "snomed": SNOMED,
    "snomed ct": SNOMED,
    "snomed-ct": SNOMED,
    "sct": SNOMED,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "icd-10-cm": ICD10CM,
    "icd10cm": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10": ICD10CM,
    "atc": ATC,
    "http://www.whocc.no/atc/": ATC,
    "hgnc": HGNC,
    "http://www.genenames.org/": HGNC,
    "https://www.genenames.org": HGNC,
    # Genomics Reporting examples before 2023-11 (HL7/genomics-reporting commit d0a5e9d)
    "http://www.genenames.org/geneid": HGNC,
    "https://www.genenames.org/geneid": HGNC,
    # the HGNC OID, as public FHIR converters map it (search tool: 2.16.840.1.113883.6.281)
    "urn:oid:2.16.840.1.113883.6.281": HGNC,
}
_SYSTEM_ALIASES_LOWER = {k.lower(): v for k, v in _SYSTEM_ALIASES.items()}

Polarity = Literal["affirmed", "negated", "equivocal"]
"""How a mention is stated: plainly, negated ("no CNS disease"), or equivocally ("suspicious")."""

CUE_CONCEPTS = {
    "before": "cue_negation_before",
    "after": "cue_negation_after",
    "equivocal": "cue_equivocal",
    "pseudo": "cue_pseudo_negation",
    "scope_end": "cue_scope_end",
}
"""The concepts of the `polarity` value set that hold the cue lists (data, not code)."""


def canonical_system(system: str | None) -> str | None:
    """The canonical URL of a code system, folding known aliases; None stays None."""
    if not system or not isinstance(system, str):
        return None
    s = system.strip()
    return _SYSTEM_ALIASES_LOWER.get(s.lower(), s.rstrip("/"))


def normalise_code(system: str | None, code: Any) -> str | None:
    """A code as compared: stripped; ICD-10 upper-case without dots; HGNC without 'HGNC:'."""
    if code is None or isinstance(code, bool):
        return None
    if isinstance(code, int | float):
        code = str(int(code)) if float(code).is_integer() else str(code)
    if not isinstance(code, str):
        return None
    c = code.strip()
    if not c:
        return None
    if system == ICD10CM:
        return c.upper().replace(".", "")
    if system == HGNC:
        return c.upper().removeprefix("HGNC:")
    return c


_RE_PLUS = re.compile(r"\+")
_RE_TRAILING_MINUS = re.compile(r"(?<=[0-9a-z])-(?=$|[\s/,;)\]])")
_RE_CLAUSE = re.compile(r"[.;,!?](?=\s|$)|\n")
_RE_OTHER = re.compile(r"[^0-9a-z|]+")


@functools.lru_cache(maxsize=16384)
def normalise_text(text: str) -> str:
    """Normalised text for synonym matching (see the module docstring)."""
    t = text.casefold().replace("\u2212", "-").replace("\u2013", "-").replace("\u2010", "-")
    t = t.replace("aem", "em")
    t = _RE_PLUS.sub(" positive ", t)
    t = _RE_TRAILING_MINUS.sub(" negative ", t)
    t = _RE_CLAUSE.sub(" | ", t)
    t = _RE_OTHER.sub(" ", t)
    return " ".join(t.split())


@dataclass(frozen=True, slots=True)
class Code:
    """One code of a concept, with where it was verified."""

    system: str
    code: str
    display: str | None
    verified: str
    """Where the code was verified, or text starting with 'unverified'."""
    type: str | None = None
    """RxNorm term type (IN, SCD, SBD …) where it matters; None otherwise."""
    prefix: bool = False
    """True when the code stands for the family of codes it begins (ICD-10 C91.0 → C91.0x)."""

    @property
    def is_verified(self) -> bool:
        return not self.verified.strip().lower().startswith("unverified")

    def __str__(self) -> str:
        return f"{self.system}|{self.code}{'*' if self.prefix else ''}"


@dataclass(frozen=True, slots=True)
class Concept:
    """A clinical concept: its codes and text synonyms."""

    id: str
    valueset: str
    display: str
    codes: tuple[Code, ...] = ()
    text: tuple[str, ...] = ()
    """Normalised synonyms matched as whole-token sequences anywhere in a text."""
    text_exact: tuple[str, ...] = ()
    """Normalised synonyms matched only when they are the whole text."""
    exclude_text: tuple[str, ...] = ()
    """Normalised phrases that veto this concept for a text."""
    attributes: Mapping[str, str | tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ValueSet:
    """A named set of concepts; its id is what rules refer to."""

    id: str
    title: str
    description: str
    source: str
    """File the value set was loaded from."""
    members: frozenset[str]
    """Concept ids: those defined in the file and those it includes."""


@dataclass(frozen=True, slots=True)
class CodeMatch:
    concept: str
    code: Code
    """The value-set code that matched."""
    sent: str
    """What was sent, as "system|code"."""


@dataclass(frozen=True, slots=True)
class TextMatch:
    concept: str
    synonym: str
    polarity: Polarity = "affirmed"

    @property
    def negated(self) -> bool:
        return self.polarity == "negated"

    @property
    def equivocal(self) -> bool:
        return self.polarity == "equivocal"


class Terminology:
    """All value sets, with precomputed code and text indexes. Immutable after construction."""

    def __init__(self, valuesets: Mapping[str, ValueSet], concepts: Mapping[str, Concept]) -> None:
        self.valuesets: Mapping[str, ValueSet] = MappingProxyType(dict(valuesets))
        self.concepts: Mapping[str, Concept] = MappingProxyType(dict(concepts))
        exact_codes: dict[tuple[str, str], list[tuple[str, Code]]] = {}
        prefix_codes: dict[tuple[str, str], list[tuple[str, Code]]] = {}
        first_token: dict[str, list[tuple[tuple[str, ...], str, str]]] = {}
        whole: dict[str, list[tuple[str, str]]] = {}
        excludes: list[tuple[tuple[str, ...], str]] = []
        self.cues = Cues.from_concepts(concepts)
        cue_ids = frozenset(CUE_CONCEPTS.values())
        for concept in concepts.values():
            if concept.id in cue_ids:
                continue  # cue lists steer polarity; they are not concepts to find
            for code in concept.codes:
                system = canonical_system(code.system) or code.system
                key = (system, normalise_code(system, code.code) or code.code)
                target = prefix_codes if code.prefix else exact_codes
                target.setdefault(key, []).append((concept.id, code))
            for syn in concept.text:
                tokens = tuple(syn.split())
                if tokens:
                    first_token.setdefault(tokens[0], []).append((tokens, concept.id, syn))
            for syn in concept.text_exact:
                whole.setdefault(syn, []).append((concept.id, syn))
            for phrase in concept.exclude_text:
                excludes.append((tuple(phrase.split()), concept.id))
        self._exact_codes = {k: tuple(v) for k, v in exact_codes.items()}
        self._prefix_codes = {k: tuple(v) for k, v in prefix_codes.items()}
        self._prefix_lengths = sorted({len(k[1]) for k in prefix_codes}, reverse=True)
        self._first_token = {
            k: tuple(sorted(v, key=lambda x: (-len(x[0]), x[1]))) for k, v in first_token.items()
        }
        self._whole = {k: tuple(v) for k, v in whole.items()}
        self._excludes = tuple(excludes)
        self._text_cache = functools.lru_cache(maxsize=8192)(self._match_text_uncached)
        self.memo: dict[Any, Any] = {}
        """Scratch memo for callers' derived matches (e.g. per CodeableConcept), bounded by them."""

    # -- codes ---------------------------------------------------------------------------
    def match_code(self, system: Any, code: Any) -> tuple[CodeMatch, ...]:
        """Concepts whose codes include (system, code); empty when the system is unknown."""
        canon = canonical_system(system) if isinstance(system, str) else None
        if canon is None:
            return ()
        norm = normalise_code(canon, code)
        if norm is None:
            return ()
        sent = f"{canon}|{code}"
        hits = self._exact_codes.get((canon, norm), ())
        out = [CodeMatch(cid, c, sent) for cid, c in hits]
        if self._prefix_codes:
            for n in self._prefix_lengths:
                if n <= len(norm):
                    for cid, c in self._prefix_codes.get((canon, norm[:n]), ()):
                        out.append(CodeMatch(cid, c, sent))
        return tuple(out)

    # -- text ----------------------------------------------------------------------------
    def match_text(self, text: Any) -> tuple[TextMatch, ...]:
        """Concepts whose synonyms occur in text (memoised); negation flagged per match."""
        if not isinstance(text, str) or not text.strip():
            return ()
        return self._text_cache(normalise_text(text))

    def _match_text_uncached(self, norm: str) -> tuple[TextMatch, ...]:
        tokens = norm.split()
        found: dict[tuple[str, str], Polarity] = {}
        for cid, syn in self._whole.get(norm, ()):
            found[(cid, syn)] = "affirmed"
        for i, tok in enumerate(tokens):
            for syn_tokens, cid, syn in self._first_token.get(tok, ()):
                j = i + len(syn_tokens)
                if tuple(tokens[i:j]) == syn_tokens:
                    key = (cid, syn)
                    # a concept stated plainly anywhere counts as plain; equivocal beats negated
                    found[key] = _stronger(found.get(key), self.cues.polarity(tokens, i, j))
        if not found:
            return ()
        vetoed = {cid for phrase, cid in self._excludes if _contains(tokens, phrase)}
        return tuple(
            TextMatch(cid, syn, pol)
            for (cid, syn), pol in sorted(found.items())
            if cid not in vetoed
        )

    # -- value sets ----------------------------------------------------------------------
    def members(self, valueset_id: str) -> frozenset[str]:
        """Concept ids in a value set; KeyError when the id is unknown."""
        return self.valuesets[valueset_id].members

    def in_valueset(self, concept_id: str, valueset_id: str) -> bool:
        vs = self.valuesets.get(valueset_id)
        return vs is not None and concept_id in vs.members

    def codes_of(self, concept_id: str) -> tuple[Code, ...]:
        return self.concepts[concept_id].codes


def _contains(tokens: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    if not n:
        return False
    first = phrase[0]
    return any(tok == first and tuple(tokens[i : i + n]) == phrase for i, tok in enumerate(tokens))


_RANK: Mapping[Polarity, int] = MappingProxyType({"negated": 0, "equivocal": 1, "affirmed": 2})


def _stronger(a: Polarity | None, b: Polarity) -> Polarity:
    return b if a is None or _RANK[b] > _RANK[a] else a


_Phrases = Mapping[str, tuple[tuple[str, ...], ...]]
"""Cue phrases indexed by their first token, longest first."""


def _index(phrases: Iterable[str]) -> _Phrases:
    by_first: dict[str, list[tuple[str, ...]]] = {}
    for phrase in phrases:
        tokens = tuple(phrase.split())
        if tokens:
            by_first.setdefault(tokens[0], []).append(tokens)
    return MappingProxyType(
        {k: tuple(sorted(v, key=len, reverse=True)) for k, v in by_first.items()}
    )


def _spans(window: Sequence[str], phrases: _Phrases) -> list[tuple[int, int]]:
    """(start, end) of every cue phrase occurring in window."""
    out: list[tuple[int, int]] = []
    for k, tok in enumerate(window):
        for phrase in phrases.get(tok, ()):
            if tuple(window[k : k + len(phrase)]) == phrase:
                out.append((k, k + len(phrase)))
                break
    return out


def _outside(spans: list[tuple[int, int]], cover: list[tuple[int, int]]) -> bool:
    """True when some span is not inside a covering (pseudo-negation) span."""
    return any(not any(a <= s and e <= b for a, b in cover) for s, e in spans)


@dataclass(frozen=True)
class Cues:
    """The one polarity engine: is a mention at tokens[i:j] affirmed, negated or equivocal?

    NegEx-style: a negation cue shortly before ("no", "negative for", "without" …) or after
    ("not detected", "absent", "negative" …) the mention, or an equivocal cue on either side
    ("suspicious for", "indeterminate", "no call" …), within the same clause. The scope ends
    at a clause break ("|"), at a scope-ending word ("but", "however" …) and at any token the
    caller's `stop` says ends it (another marker in a marker list, another mutation).
    Pseudo-negations ("no change in") do not negate. Cue lists and window sizes are data: the
    concepts of the `polarity` value set (rules/valuesets/polarity.yaml).
    """

    before: _Phrases
    after: _Phrases
    equivocal: _Phrases
    pseudo: _Phrases
    scope_end: frozenset[str]
    window_before: int = 5
    window_after: int = 4

    @staticmethod
    def from_concepts(concepts: Mapping[str, Concept]) -> Cues:
        def phrases(role: str) -> tuple[str, ...]:
            c = concepts.get(CUE_CONCEPTS[role])
            return (*c.text, *c.text_exact) if c is not None else ()

        def window(role: str, default: int) -> int:
            c = concepts.get(CUE_CONCEPTS[role])
            raw = c.attributes.get("window") if c is not None else None
            return int(raw) if isinstance(raw, str) and raw.isdigit() else default

        return Cues(
            before=_index(phrases("before")),
            after=_index(phrases("after")),
            equivocal=_index(phrases("equivocal")),
            pseudo=_index(phrases("pseudo")),
            scope_end=frozenset(t for p in phrases("scope_end") for t in p.split()),
            window_before=window("before", 5),
            window_after=window("after", 4),
        )

    def polarity(
        self,
        tokens: Sequence[str],
        i: int,
        j: int,
        stop: Callable[[str], bool] | None = None,
    ) -> Polarity:
        """Polarity of the mention tokens[i:j] (tokens as `normalise_text` splits them)."""
        left: list[str] = []
        for k in range(i - 1, max(-1, i - 1 - self.window_before), -1):
            tok = tokens[k]
            if tok == "|" or tok in self.scope_end or (stop is not None and stop(tok)):
                break
            left.insert(0, tok)
        right: list[str] = []
        for k in range(j, min(len(tokens), j + self.window_after)):
            tok = tokens[k]
            if tok == "|" or tok in self.scope_end or (stop is not None and stop(tok)):
                break
            right.append(tok)
        return self.classify(left, right)

    def classify(self, left: Sequence[str], right: Sequence[str]) -> Polarity:
        """Polarity given the scope windows before and after a mention (for readers that
        cut their own windows, such as a marker list)."""
        if _spans(left, self.equivocal) or _spans(right, self.equivocal):
            return "equivocal"
        left_neg = _spans(left, self.before)
        right_neg = _spans(right, self.after)
        if left_neg and _outside(left_neg, _spans(left, self.pseudo)):
            return "negated"
        if right_neg and _outside(right_neg, _spans(right, self.pseudo)):
            return "negated"
        return "affirmed"

    def of_text(self, norm: str) -> Polarity:
        """Polarity of a whole (normalised) text as one statement: equivocal or negated when
        it carries such a cue anywhere, else affirmed (for short result values)."""
        tokens = [t for t in norm.split() if t != "|"]
        if _spans(tokens, self.equivocal):
            return "equivocal"
        neg = _spans(tokens, self.before) + _spans(tokens, self.after)
        if neg and _outside(neg, _spans(tokens, self.pseudo)):
            return "negated"
        return "affirmed"


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


class _LineDict(dict[str, Any]):
    """A mapping that remembers the line of each key (1-based)."""

    lines: dict[str, int]
    line: int


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    out = _LineDict()
    out.lines = {}
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_FILE_KEYS = frozenset({"id", "title", "description", "concepts", "include", "note"})
_CONCEPT_KEYS = frozenset(
    {"id", "display", "codes", "text", "text_exact", "exclude_text", "attributes", "note"}
)
_CODE_KEYS = frozenset({"system", "code", "display", "verified", "type", "match"})


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, file: str, line: int, path: str, message: str) -> None:
        self.items.append(f"{file}:{line}: {path}: {message}")


def _line(obj: Any, key: str | None = None) -> int:
    if isinstance(obj, _LineDict):
        if key is not None and key in obj.lines:
            return obj.lines[key]
        return obj.line
    return 0


def _str_list(
    raw: Any, file: str, line: int, path: str, errors: _Errors, *, normalise: bool
) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        errors.add(file, line, path, "expected a list of non-empty strings")
        return ()
    out = [normalise_text(x) if normalise else x.strip() for x in raw]
    if normalise:
        for orig, norm in zip(raw, out, strict=True):
            if not norm or "|" in norm.split():
                errors.add(file, line, path, f"synonym {orig!r} normalises to nothing usable")
    return tuple(x for x in out if x)


def _unknown_keys(
    raw: dict[str, Any], allowed: frozenset[str], file: str, path: str, errors: _Errors
) -> None:
    for key in raw:
        if key not in allowed:
            errors.add(
                file, _line(raw, key), f"{path}.{key}", f"unknown key (allowed: {sorted(allowed)})"
            )


def _parse_code(raw: Any, file: str, path: str, errors: _Errors) -> Code | None:
    line = _line(raw)
    if not isinstance(raw, dict):
        errors.add(file, line, path, "a code must be a mapping")
        return None
    _unknown_keys(raw, _CODE_KEYS, file, path, errors)
    system, code, verified = raw.get("system"), raw.get("code"), raw.get("verified")
    ok = True
    if not isinstance(system, str) or not system:
        errors.add(file, line, f"{path}.system", "required string")
        ok = False
    if not isinstance(code, str) or not code.strip():
        errors.add(
            file, _line(raw, "code"), f"{path}.code", "required string (quote numeric codes)"
        )
        ok = False
    if not isinstance(verified, str) or not verified.strip():
        errors.add(
            file, line, f"{path}.verified", "say where the code was verified, or 'unverified'"
        )
        ok = False
    match = raw.get("match", "exact")
    if match not in ("exact", "prefix"):
        errors.add(file, _line(raw, "match"), f"{path}.match", "must be 'exact' or 'prefix'")
        ok = False
    display, ctype = raw.get("display"), raw.get("type")
    if display is not None and not isinstance(display, str):
        errors.add(file, _line(raw, "display"), f"{path}.display", "must be a string")
        ok = False
    if ctype is not None and not isinstance(ctype, str):
        errors.add(file, _line(raw, "type"), f"{path}.type", "must be a string")
        ok = False
    if not ok:
        return None
    assert isinstance(system, str) and isinstance(code, str) and isinstance(verified, str)
    return Code(
        system=canonical_system(system) or system,
        code=code.strip(),
        display=display,
        verified=verified.strip(),
        type=ctype,
        prefix=match == "prefix",
    )


def _parse_concept(raw: Any, vs_id: str, file: str, path: str, errors: _Errors) -> Concept | None:
    line = _line(raw)
    if not isinstance(raw, dict):
        errors.add(file, line, path, "a concept must be a mapping")
        return None
    _unknown_keys(raw, _CONCEPT_KEYS, file, path, errors)
    cid = raw.get("id")
    if not isinstance(cid, str) or not _ID_RE.match(cid):
        errors.add(file, line, f"{path}.id", "required: lower-case id ([a-z0-9_.-])")
        return None
    path = f"{path}({cid})"
    codes_raw = raw.get("codes") or []
    codes: list[Code] = []
    if not isinstance(codes_raw, list):
        errors.add(file, _line(raw, "codes"), f"{path}.codes", "expected a list")
    else:
        for k, c in enumerate(codes_raw):
            parsed = _parse_code(c, file, f"{path}.codes[{k}]", errors)
            if parsed:
                codes.append(parsed)
    text = _str_list(
        raw.get("text"), file, _line(raw, "text"), f"{path}.text", errors, normalise=True
    )
    exact = _str_list(
        raw.get("text_exact"),
        file,
        _line(raw, "text_exact"),
        f"{path}.text_exact",
        errors,
        normalise=True,
    )
    exclude = _str_list(
        raw.get("exclude_text"),
        file,
        _line(raw, "exclude_text"),
        f"{path}.exclude_text",
        errors,
        normalise=True,
    )
    attrs_raw = raw.get("attributes") or {}
    attrs: dict[str, str | tuple[str, ...]] = {}
    if not isinstance(attrs_raw, dict):
        errors.add(file, _line(raw, "attributes"), f"{path}.attributes", "expected a mapping")
    else:
        for k, v in attrs_raw.items():
            if isinstance(v, str):
                attrs[k] = v
            elif isinstance(v, list) and all(isinstance(x, str) for x in v):
                attrs[k] = tuple(v)
            else:
                errors.add(
                    file,
                    _line(attrs_raw, k),
                    f"{path}.attributes.{k}",
                    "expected a string or list of strings",
                )
    if not codes_raw and not text and not exact:
        errors.add(file, line, path, "a concept needs codes or text synonyms")
    display = raw.get("display", cid)
    note = raw.get("note")
    return Concept(
        id=cid,
        valueset=vs_id,
        display=str(display),
        codes=tuple(codes),
        text=text,
        text_exact=exact,
        exclude_text=exclude,
        attributes=MappingProxyType(attrs),
        note=str(note) if note is not None else None,
    )


def load_valuesets(directory: Path) -> Terminology:
    """Load every `*.yaml` in directory; all problems are reported at once as RuleSetError."""
    errors = _Errors()
    if not directory.is_dir():
        raise RuleSetError(f"value-set directory not found: {directory}")
    files = sorted(directory.glob("*.yaml"))
    concepts: dict[str, Concept] = {}
    concept_file: dict[str, str] = {}
    pending: list[tuple[str, str, str, int, list[str], list[str], str]] = []
    for path in files:
        name = f"{directory.name}/{path.name}"
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = mark.line + 1 if mark is not None else 0
            problem = getattr(exc, "problem", None) or str(exc)
            errors.add(name, line, "(yaml)", str(problem))
            continue
        if not isinstance(data, dict):
            errors.add(name, 1, "(file)", "a value-set file must be a mapping")
            continue
        for key in data:
            if key not in _FILE_KEYS:
                errors.add(
                    name, _line(data, key), key, f"unknown key (allowed: {sorted(_FILE_KEYS)})"
                )
        vs_id = data.get("id")
        if not isinstance(vs_id, str) or not _ID_RE.match(vs_id):
            errors.add(name, _line(data, "id"), "id", "required: lower-case value-set id")
            continue
        if path.stem != vs_id:
            errors.add(name, _line(data, "id"), "id", f"must equal the file name ({path.stem!r})")
        title = data.get("title")
        if not isinstance(title, str) or not title.strip():
            errors.add(name, _line(data), "title", "required string")
            title = vs_id
        description = data.get("description") or ""
        own: list[str] = []
        raw_concepts = data.get("concepts") or []
        if not isinstance(raw_concepts, list):
            errors.add(name, _line(data, "concepts"), "concepts", "expected a list")
            raw_concepts = []
        for k, raw in enumerate(raw_concepts):
            concept = _parse_concept(raw, vs_id, name, f"concepts[{k}]", errors)
            if concept is None:
                continue
            if concept.id in concepts:
                errors.add(
                    name,
                    _line(raw),
                    f"concepts[{k}].id",
                    f"concept {concept.id!r} already defined in {concept_file[concept.id]}",
                )
                continue
            concepts[concept.id] = concept
            concept_file[concept.id] = name
            own.append(concept.id)
        include = data.get("include") or []
        if not isinstance(include, list) or not all(isinstance(x, str) for x in include):
            errors.add(name, _line(data, "include"), "include", "expected a list of concept ids")
            include = []
        if not raw_concepts and not include:
            errors.add(name, _line(data), "(file)", "a value set needs concepts or include")
        pending.append((vs_id, title, str(description), _line(data, "include"), own, include, name))
    valuesets: dict[str, ValueSet] = {}
    for vs_id, title, description, inc_line, own, include, name in pending:
        for k, cid in enumerate(include):
            if cid not in concepts:
                errors.add(name, inc_line, f"include[{k}]", f"unknown concept id {cid!r}")
        if vs_id in valuesets:
            errors.add(
                name, 1, "id", f"value-set id {vs_id!r} already used by {valuesets[vs_id].source}"
            )
            continue
        valuesets[vs_id] = ValueSet(
            vs_id,
            title,
            description,
            name,
            frozenset(own) | frozenset(c for c in include if c in concepts),
        )
    if errors.items:
        raise RuleSetError(
            f"{len(errors.items)} error(s) in value sets under {directory}", details=errors.items
        )
    return Terminology(valuesets, concepts)


def default_valueset_dir() -> Path:
    """The repository's rules/valuesets, else the copy bundled into the wheel."""
    here = Path(__file__).resolve().parent
    repo = here.parent / "rules" / "valuesets"
    if repo.is_dir():
        return repo
    return here / "_bundled" / "rules" / "valuesets"


@functools.lru_cache(maxsize=1)
def default_terminology() -> Terminology:
    """The default value sets, loaded once per process."""
    return load_valuesets(default_valueset_dir())


def concept_ids(matches: Iterable[TextMatch | CodeMatch]) -> frozenset[str]:
    """Concept ids in a sequence of matches (negated text matches excluded)."""
    return frozenset(m.concept for m in matches if not (isinstance(m, TextMatch) and m.negated))
