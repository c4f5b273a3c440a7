"""`cds-service gallery OUT_DIR`: every card the rule set can show, as an EHR shows it.

A static, self-contained site for a CDS or pharmacy-and-therapeutics committee:
OUT_DIR/index.html (a table of the rules: indicator, hooks, status, version, evidence, case
counts) and OUT_DIR/rules/<id>.html per rule the service evaluates (enabled, not retired).
A rule page gives the rule (version, status, evidence levels, condition, citations) and, for
each of its test cases, the case (fixture, hook, order, expected and actual outcome) beside
the card the service returns for it, and the facts that decided it with their provenance.

Cards come from the live path only — `decide.evaluate_bundle` → `cards.CardRenderer`, as
`check` and the service use them — and their Markdown is turned into HTML by the one page
renderer (markdown.py, raw HTML off). Nothing is fetched at view time; pages print cleanly.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from . import wire
from .cards import CardRenderer, fact_view
from .citations import Citation, evidence_entry, reference_entry
from .decide import Decision, evaluate_bundle
from .evaluate import Finding
from .facts.catalogue import FACT_CATALOGUE
from .facts.model import Facts
from .fingerprint import ruleset_fingerprint
from .pages import render_page
from .ruleset.conditions import AllOf, AnyOf, Condition, Leaf, Not
from .ruleset.loader import RuleSet
from .ruleset.schema import CaseSpec, Rule

RULES_SUBDIR = "rules"
MAX_SOURCES = 8
"""Provenance entries listed per fact (the rest are counted)."""
GENERATOR_MARK = '<meta name="generator" content="phall-cds'


@dataclass(frozen=True)
class FactRow:
    name: str
    description: str
    known: bool
    deciding: bool
    value: str
    """Markdown-safe text (rendered inline on the page)."""
    date: str
    end: str
    detail: str
    sources: tuple[tuple[str, str, str], ...]
    """(resource, via, matched) of the first MAX_SOURCES provenance entries."""
    more_sources: int


@dataclass(frozen=True)
class OtherCard:
    rule_id: str
    summary: str
    indicator: str
    page: str | None
    """Relative link to that rule's page, when it has one."""


@dataclass(frozen=True)
class CaseView:
    number: int
    case: CaseSpec
    fixture: str
    error: str | None = None
    fired: bool = False
    branch: str | None = None
    card: dict[str, Any] | None = None
    """This rule's card as it goes on the wire (card.dump())."""
    facts: tuple[FactRow, ...] = ()
    orders: tuple[str, ...] = ()
    """Orders under decision (Markdown-safe text)."""
    others: tuple[OtherCard, ...] = ()

    @property
    def passed(self) -> bool:
        if self.error is not None:
            return False
        if self.case.expect == "silent":
            return not self.fired
        return self.fired and (self.case.branch is None or self.case.branch == self.branch)

    @property
    def anchor(self) -> str:
        return f"case-{self.number}"


@dataclass(frozen=True)
class RulePage:
    rule: Rule
    citations: tuple[Citation, ...]
    cases: tuple[CaseView, ...]
    condition: Markup

    @property
    def filename(self) -> str:
        return f"{RULES_SUBDIR}/{self.rule.id}.html"

    @property
    def fires_cases(self) -> int:
        return sum(1 for c in self.cases if c.case.expect == "fires")

    @property
    def silent_cases(self) -> int:
        return sum(1 for c in self.cases if c.case.expect == "silent")

    @property
    def failed(self) -> int:
        return sum(1 for c in self.cases if not c.passed)


@dataclass
class Gallery:
    pages: list[RulePage]
    not_evaluated: list[Rule]
    fingerprint: str
    generated: str
    rules_dir: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def case_count(self) -> int:
        return sum(len(p.cases) for p in self.pages)


# ---- building ----------------------------------------------------------------------------------


def build_gallery(ruleset: RuleSet, renderer: CardRenderer, cards_dir: Path) -> Gallery:
    """Decide every case of every evaluated rule through the live path."""
    evaluated = [r for r in ruleset.rules if r.evaluated]
    with_pages = {r.id for r in evaluated}
    pages = []
    problems: list[str] = []
    for rule in evaluated:
        views = []
        for number, case in enumerate(rule.cases, start=1):
            view = _case_view(ruleset, renderer, rule, number, case, with_pages)
            if not view.passed:
                what = view.error or (
                    f"expected {case.expect}"
                    + (f" ({case.branch} branch)" if case.branch else "")
                    + f", got {'fires (' + str(view.branch) + ')' if view.fired else 'silent'}"
                )
                problems.append(f"{rule.source}: case {number} ({view.fixture}): {what}")
            views.append(view)
        pages.append(
            RulePage(
                rule=rule,
                citations=tuple(ruleset.citations.get(k) for k in rule.citations),
                cases=tuple(views),
                condition=describe_condition(rule.condition),
            )
        )
    return Gallery(
        pages=pages,
        not_evaluated=[r for r in ruleset.rules if not r.evaluated],
        fingerprint=ruleset_fingerprint(ruleset.rules_dir, cards_dir),
        generated=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        rules_dir=str(ruleset.rules_dir),
        problems=problems,
    )


