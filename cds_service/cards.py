"""Rendering a finding into a CDS Hooks card (`wire.Card`).

Templates say what the card claims, in advisory words; the renderer adds, to every card, what
must never depend on a template author remembering it:

* the source (the rule's primary citation, linked only through a verified identifier);
* an absolute link to every verified DOI / PubMed record / URL the rule cites;
* an evidence section — level, design and n of every cited source — right below the claim;
* a "Why this card" section listing the facts that fired it, with values, dates and the
  resources they came from, and the order(s) that triggered it;
* the suggestions (FHIR resources rendered from the rule and validated as R4 by `wire`) and
  the override reasons.

Patient-derived text reaches templates only Markdown-escaped (see ruleset/templating.py).
Templates and summaries are compiled once, when the renderer is built. If a template still
fails at run time, the card is not lost: it is rendered with a fixed text and the sections
above, and the failure is logged with the rule id only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import Template, TemplateError

from . import wire
from .citations import (
    Citation,
    evidence_entry,
    evidence_tag,
    primary_url,
    reference_entry,
    verified_links,
)
from .evaluate import Finding
from .facts.catalogue import FACT_CATALOGUE
from .facts.model import Fact, Facts, OrderedItem
from .ruleset.loader import RuleSet
from .ruleset.schema import Rule
from .ruleset.templating import (
    Trusted,
    compile_detail,
    compile_resource,
    compile_summary,
    detail_environment,
    fill_resource,
    md_code,
    md_escape,
    summary_environment,
)

log = logging.getLogger("cds_service.cards")

SUMMARY_MAX = 139
FALLBACK_DETAIL = (
    "The explanatory text of this card could not be produced; the evidence and the facts "
    "that triggered it are listed below."
)
UNKNOWN_BRANCH_NOTE = (
    "Some data this rule needs was not found in the record, so it could not decide; it is "
    "set to show this card in that case."
)
_MAX_RESOURCES = 5
_NO_FACT = Fact(None)

__all__ = ["CardRenderer", "md_escape"]


_DRUG_DISPLAY = {"cd19_cart_unnamed": "CD19 CAR-T (product not named)"}


def drug_name(ingredient: str) -> str:
    """Display form of a canonical ingredient name (never an internal name)."""
    return _DRUG_DISPLAY.get(ingredient, ingredient.replace("_", " "))


def join_words(words: Sequence[str]) -> str:
    items = list(dict.fromkeys(words))
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def value_display(value: str) -> str:
    """How a declared fact value reads on a card and in a template's `.value`
    ("no_relapse_recorded" → "no relapse recorded")."""
    return value.replace("_", " ")


@dataclass(frozen=True)
class FactView:
    """What a detail template may read of one fact (strings already Markdown-safe)."""

    name: str
    known: bool
    value: Trusted
    date: Trusted
    end: Trusted
    detail: Trusted
    resources: Trusted
    sources: Trusted
    """Resources with what matched in each ("Observation/1 (code loinc|46434-7)")."""


@dataclass(frozen=True)
class SummaryFact:
    """What a summary template may read of a fact: no patient text, only declared values
    and dates (summaries are plain text)."""

    known: bool
    value: str
    date: str


def summary_fact(name: str, fact: Fact) -> SummaryFact:
    value = fact.value
    declared = FACT_CATALOGUE[name].values
    if isinstance(value, frozenset):
        shown = ", ".join(drug_name(v) for v in sorted(value)) if declared else ""
    elif isinstance(value, str) and value in declared:
        shown = value_display(value)
    elif isinstance(value, float):
        shown = f"{value:g}"
    else:
        shown = ""
    return SummaryFact(fact.known, shown, fact.date.text if fact.date else "")


@dataclass(frozen=True)
class OrderView:
    ingredient: Trusted
    text: Trusted
    resource: Trusted


def fact_value_text(name: str, fact: Fact) -> Trusted:
    """Markdown-safe display of a fact's value; open sets (e.g. mutations) are escaped."""
    value = fact.value
    if isinstance(value, frozenset):
        members = sorted(value)
        if not FACT_CATALOGUE[name].values:
            return Trusted(", ".join(md_escape(m) for m in members))
        return Trusted(", ".join(drug_name(m) for m in members))
    if value is None:
        return Trusted("unknown")
    if isinstance(value, float):
        return Trusted(f"{value:g}")
    if value in FACT_CATALOGUE[name].values:
        return Trusted(value_display(value))  # a declared value: text of ours, shown plainly
    return md_escape(value)


T = TypeVar("T", bound=Hashable)


def _first_unique(items: Iterable[T], limit: int) -> list[T]:
    """The first `limit` distinct items, without walking the rest (provenance can be long)."""
    seen: dict[T, None] = {}
    for item in items:
        seen.setdefault(item, None)
        if len(seen) == limit:
            break
    return list(seen)


