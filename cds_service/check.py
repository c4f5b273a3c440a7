"""`cds-service check`: load and lint the rule set, run every rule's cases, render every card.

The check fails (exit non-zero) on any of:

* a load error (the same errors that stop the service from starting);
* a rule case that does not behave as declared: a `fires` case must produce that rule's card
  (on the declared branch, if given), a `silent` case must not;
* a card that cannot be rendered, that fails strict wire validation, whose summary is 140
  characters or more, that links a citation identifier that is not verified, that mentions a
  forbidden DOI, whose text does not cite each of the rule's sources beside a claim, or whose
  wording reads as an order to the clinician rather than advice.

Fixtures are read from the repository (`<rules_dir>/../fhir_fixtures/...`); they are not part
of an installed service, so `check` is a development and CI tool.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import wire
from .cards import FALLBACK_DETAIL, SUMMARY_MAX, CardRenderer, offer_key, value_display
from .citations import Registry, doi_url, evidence_tag, forbidden_hit, pubmed_url
from .decide import Decision, evaluate_bundle
from .errors import CDSError, RuleSetError
from .facts.catalogue import FACT_CATALOGUE
from .ruleset.loader import RuleSet, load_ruleset
from .ruleset.schema import CaseSpec, Rule
from .ruleset.templating import template_file

EVIDENCE_HEADING = "\n\n**Evidence**"

# Wording that orders rather than advises. Applied to summaries and the template-written part
# of each card (not to citation titles, which are quoted).
DIRECTIVE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bmust\b", re.I), "'must'"),
    (
        re.compile(r"\b(do not|don't|never)\s+(give|use|order|start|prescribe)\b", re.I),
        "a prohibition",
    ),
    (
        re.compile(
            r"(^|[.!?:;]\s+|\n[-*]\s+|\n)(order|give|start|stop|switch|use|avoid|"
            r"administer|prescribe|discontinue|add|increase|reduce|hold)\b",
            re.I,
        ),
        "a sentence that opens with an order",
    ),
)


@dataclass
class RuleRow:
    rule_id: str
    version: str
    indicator: str
    enabled: bool
    status: str = "active"
    cases_total: int = 0
    cases_passed: int = 0
    longest_summary: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    rows: list[RuleRow]
    errors: list[str]
    """Problems not tied to one rule's cases (load errors)."""

    @property
    def ok(self) -> bool:
        return not self.errors and all(not r.problems for r in self.rows) and bool(self.rows)

    @property
    def problems(self) -> list[str]:
        return [*self.errors, *(p for r in self.rows for p in r.problems)]

    def format(self) -> str:
        lines: list[str] = []
        if self.rows:
            lines.append(
                f"{'rule':40} {'version':8} {'indicator':9} {'cases':>7} {'summary':>8}  status"
            )
            for r in self.rows:
                status = "ok" if not r.problems else f"FAIL ({len(r.problems)})"
                if not r.enabled:
                    status += " [disabled]"
                if r.status != "active":
                    status += f" [{r.status}]"
                lines.append(
                    f"{r.rule_id:40} {r.version:8} {r.indicator:9} "
                    f"{f'{r.cases_passed}/{r.cases_total}':>7} {r.longest_summary:>8}  {status}"
                )
        problems = self.problems
        if problems:
            lines.append("")
            lines.append(f"{len(problems)} problem{'s' * (len(problems) != 1)}:")
            lines.extend(f"  {p}" for p in problems)
        total = sum(r.cases_total for r in self.rows)
        passed = sum(r.cases_passed for r in self.rows)
        verdict = "OK" if self.ok else "FAILED"
        lines.append("")
        lines.append(f"{verdict}: {len(self.rows)} rules, {passed}/{total} cases passed")
        return "\n".join(lines)


def run_check(rules_dir: Path, cards_dir: Path) -> CheckReport:
    """Load, lint, run every rule case and render every card; never raises on a bad rule set."""
    try:
        ruleset = load_ruleset(rules_dir, cards_dir)
        renderer = CardRenderer(ruleset, cards_dir)
    except RuleSetError as exc:
        return CheckReport([], [exc.message, *exc.details])
    except CDSError as exc:
        return CheckReport([], [str(exc)])
    rows = []
    for rule in ruleset.rules:
        row = RuleRow(rule.id, rule.version, rule.indicator, rule.enabled, rule.status)
        row.problems.extend(lint_rule_text(rule, ruleset.citations, cards_dir))
        # a disabled or retired rule's cases still run (as if it were active, the others as
        # they are): a rule is checked before it is switched on, and stays correct after
        trial = ruleset if rule.evaluated else _as_active(ruleset, rule)
        for index, case in enumerate(rule.cases):
            _run_case(trial, renderer, trial.rule(rule.id), index, case, row)
        rows.append(row)
    return CheckReport(rows, [])


