"""CodeableConcepts, texts and result values read against the value sets.

`match_cc` finds the concepts a CodeableConcept names, by code first and then by text (code
wins per concept); a concept mentioned only negated or only equivocally is kept apart, never
as a hit. `read_value` reads a result value (value[x], then interpretation) as positive,
negative, dim or nothing — nothing when it is equivocal ("indeterminate", "no call",
"suspicious"), conflicting, or not a result value at all. Both use the one polarity engine of
the terminology (`Terminology.cues`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cds_service.facts import concepts as C
from cds_service.facts.reading import texts_of
from cds_service.fhir_input import as_list
from cds_service.terminology import Code, Terminology, normalise_text

_CC_CACHE_MAX = 20000
_PRODUCT_TYPES = frozenset(
    {"SCD", "SBD", "GPCK", "BPCK", "SCDC", "SBDC", "SCDG", "SBDG", "product"}
)


@dataclass(frozen=True, slots=True)
class Hit:
    """How a concept was matched in a CodeableConcept."""

    via: str
    """"code" (or the code's type: "product-code", "atc") or "text"."""
    matched: str
    code: Code | None = None


@dataclass(frozen=True, slots=True)
class Matches:
    """Concepts matched in one CodeableConcept (or text); those only mentioned negated or only
    equivocally are not hits."""

    hits: dict[str, Hit]
    negated: frozenset[str]
    equivocal: frozenset[str] = frozenset()

    def __contains__(self, concept: object) -> bool:
        return concept in self.hits

    def any(self, *concepts: str) -> bool:
        return not self.hits.keys().isdisjoint(concepts)

    def first(self, *concepts: str) -> tuple[str, Hit] | None:
        for c in concepts:
            hit = self.hits.get(c)
            if hit is not None:
                return c, hit
        return None

    def mentioned(self, *concepts: str) -> bool:
        """Named at all: plainly, negated or equivocally."""
        return self.any(*concepts) or not (self.negated | self.equivocal).isdisjoint(concepts)


EMPTY = Matches({}, frozenset())


def code_via(code: Code) -> str:
    if code.type in _PRODUCT_TYPES:
        return "product-code"
    if code.system == "http://www.whocc.no/atc":
        return "atc"
    return "code"


def _cc_key(cc: Any) -> Any:
    if not isinstance(cc, dict):
        return None
    codings = cc.get("coding")
    items: tuple[Any, ...] = ()
    if isinstance(codings, list):
        items = tuple(
            (c.get("system"), c.get("code"), c.get("display")) if isinstance(c, dict) else None
            for c in codings
        )
    text = cc.get("text")
    return (items, text if isinstance(text, str) else None)


def match_cc(term: Terminology, *ccs: Any) -> Matches:
    """Concepts matched by the codes of ccs, then by their texts (code wins per concept).

    Memoised per terminology on the codings and text (clinical records repeat the same codes).
    """
    try:
        key = tuple(_cc_key(cc) for cc in ccs)
        cached = term.memo.get(key)
    except TypeError:  # an unhashable value inside a coding: match without the cache
        return _match_cc(term, ccs)
    if isinstance(cached, Matches):
        return cached
    result = _match_cc(term, ccs)
    if len(term.memo) >= _CC_CACHE_MAX:
        term.memo.clear()
    term.memo[key] = result
    return result


def _match_cc(term: Terminology, ccs: tuple[Any, ...]) -> Matches:
    hits: dict[str, Hit] = {}
    negated: set[str] = set()
    equivocal: set[str] = set()
    for cc in ccs:
        if not isinstance(cc, dict):
            continue
        for coding in as_list(cc.get("coding")):
            if not isinstance(coding, dict):
                continue
            for m in term.match_code(coding.get("system"), coding.get("code")):
                hits.setdefault(m.concept, Hit(code_via(m.code), m.sent, m.code))
    for cc in ccs:
        for text in texts_of(cc):
            _add_text(term, text, hits, negated, equivocal)
    return Matches(hits, frozenset(negated - set(hits)), frozenset(equivocal - set(hits)))


def match_texts(term: Terminology, texts: Iterable[str]) -> Matches:
    """Concepts matched in free texts (no codes); memoised like match_cc."""
    key = ("texts", tuple(texts))
    cached = term.memo.get(key)
    if isinstance(cached, Matches):
        return cached
    hits: dict[str, Hit] = {}
    negated: set[str] = set()
    equivocal: set[str] = set()
    for text in key[1]:
        _add_text(term, text, hits, negated, equivocal)
    result = Matches(hits, frozenset(negated - set(hits)), frozenset(equivocal - set(hits)))
    if len(term.memo) >= _CC_CACHE_MAX:
        term.memo.clear()
    term.memo[key] = result
    return result


def _add_text(
    term: Terminology, text: str, hits: dict[str, Hit], negated: set[str], equivocal: set[str]
) -> None:
    for tm in term.match_text(text):
        if tm.negated:
            negated.add(tm.concept)
        elif tm.equivocal:
            equivocal.add(tm.concept)
        else:
            hits.setdefault(tm.concept, Hit("text", f'text "{tm.synonym}"'))


# -- result values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueReading:
    """A result value read as "positive", "negative", "dim", or None (not readable)."""

    value: str | None
    matched: str
    number: float | None = None
    comparator: str | None = None
    unit: str | None = None
    equivocal: bool = False
    """True when the value says the result could not be called (indeterminate, no call …)."""


def read_value(
    term: Terminology, holder: dict[str, Any], *, interpretation: bool = True
) -> ValueReading:
    """The polarity of an Observation's (or component's) value, then of its interpretation
    (unless `interpretation` is False)."""
    vcc = holder.get("valueCodeableConcept")
    if isinstance(vcc, dict):
        reading = _reading(match_cc(term, vcc), term, list(texts_of(vcc)))
        if reading is not None:
            return reading
    vs = holder.get("valueString")
    if isinstance(vs, str):
        reading = _reading(match_texts(term, [vs]), term, [vs])
        if reading is not None:
            return reading
    vb = holder.get("valueBoolean")
    if isinstance(vb, bool):
        return ValueReading("positive" if vb else "negative", f"valueBoolean {str(vb).lower()}")
    vq = holder.get("valueQuantity")
    if isinstance(vq, dict):
        number = vq.get("value")
        if isinstance(number, int | float) and not isinstance(number, bool):
            comparator = vq.get("comparator") if isinstance(vq.get("comparator"), str) else None
            unit = vq.get("unit") or vq.get("code")
            unit_s = unit if isinstance(unit, str) else None
            num = float(number)
            shown = f"{comparator or ''}{number}{' ' + unit_s if unit_s else ''}"
            if comparator in ("<", "<="):
                return ValueReading("negative", f"value {shown}", num, comparator, unit_s)
            return ValueReading(
                "positive" if num > 0 else "negative", f"value {shown}", num, comparator, unit_s
            )
    if interpretation:
        for interp in as_list(holder.get("interpretation")):
            reading = _reading(match_cc(term, interp), term, list(texts_of(interp)))
            if reading is not None:
                return ValueReading(
                    reading.value, f"interpretation {reading.matched}", equivocal=reading.equivocal
                )
    return ValueReading(None, "")


def _reading(m: Matches, term: Terminology, texts: list[str]) -> ValueReading | None:
    """Polarity from matched result-value concepts; None when the text says nothing of it."""
    values = (C.RESULT_POSITIVE, C.RESULT_NEGATIVE, C.RESULT_DIM)
    if C.RESULT_EQUIVOCAL in m or not m.equivocal.isdisjoint(values):
        return ValueReading(None, "equivocal value", equivocal=True)
    if any(term.cues.of_text(normalise_text(t)) == "equivocal" for t in texts):
        return ValueReading(None, "equivocal value", equivocal=True)
    neg = m.hits.get(C.RESULT_NEGATIVE)
    pos = m.hits.get(C.RESULT_POSITIVE)
    dim = m.hits.get(C.RESULT_DIM)
    if neg is not None and pos is not None:
        return ValueReading(None, "conflicting value")  # "E255K detected, T315I not detected"
    if neg is not None:
        return ValueReading("negative", neg.matched)
    if C.RESULT_POSITIVE in m.negated:
        return ValueReading("negative", "negated positive wording")
    if C.RESULT_NEGATIVE in m.negated:
        return ValueReading(None, "negated negative wording")
    if dim is not None:
        return ValueReading("dim", dim.matched)
    if pos is not None:
        return ValueReading("positive", pos.matched)
    return None