def fact_view(name: str, fact: Fact) -> FactView:
    refs = _first_unique((p.resource for p in fact.provenance), _MAX_RESOURCES)
    sources = [
        f"{md_code(p.resource)} ({p.via}: {md_code(p.matched)})"
        for p in _first_unique(fact.provenance, _MAX_RESOURCES)
    ]
    return FactView(
        name=name,
        known=fact.known,
        value=fact_value_text(name, fact),
        date=Trusted(fact.date.text) if fact.date else Trusted(""),
        end=Trusted(fact.end.text) if fact.end else Trusted(""),
        detail=md_escape(fact.detail) if fact.detail else Trusted(""),
        resources=Trusted(", ".join(md_code(r) for r in refs)),
        sources=Trusted("; ".join(sources)),
    )


def order_view(order: OrderedItem) -> OrderView:
    return OrderView(
        ingredient=Trusted(drug_name(order.ingredient)) if order.ingredient else Trusted(""),
        text=md_escape(order.text),
        resource=md_code(order.resource),
    )


@dataclass(frozen=True)
class _Compiled:
    detail: Template
    summary: Template
    unknown_summary: Template | None
    resources: tuple[Any, ...]


class CardRenderer:
    """Turns findings into strict `wire.Card`s; every template is compiled here, once."""

    def __init__(self, ruleset: RuleSet, cards_dir: Path) -> None:
        self.ruleset = ruleset
        self._detail_env = detail_environment(cards_dir)
        self._summary_env = summary_environment()
        self._compiled: dict[str, _Compiled] = {}
        for rule in ruleset.rules:
            unknown = rule.when_unknown.summary if rule.when_unknown is not None else None
            self._compiled[rule.id] = _Compiled(
                detail=compile_detail(self._detail_env, rule.card.template),
                summary=compile_summary(self._summary_env, rule.card.summary),
                unknown_summary=(
                    compile_summary(self._summary_env, unknown) if unknown is not None else None
                ),
                resources=tuple(
                    compile_resource(self._summary_env, s.resource) for s in rule.suggestions
                ),
            )

    # -- public ------------------------------------------------------------------------------

    def render(
        self,
        finding: Finding,
        facts: Facts,
        *,
        patient: str | None = None,
        offered: dict[str, str] | None = None,
    ) -> wire.Card:
        """The card of one finding. `patient` ("Patient/x") is needed for suggestions.

        `offered` (draft resource → summary of the card offering it), shared by the cards of
        one decision, keeps two cards from offering the same draft order: a later card names
        the card that offers it instead."""
        rule = finding.rule
        compiled = self._compiled[rule.id]
        citations = [self.ruleset.citations.get(key) for key in rule.citations]
        summary = self._summary(finding, facts)
        try:
            body = compiled.detail.render(self._detail_context(finding, facts)).strip()
        except (TemplateError, LookupError, TypeError, ValueError) as exc:
            log.warning(
                "card template failed; fixed text used",
                extra={"rule": rule.id, "error": type(exc).__name__},
            )
            body = FALLBACK_DETAIL
        suggestions, elsewhere = self._suggestions(rule, compiled, patient, offered, summary)
        for what, where in elsewhere:
            body += f"\n\nThe draft {md_escape(what)} is offered on the card “{md_escape(where)}”."
        detail = self._detail(body, finding, citations)
        primary = citations[0]
        links = self._links(citations)
        return wire.Card(
            summary=summary,
            detail=detail,
            indicator=finding.indicator,
            source=wire.Source(label=primary.short, url=primary_url(primary)),
            suggestions=suggestions or None,
            selectionBehavior="any" if suggestions else None,
            overrideReasons=[
                wire.OverrideReason(code=o.code, system=o.system, display=o.display)
                for o in rule.override_reasons
            ]
            or None,
            links=links or None,
        )

    # -- parts -------------------------------------------------------------------------------

    def full_summary(self, finding: Finding, facts: Facts | None = None) -> str:
        """The summary as its template renders it, before any cut to 139 characters."""
        compiled = self._compiled[finding.rule.id]
        template = compiled.summary
        if finding.branch == "unknown" and compiled.unknown_summary is not None:
            template = compiled.unknown_summary
        ordered = join_words([drug_name(o.ingredient) for o in finding.orders if o.ingredient])
        names = {*finding.rule.facts_read(), *(f.name for f in finding.facts)}
        seen = {f.name: f.fact for f in finding.facts}
        views = {
            n: summary_fact(n, facts.get(n) if facts is not None else seen.get(n, _NO_FACT))
            for n in sorted(names)
        }
        context = {"ordered": ordered, "branch": finding.branch, "drug": drug_name, "facts": views}
        try:
            text = " ".join(template.render(context).split())
        except TemplateError:
            text = ""
        return text or finding.rule.title

    def _summary(self, finding: Finding, facts: Facts) -> str:
        text = self.full_summary(finding, facts)
        if len(text) > SUMMARY_MAX:
            text = text[: SUMMARY_MAX - 1].rstrip() + "…"
        return text

    def _detail_context(self, finding: Finding, facts: Facts) -> dict[str, Any]:
        rule = finding.rule
        names = [*rule.facts_read(), *(f.name for f in finding.facts)]
        views = {name: fact_view(name, facts.get(name)) for name in sorted(set(names))}
        allowed = {key: self.ruleset.citations.get(key) for key in rule.citations}
        return {
            "facts": views,
            "orders": [order_view(o) for o in finding.orders],
            "ordered": Trusted(
                join_words([drug_name(o.ingredient) for o in finding.orders if o.ingredient])
            ),
            "branch": finding.branch,
            "fired": [f.name for f in finding.facts],
            "cite": _citer(allowed),
            "drug": lambda name: Trusted(drug_name(str(name))),
        }

    def _detail(self, body: str, finding: Finding, citations: list[Citation]) -> str:
        parts = [body]
        if finding.branch == "unknown":
            parts.append(f"*{UNKNOWN_BRANCH_NOTE}*")
        parts.append(
            "**Evidence** (level, design, size):\n"
            + "\n".join(f"- {evidence_entry(c)}" for c in citations)
        )
        parts.append("**Why this card**\n" + "\n".join(_why_lines(finding)))
        parts.append("**References**\n" + "\n".join(f"- {reference_entry(c)}" for c in citations))
        return "\n\n".join(parts)

    def _links(self, citations: list[Citation]) -> list[wire.Link]:
        out: list[wire.Link] = []
        seen: set[str] = set()
        for c in citations:
            for label, url in verified_links(c):
                if url not in seen:
                    seen.add(url)
                    out.append(wire.Link(label=label, url=url, type="absolute"))
        return out

    def _suggestions(
        self,
        rule: Rule,
        compiled: _Compiled,
        patient: str | None,
        offered: dict[str, str] | None,
        summary: str,
    ) -> tuple[list[wire.Suggestion], list[tuple[str, str]]]:
        """The card's suggestions, and (what, card summary) of those another card offers."""
        if not rule.suggestions or patient is None:
            return [], []
        out: list[wire.Suggestion] = []
        elsewhere: list[tuple[str, str]] = []
        for spec, resource in zip(rule.suggestions, compiled.resources, strict=True):
            filled = fill_resource(resource, {"patient_reference": patient})
            key, what = offer_key(filled)
            if offered is not None:
                if key in offered:
                    elsewhere.append((what, offered[key]))
                    continue
                offered[key] = summary
            out.append(
                wire.Suggestion(
                    label=spec.label,
                    isRecommended=True if spec.recommended else None,
                    actions=[
                        wire.Action(type="create", description=spec.description, resource=filled)
                    ],
                )
            )
        return out, elsewhere


