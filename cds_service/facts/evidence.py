"""Evidence items and the small readers every extractor shares.

An extractor turns one resource into zero or more `Evidence` items (what it proves, the value,
the date, the provenance); `combine` reduces the items to facts. The readers here know the FHIR
shapes once: references, CodeableConcept matching (code first, then text), status rules of
evidence, dates, and the polarity (positive / negative / dim) of a result value.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cds_service.facts.model import PartialDate, Provenance
from cds_service.fhir_input import Record, as_list
from cds_service.terminology import Code, Terminology

_MIN_DATE = dt.date.min
_TEXT_LIMIT = 80


@dataclass(frozen=True, slots=True)
class Evidence:
    """One resource's contribution to one fact."""

    key: str
    """The fact (catalogue name) or internal key it is evidence for, e.g. "ph", "cns"."""
    value: str
    date: PartialDate | None
    provenance: tuple[Provenance, ...]
    detail: str | None = None
    end: PartialDate | None = None
    number: float | None = None

    def sort_key(self) -> tuple[dt.date, dt.date, str, str, str]:
        d = self.date
        first = self.provenance[0] if self.provenance else Provenance("", "", "")
        return (
            d.start if d else _MIN_DATE,
            d.end if d else _MIN_DATE,
            first.resource,
            first.matched,
            self.value,
        )


@dataclass
class Context:
    """What one extraction run shares: terminology, record, as_of, and the output lists."""

    term: Terminology
    record: Record
    as_of: dt.date | None
    evidence: list[Evidence] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    blinatumomab_refs: set[str] = field(default_factory=set)
    """References of blinatumomab exposure records (for linked response Observations)."""

    def add(
        self,
        key: str,
        value: str,
        date: PartialDate | None,
        provenance: Provenance | tuple[Provenance, ...],
        *,
        detail: str | None = None,
        end: PartialDate | None = None,
        number: float | None = None,
    ) -> None:
        prov = (provenance,) if isinstance(provenance, Provenance) else provenance
        self.evidence.append(Evidence(key, value, date, prov, detail, end, number))


@dataclass(frozen=True, slots=True)
class Hit:
    """How a concept was matched in a CodeableConcept."""

    via: str
    """"code" (or the code's type: "product-code", "atc") or "text"."""
    matched: str
    code: Code | None = None


@dataclass(frozen=True, slots=True)
class Matches:
    """Concepts matched in one CodeableConcept (or text), and those only mentioned negated."""

    hits: dict[str, Hit]
    negated: frozenset[str]

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


EMPTY = Matches({}, frozenset())


def ref_of(resource: dict[str, Any], parent: str | None = None) -> str:
    """ "Type/id" of a resource; "Parent#id" for a contained one."""
    rtype = resource.get("resourceType") or "Resource"
    rid = resource.get("id")
    if parent is not None:
        return f"{parent}#{rid}" if isinstance(rid, str) else f"{parent}#{rtype}"
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid else f"{rtype}/(no id)"


def texts_of(cc: Any) -> Iterator[str]:
    """The text and coding displays of a CodeableConcept (or a bare string)."""
    if isinstance(cc, str):
        yield cc
        return
    if not isinstance(cc, dict):
        return
    text = cc.get("text")
    if isinstance(text, str) and text.strip():
        yield text
    for coding in as_list(cc.get("coding")):
        if isinstance(coding, dict):
            display = coding.get("display")
            if isinstance(display, str) and display.strip():
                yield display


def short(text: str | None) -> str | None:
    if text is None:
        return None
    t = " ".join(text.split())
    return t if len(t) <= _TEXT_LIMIT else t[: _TEXT_LIMIT - 1] + "…"


def cc_text(cc: Any) -> str | None:
    """The best display text of a CodeableConcept."""
    for t in texts_of(cc):
        return short(t)
    if isinstance(cc, dict):
        for coding in as_list(cc.get("coding")):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                return str(coding["code"])
    return None


def _code_via(code: Code) -> str:
    if code.type in ("SCD", "SBD", "GPCK", "BPCK"):
        return "product-code"
    if code.system == "http://www.whocc.no/atc":
        return "atc"
    return "code"


_CC_CACHE_MAX = 20000


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
    for cc in ccs:
        if not isinstance(cc, dict):
            continue
        for coding in as_list(cc.get("coding")):
            if not isinstance(coding, dict):
                continue
            for m in term.match_code(coding.get("system"), coding.get("code")):
                hits.setdefault(m.concept, Hit(_code_via(m.code), m.sent, m.code))
    for cc in ccs:
        for text in texts_of(cc):
            _add_text(term, text, hits, negated)
    return Matches(hits, frozenset(negated - set(hits)))


def match_texts(term: Terminology, texts: Iterable[str]) -> Matches:
    """Concepts matched in free texts (no codes); memoised like match_cc."""
    key = ("texts", tuple(texts))
    cached = term.memo.get(key)
    if isinstance(cached, Matches):
        return cached
    result = _match_texts(term, key[1])
    if len(term.memo) >= _CC_CACHE_MAX:
        term.memo.clear()
    term.memo[key] = result
    return result


def _match_texts(term: Terminology, texts: tuple[str, ...]) -> Matches:
    hits: dict[str, Hit] = {}
    negated: set[str] = set()
    for text in texts:
        _add_text(term, text, hits, negated)
    return Matches(hits, frozenset(negated - set(hits)))