def _as_active(ruleset: RuleSet, rule: Rule) -> RuleSet:
    active = dataclasses.replace(rule, enabled=True, status="active")
    rules = tuple(active if r.id == rule.id else r for r in ruleset.rules)
    return dataclasses.replace(ruleset, rules=rules)


_VALUE_TEST = re.compile(r"facts\[['\"]([\w.]+)['\"]\]\.value\s*(?:==|!=)\s*['\"]([^'\"]*)['\"]")


def lint_rule_text(rule: Rule, registry: Registry, cards_dir: Path) -> list[str]:
    """Forbidden DOIs anywhere in the rule or its template; a template that compares a fact's
    value with a value the fact can never show."""
    out: list[str] = []
    texts = [rule.title, rule.description, rule.card.summary]
    path = template_file(cards_dir, rule.card.template)
    try:
        template = path.read_text(encoding="utf-8")
        texts.append(template)
    except OSError as exc:  # pragma: no cover - the loader checked it exists
        out.append(f"{rule.source}: cannot read {path.name}: {exc}")
        template = ""
    for text in texts:
        hit = forbidden_hit(registry, text)
        if hit is not None:
            out.append(f"{rule.source}: mentions forbidden DOI {hit.doi}: {hit.reason}")
    for text, where in ((template, path.name), (rule.card.summary, f"{rule.source} summary")):
        for name, literal in _VALUE_TEST.findall(text):
            spec = FACT_CATALOGUE.get(name)
            if spec is None or not spec.values:
                continue
            shown = {value_display(v) for v in spec.values}
            if literal not in shown:
                out.append(
                    f"{where}: compares {name} with '{literal}', which it never shows "
                    f"(one of: {', '.join(sorted(shown))})"
                )
    return out


def _case_label(rule: Rule, index: int, case: CaseSpec) -> str:
    order = f", order={case.order}" if case.order else ""
    return f"{rule.source}: cases[{index}] ({Path(case.fixture).name}, {case.hook}{order})"