def offer_key(resource: Any) -> tuple[str, str]:
    """What a draft resource orders, as a comparison key and a short description."""
    if not isinstance(resource, dict):
        return repr(resource), "request"
    code = resource.get("code")
    text = code.get("text") if isinstance(code, dict) else None
    codings = code.get("coding") if isinstance(code, dict) else None
    key = json.dumps([resource.get("resourceType"), text, codings], sort_keys=True, default=str)
    kind = "request" if resource.get("resourceType") == "ServiceRequest" else "order"
    return key, f"{kind} for {text}" if isinstance(text, str) and text else kind


def _citer(allowed: dict[str, Citation]) -> Callable[[str], Trusted]:
    def cite(key: str) -> Trusted:
        if key not in allowed:
            raise LookupError(f"template cites '{key}', which the rule does not list")
        return Trusted(evidence_tag(allowed[key]))

    return cite


def _why_lines(finding: Finding) -> list[str]:
    lines: list[str] = []
    for order in finding.orders:
        ov = order_view(order)
        what = ov.ingredient or Trusted("unrecognised drug")
        lines.append(f"- Order under decision: {what} — “{ov.text}” ({ov.resource})")
    for fired in finding.facts:
        view = fact_view(fired.name, fired.fact)
        if not view.known:
            lines.append(f"- `{fired.name}`: not in the coded data received")
            continue
        text = f"- `{fired.name}`: {view.value}"
        if view.detail:
            text += f" ({view.detail})"
        if view.date:
            text += f", {view.date}" + (f" to {view.end}" if view.end else "")
        if view.sources:
            text += f" — from {view.sources}"
        lines.append(text)
    if not lines:
        lines.append("- No patient data was needed for this card.")
    return lines