def _case_view(
    ruleset: RuleSet,
    renderer: CardRenderer,
    rule: Rule,
    number: int,
    case: CaseSpec,
    with_pages: set[str],
) -> CaseView:
    fixture = ruleset.rules_dir.parent / case.fixture
    name = Path(case.fixture).name
    try:
        bundle: Any = json.loads(fixture.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return CaseView(number, case, name, error=f"cannot read the fixture: {exc}")
    if not isinstance(bundle, dict):
        return CaseView(number, case, name, error="the fixture is not a JSON object")
    try:
        decision = evaluate_bundle(ruleset, renderer, bundle, case.hook, case.order, case.as_of)
    except (ValueError, LookupError, TypeError) as exc:
        return CaseView(number, case, name, error=f"a card could not be rendered: {exc}")
    mine = _this_rule(decision, rule)
    finding, card = mine if mine else (None, None)
    others = tuple(
        OtherCard(
            f.rule.id,
            c.summary,
            c.indicator,
            f"{f.rule.id}.html" if f.rule.id in with_pages else None,
        )
        for f, c in zip(decision.findings, decision.cards, strict=True)
        if f.rule.id != rule.id
    )
    return CaseView(
        number,
        case,
        name,
        fired=finding is not None,
        branch=finding.branch if finding else None,
        card=card.dump() if card else None,
        facts=_fact_rows(rule, decision.facts, finding),
        orders=tuple(
            f"{o.ingredient or 'unrecognised drug'}: “{o.text}” ({o.resource})"
            for o in (finding.orders if finding else decision.facts.orders)
        ),
        others=others,
    )


def _this_rule(decision: Decision, rule: Rule) -> tuple[Finding, wire.Card] | None:
    for finding, card in zip(decision.findings, decision.cards, strict=True):
        if finding.rule.id == rule.id:
            return finding, card
    return None


def _fact_rows(rule: Rule, facts: Facts, finding: Finding | None) -> tuple[FactRow, ...]:
    """The facts the rule reads (deciding ones first), with values and provenance."""
    deciding = [f.name for f in finding.facts] if finding else []
    names = [*deciding, *sorted(n for n in rule.facts_read() if n not in deciding)]
    rows = []
    for name in names:
        fact = facts.get(name)
        view = fact_view(name, fact)
        spec = FACT_CATALOGUE.get(name)
        rows.append(
            FactRow(
                name=name,
                description=spec.description if spec else "",
                known=fact.known,
                deciding=name in deciding,
                value=str(view.value),
                date=str(view.date),
                end=str(view.end),
                detail=str(view.detail),
                sources=tuple(
                    (p.resource, p.via, p.matched) for p in fact.provenance[:MAX_SOURCES]
                ),
                more_sources=max(0, len(fact.provenance) - MAX_SOURCES),
            )
        )
    return tuple(rows)


# ---- the rule's condition, for reading ---------------------------------------------------------


def _leaf_text(leaf: Leaf) -> Markup:
    parts = [Markup("<code>{}</code> {}").format(leaf.fact, leaf.op.replace("_", " "))]
    if isinstance(leaf.value, tuple):
        parts.append(escape(", ".join(leaf.value)))
    elif leaf.value is not None:
        parts.append(escape(f"{leaf.value:g}" if isinstance(leaf.value, float) else leaf.value))
    if leaf.days is not None:
        parts.append(escape(f"{leaf.days} days of"))
    if leaf.other is not None:
        parts.append(Markup("<code>{}</code>").format(leaf.other))
    return Markup(" ").join(parts)


def describe_condition(cond: Condition) -> Markup:
    """A rule's `when` as nested lists (all of / any of / not)."""
    if isinstance(cond, Leaf):
        return _leaf_text(cond)
    if isinstance(cond, Not):
        return Markup("not:<ul><li>{}</li></ul>").format(describe_condition(cond.item))
    label = "all of" if isinstance(cond, AllOf) else "any of"
    assert isinstance(cond, AllOf | AnyOf)
    items = Markup("").join(
        Markup("<li>{}</li>").format(describe_condition(item)) for item in cond.items
    )
    return Markup("{}:<ul>{}</ul>").format(label, items)


# ---- writing -----------------------------------------------------------------------------------


def write_gallery(gallery: Gallery, out_dir: Path) -> list[Path]:
    """Write index.html and one page per rule; remove rule pages of an earlier run that no
    longer have a rule. Returns the files written."""
    pages_dir = out_dir / RULES_SUBDIR
    pages_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "index.html"]
    written[0].write_text(
        render_page("gallery_index.html.j2", gallery=gallery, citation_entry=evidence_entry),
        encoding="utf-8",
    )
    for page in gallery.pages:
        path = out_dir / page.filename
        path.write_text(
            render_page(
                "gallery_rule.html.j2",
                gallery=gallery,
                page=page,
                evidence_entry=evidence_entry,
                reference_entry=reference_entry,
                pretty_json=lambda value: json.dumps(value, indent=2, ensure_ascii=False),
            ),
            encoding="utf-8",
        )
        written.append(path)
    keep = {p.name for p in written}
    for stale in pages_dir.glob("*.html"):
        if stale.name not in keep and GENERATOR_MARK in stale.read_text(encoding="utf-8"):
            stale.unlink()
    return written