def _add_text(term: Terminology, text: str, hits: dict[str, Hit], negated: set[str]) -> None:
    for tm in term.match_text(text):
        if tm.negated:
            negated.add(tm.concept)
        else:
            hits.setdefault(tm.concept, Hit("text", f'text "{tm.synonym}"'))


# -- rules of evidence ----------------------------------------------------------------------

_BAD_VERIFICATION = frozenset({"refuted", "entered-in-error"})
_BAD_OBSERVATION = frozenset({"entered-in-error", "cancelled"})


def condition_is_evidence(c: dict[str, Any]) -> bool:
    """Refuted or entered-in-error Conditions are not evidence."""
    vs = c.get("verificationStatus")
    if isinstance(vs, dict):
        for coding in as_list(vs.get("coding")):
            if isinstance(coding, dict) and coding.get("code") in _BAD_VERIFICATION:
                return False
        text = vs.get("text")
        if isinstance(text, str) and text.strip().lower() in _BAD_VERIFICATION:
            return False
    return True


def observation_is_evidence(o: dict[str, Any]) -> bool:
    """Entered-in-error or cancelled Observations are not evidence."""
    return o.get("status") not in _BAD_OBSERVATION


def clinical_status(c: dict[str, Any]) -> str | None:
    cs = c.get("clinicalStatus")
    if isinstance(cs, dict):
        for coding in as_list(cs.get("coding")):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                return str(coding["code"])
        text = cs.get("text")
        if isinstance(text, str):
            return text.strip().lower()
    return None


# -- dates ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> PartialDate | None:
    return PartialDate.parse(text)


def parse_date(ctx: Context, value: Any, where: str) -> PartialDate | None:
    """PartialDate of a FHIR date string; an unparseable one is noted in issues."""
    if value is None:
        return None
    parsed = _parse(value) if isinstance(value, str) else None
    if parsed is None:
        ctx.issues.append(f"{where}: unparseable date, ignored")
    return parsed


def first_date(ctx: Context, resource: dict[str, Any], ref: str, *paths: str) -> PartialDate | None:
    """The first present date among dotted paths ("effectivePeriod.start", "issued" …)."""
    for path in paths:
        value: Any = resource
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            parsed = parse_date(ctx, value, f"{ref} {path}")
            if parsed is not None:
                return parsed
    return None


def observation_date(ctx: Context, o: dict[str, Any], ref: str) -> PartialDate | None:
    return first_date(
        ctx, o, ref, "effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"
    )


def condition_date(ctx: Context, c: dict[str, Any], ref: str) -> PartialDate | None:
    return first_date(
        ctx, c, ref, "onsetDateTime", "onsetPeriod.start", "onsetString", "recordedDate"
    )


def procedure_date(ctx: Context, p: dict[str, Any], ref: str) -> PartialDate | None:
    return first_date(ctx, p, ref, "performedDateTime", "performedPeriod.start", "performedString")


# -- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Polarity:
    """Reading of a result value: "positive", "negative", "dim", or None (not readable)."""

    value: str | None
    matched: str
    number: float | None = None
    comparator: str | None = None
    unit: str | None = None


def value_texts(holder: dict[str, Any]) -> list[str]:
    """Texts of value[x] (CodeableConcept text/displays, string)."""
    out: list[str] = list(texts_of(holder.get("valueCodeableConcept")))
    vs = holder.get("valueString")
    if isinstance(vs, str) and vs.strip():
        out.append(vs)
    return out


def polarity(term: Terminology, holder: dict[str, Any]) -> Polarity:
    """Polarity of an Observation's (or component's) value, then of its interpretation."""
    vcc = holder.get("valueCodeableConcept")
    if isinstance(vcc, dict):
        m = match_cc(term, vcc)
        pol = _polarity_from(m)
        if pol is not None:
            return pol
    vs = holder.get("valueString")
    if isinstance(vs, str):
        pol = _polarity_from(match_texts(term, [vs]))
        if pol is not None:
            return pol
    vb = holder.get("valueBoolean")
    if isinstance(vb, bool):
        return Polarity("positive" if vb else "negative", f"valueBoolean {str(vb).lower()}")
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
                return Polarity("negative", f"value {shown}", num, comparator, unit_s)
            return Polarity(
                "positive" if num > 0 else "negative", f"value {shown}", num, comparator, unit_s
            )
    for interp in as_list(holder.get("interpretation")):
        pol = _polarity_from(match_cc(term, interp))
        if pol is not None:
            return Polarity(pol.value, f"interpretation {pol.matched}")
    return Polarity(None, "")


def _polarity_from(m: Matches) -> Polarity | None:
    neg = m.hits.get("result_negative")
    pos = m.hits.get("result_positive")
    dim = m.hits.get("result_dim")
    negated_pos = "result_positive" in m.negated
    if neg is not None and pos is not None:
        return None  # "E255K detected, T315I not detected": not one polarity
    if neg is not None:
        return Polarity("negative", neg.matched)
    if negated_pos:
        return Polarity("negative", "negated positive wording")
    if dim is not None:
        return Polarity("dim", dim.matched)
    if pos is not None:
        return Polarity("positive", pos.matched)
    return None