def _run_case(
    ruleset: RuleSet, renderer: CardRenderer, rule: Rule, index: int, case: CaseSpec, row: RuleRow
) -> None:
    row.cases_total += 1
    label = _case_label(rule, index, case)
    fixture = ruleset.rules_dir.parent / case.fixture
    try:
        bundle: Any = json.loads(fixture.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        row.problems.append(f"{label}: cannot read the fixture: {exc}")
        return
    if not isinstance(bundle, dict):
        row.problems.append(f"{label}: the fixture is not a JSON object")
        return
    try:
        decision = evaluate_bundle(ruleset, renderer, bundle, case.hook, case.order, case.as_of)
    except (ValidationError, ValueError, LookupError, TypeError) as exc:
        row.problems.append(f"{label}: a card could not be rendered: {exc}")
        return
    problems = card_problems(ruleset, renderer, decision)
    findings = [f for f in decision.findings if f.rule.id == rule.id]
    if case.expect == "fires":
        if not findings:
            fired = ", ".join(f.rule.id for f in decision.findings) or "none"
            problems.append(f"expected '{rule.id}' to fire; it stayed silent (fired: {fired})")
        elif case.branch is not None and findings[0].branch != case.branch:
            problems.append(f"expected the {case.branch} branch, got {findings[0].branch}")
    elif findings:
        problems.append(f"expected silence; '{rule.id}' fired ({findings[0].branch} branch)")
    for finding in findings:
        row.longest_summary = max(
            row.longest_summary, len(renderer.full_summary(finding, decision.facts))
        )
    if problems:
        row.problems.extend(f"{label}: {p}" for p in problems)
    else:
        row.cases_passed += 1


def card_problems(ruleset: RuleSet, renderer: CardRenderer, decision: Decision) -> list[str]:
    """Everything wrong with the cards of one decision (empty when all is well)."""
    out: list[str] = []
    by_uuid = {c.uuid: c for c in decision.cards}
    for finding, card in zip(decision.findings, decision.cards, strict=True):
        rule = finding.rule
        where = f"card of '{rule.id}'"
        if decision.card_rules.get(card.uuid) != (rule.id, rule.version):
            out.append(f"{where}: not mapped to its rule and version")
        summary = renderer.full_summary(finding, decision.facts)
        if len(summary) > SUMMARY_MAX:
            out.append(f"{where}: summary has {len(summary)} characters (limit {SUMMARY_MAX})")
        try:
            wire.Card.model_validate(card.dump())
        except ValidationError as exc:
            out.append(f"{where}: not a valid card: {exc.error_count()} error(s)")
        if card.indicator != rule.indicator_for(finding.branch):
            out.append(f"{where}: indicator {card.indicator} is not the rule's")
        detail = card.detail or ""
        if FALLBACK_DETAIL in detail:
            out.append(f"{where}: the template failed to render")
        body = detail.split(EVIDENCE_HEADING, 1)[0]
        for key in rule.citations:
            if evidence_tag(ruleset.citations.get(key)) not in body:
                out.append(f"{where}: the text never cites '{key}' beside a claim (use cite())")
        out.extend(f"{where}: {p}" for p in _unverified_links(ruleset, rule, card))
        hit = forbidden_hit(ruleset.citations, card.model_dump_json())
        if hit is not None:
            out.append(f"{where}: mentions forbidden DOI {hit.doi}")
        for pattern, what in DIRECTIVE_PATTERNS:
            for text, part in ((summary, "summary"), (body, "text")):
                match = pattern.search(text)
                if match:
                    out.append(
                        f"{where}: {part} reads as an order ({what}: "
                        f"'{match.group(0).strip()}'); use advisory wording"
                    )
    if len(by_uuid) != len(decision.cards):
        out.append("two cards share a uuid")
    out.extend(_decision_overlap(decision))
    return out


_SENTENCE_MIN = 40
"""Sentences shorter than this may repeat across cards (e.g. a closing "Consider …")."""
_INTERNAL_NAME = re.compile(r"\b[a-z0-9]+_[a-z0-9_]+\b")
_CODE_SPANS = re.compile(r"`[^`]*`|\]\([^)]*\)|https?://\S+")


def _card_text(card: wire.Card) -> str:
    """The template-written part of a card (before the sections the renderer adds)."""
    return (card.detail or "").split(EVIDENCE_HEADING, 1)[0]


def _sentences(text: str) -> list[tuple[str, bool]]:
    """(sentence, opens a sentence): list items after a line ending in ':' continue it."""
    out: list[tuple[str, bool]] = []
    continues = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continues = False
            continue
        item = line.startswith("- ")
        line = line.removeprefix("- ").strip()
        for i, part in enumerate(re.split(r"(?<=[.!?])\s+(?=[A-Z*])", line)):
            part = part.strip()
            if part:
                out.append((part, not (i == 0 and item and continues)))
        if line.endswith(":"):
            continues = True
        elif not item:
            continues = False
    return out


def _decision_overlap(decision: Decision) -> list[str]:
    """Two cards of one decision offering the same draft, or repeating the same sentence;
    sentences that open in lower case; internal names (snake_case) in card text."""
    out: list[str] = []
    offers: dict[str, str] = {}
    said: dict[str, str] = {}
    cited: dict[str, str] = {}
    for finding, card in zip(decision.findings, decision.cards, strict=True):
        rid = finding.rule.id
        for key in finding.rule.citations:
            first = cited.setdefault(key, rid)
            if first != rid:
                # the same source's figures on two cards the clinician reads together
                out.append(
                    f"cards of '{first}' and '{rid}' both cite '{key}': merge or cross-reference"
                )
        for suggestion in card.suggestions or []:
            for action in suggestion.actions or []:
                key, what = offer_key(action.resource)
                if key in offers:
                    out.append(f"cards of '{offers[key]}' and '{rid}' both offer the draft {what}")
                offers.setdefault(key, rid)
        text = _card_text(card)
        for sentence, opens in _sentences(text):
            if len(sentence) >= _SENTENCE_MIN:
                first = said.setdefault(sentence, rid)
                if first != rid:
                    out.append(f"cards of '{first}' and '{rid}' repeat: “{sentence[:80]}…”")
            start = re.sub(r"^[*_(“\"]+", "", sentence)
            if opens and start[:1].islower():
                out.append(f"card of '{rid}': a sentence starts in lower case: “{sentence[:60]}”")
        for part, where in ((card.summary, "summary"), (_CODE_SPANS.sub(" ", text), "text")):
            for name in _INTERNAL_NAME.findall(part):
                out.append(f"card of '{rid}': {where} shows an internal name '{name}'")
    return out


def _unverified_links(ruleset: RuleSet, rule: Rule, card: wire.Card) -> list[str]:
    """Links (or the source URL) that point at an identifier which is not verified."""
    out: list[str] = []
    urls = [link.url for link in card.links or []]
    if card.source.url:
        urls.append(card.source.url)
    detail = card.detail or ""
    for key in rule.citations:
        c = ruleset.citations.get(key)
        bad: list[str] = []
        if c.doi is not None and c.doi.status != "verified":
            bad.append(doi_url(c.doi.value))
        if c.pmid is not None and c.pmid.status != "verified":
            bad.append(pubmed_url(c.pmid.value))
        if c.url is not None and c.url.status != "verified":
            bad.append(c.url.value)
        for url in bad:
            if url in urls or f"]({url})" in detail:
                out.append(f"links {url}, an identifier of '{key}' that is not verified")
    return out
