"""The FHIR shapes every reader reads: references, texts, and the status rules of evidence.

Rules of evidence (house rules): refuted / entered-in-error Conditions, entered-in-error /
cancelled Observations and reports are not evidence; an Observation or report that is only
`registered` has no result yet. A Condition whose verification status is provisional,
differential or unconfirmed is equivocal and is not evidence either.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cds_service.fhir_input import as_list

_TEXT_LIMIT = 80
_BAD_VERIFICATION = frozenset({"refuted", "entered-in-error"})
_EQUIVOCAL_VERIFICATION = frozenset({"provisional", "differential", "unconfirmed"})
_NO_RESULT = frozenset({"entered-in-error", "cancelled", "registered"})


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


def codes_of(cc: Any) -> Iterator[str]:
    """The code strings of a CodeableConcept's codings."""
    if isinstance(cc, dict):
        for coding in as_list(cc.get("coding")):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                yield str(coding["code"])


def short(text: str | None) -> str | None:
    if text is None:
        return None
    t = " ".join(text.split())
    return t if len(t) <= _TEXT_LIMIT else t[: _TEXT_LIMIT - 1] + "…"


def cc_text(cc: Any) -> str | None:
    """The best display text of a CodeableConcept."""
    for t in texts_of(cc):
        return short(t)
    for code in codes_of(cc):
        return code
    return None


def value_texts(holder: dict[str, Any]) -> list[str]:
    """Texts of value[x] (CodeableConcept text/displays, string)."""
    out: list[str] = list(texts_of(holder.get("valueCodeableConcept")))
    vs = holder.get("valueString")
    if isinstance(vs, str) and vs.strip():
        out.append(vs)
    return out


def _coded_status(element: Any) -> str | None:
    if isinstance(element, dict):
        for coding in as_list(element.get("coding")):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                return str(coding["code"]).strip().lower()
        text = element.get("text")
        if isinstance(text, str):
            return text.strip().lower()
    return None


def condition_is_evidence(c: dict[str, Any]) -> bool:
    """Refuted, entered-in-error and unconfirmed (provisional, differential) Conditions are not
    evidence."""
    vs = _coded_status(c.get("verificationStatus"))
    return vs not in _BAD_VERIFICATION and vs not in _EQUIVOCAL_VERIFICATION


def result_is_evidence(resource: dict[str, Any]) -> bool:
    """Entered-in-error, cancelled and registered (no result yet) Observations and reports are
    not evidence."""
    return resource.get("status") not in _NO_RESULT


def clinical_status(c: dict[str, Any]) -> str | None:
    return _coded_status(c.get("clinicalStatus"))
