"""Loading the rule set: every rule file, the citation registry and the card templates.

`load_ruleset` reads rules/*.yaml (one rule per file, named after its id) and
rules/citations.yaml, checks each rule against the fact catalogue, the citation registry and
the card templates, and either returns a `RuleSet` or raises `RuleSetError` listing *every*
problem, one per line, as `rules/x.yaml:13: when.all[1].op: unknown operator 'eqals'`.
The service refuses to start on such an error. Test-case fixtures are checked by `check`,
not here: an installed service ships without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from pydantic import ValidationError

from ..citations import Registry, parse_registry, verified_links
from ..errors import RuleSetError
from ..facts.catalogue import FACT_CATALOGUE
from ..facts.concepts import missing_concepts
from ..facts.model import DRUG_CLASSES, INGREDIENTS
from ..facts.parameters import FactParameters, default_parameters, load_parameters
from ..terminology import Terminology, default_terminology, load_valuesets
from ..wire import validate_fhir_resource
from ..yaml_source import FileReport as _Report
from ..yaml_source import KeyPath
from ..yaml_source import pydantic_problems as _pydantic_problems
from ..yaml_source import read_yaml_file as _read
from .conditions import Problem, parse_condition, unknown_fact_message
from .schema import ORDER_HOOKS, Rule, RuleFile
from .templating import (
    compile_detail,
    compile_resource,
    compile_summary,
    detail_environment,
    fill_resource,
    summary_environment,
    template_file,
)

CITATIONS_FILE = "citations.yaml"
PARAMETERS_FILE = "facts.yaml"
_NOT_RULES = frozenset({CITATIONS_FILE, PARAMETERS_FILE})
VALUESETS_DIR = "valuesets"
SAMPLE_PATIENT = "Patient/example"
"""Patient reference used to validate suggestion resources at load time."""


@dataclass(frozen=True)
class RuleSet:
    """The loaded rules (enabled or not) and the citation registry they cite."""

    rules: tuple[Rule, ...]
    citations: Registry
    rules_dir: Path
    terminology: Terminology
    """The value sets under this rule set's valuesets/ folder: what extraction matches with."""
    fact_parameters: FactParameters
    """The reducers' windows and thresholds: this rule set's facts.yaml (or the bundled one)."""

    def enabled(self, hook: str) -> tuple[Rule, ...]:
        """Rules the service evaluates for `hook` (enabled, not retired), in id order."""
        return tuple(r for r in self.rules if r.evaluated and hook in r.hooks)

    def facts_for_hook(self, hook: str) -> frozenset[str]:
        """Fact names the enabled rules of `hook` read (discovery derives prefetch from it)."""
        names: set[str] = set()
        for rule in self.enabled(hook):
            names |= rule.facts_read()
        return frozenset(names)

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


def _display(rules_dir: Path, file: Path) -> str:
    return f"{rules_dir.name}/{file.name}"


def _load_registry(rules_dir: Path, errors: list[str]) -> Registry | None:
    file = rules_dir / CITATIONS_FILE
    report = _Report(_display(rules_dir, file), None)
    if not file.is_file():
        errors.append(f"{report.display}:1: the citation registry is missing")
        return None
    doc = _read(file, report)
    registry: Registry | None = None
    if doc is not None and not doc.problems:
        registry, problems = parse_registry(doc.data)
        report.extend(problems)
    errors.extend(report.lines)
    return registry if not report.lines else None


def load_ruleset(rules_dir: Path, cards_dir: Path) -> RuleSet:
    """Load and check the whole rule set; raise RuleSetError listing all problems."""
    errors: list[str] = []
    if not rules_dir.is_dir():
        raise RuleSetError(f"rules directory {rules_dir} does not exist")
    if not cards_dir.is_dir():
        raise RuleSetError(f"card template directory {cards_dir} does not exist")
    registry = _load_registry(rules_dir, errors)
    terminology = _terminology(rules_dir, errors)
    parameters = _parameters(rules_dir, errors)
    if parameters is not None and registry is not None:
        errors.extend(_table_sources(rules_dir, parameters, registry))
    drug_groups = _drug_groups(terminology)
    checker = _RuleChecker(rules_dir, cards_dir, registry, drug_groups)
    rules: list[Rule] = []
    files = sorted(p for p in rules_dir.glob("*.yaml") if p.name not in _NOT_RULES)
    if not files:
        errors.append(f"{rules_dir.name}/: no rule files (*.yaml) found")
    seen: dict[str, str] = {}
    for file in files:
        report = _Report(_display(rules_dir, file), None)
        rule = checker.load(file, report)
        if rule is not None:
            if rule.id in seen:
                report.add(("id",), f"rule id '{rule.id}' is also used by {seen[rule.id]}")
            seen[rule.id] = report.display
            rules.append(rule)
        errors.extend(report.lines)
    if errors or registry is None:
        count = len(errors)
        raise RuleSetError(
            f"the rule set in {rules_dir} has {count} problem{'s' * (count != 1)}; "
            "the service will not start until they are fixed",
            details=errors,
        )
    assert terminology is not None and parameters is not None  # else errors were raised above
    return RuleSet(
        tuple(sorted(rules, key=lambda r: r.id)), registry, rules_dir, terminology, parameters
    )


def _table_sources(rules_dir: Path, parameters: FactParameters, registry: Registry) -> list[str]:
    """Every source of the mutation x TKI table is a key of the citation registry."""
    where = f"{rules_dir.name}/{PARAMETERS_FILE}"
    return [
        f"{where}: abl1.reduced_sensitivity[{i}].source: unknown citation '{row.source}' "
        f"(not in {CITATIONS_FILE})"
        for i, row in enumerate(parameters.abl1.reduced_sensitivity)
        if row.source not in registry.citations
    ]


def _parameters(rules_dir: Path, errors: list[str]) -> FactParameters | None:
    """The rule set's own facts.yaml, or the bundled one if it has none."""
    file = rules_dir / PARAMETERS_FILE
    try:
        return load_parameters(file) if file.is_file() else default_parameters()
    except RuleSetError as exc:
        errors.extend(exc.details or [exc.message])
        return None


def _terminology(rules_dir: Path, errors: list[str]) -> Terminology | None:
    """The rule set's own value sets (rules_dir/valuesets), or the bundled ones if it has none."""
    directory = rules_dir / VALUESETS_DIR
    if not directory.is_dir():
        return default_terminology()
    try:
        terminology = load_valuesets(directory)
    except RuleSetError as exc:
        errors.extend(exc.details or [exc.message])
        return None
    missing = missing_concepts(terminology)
    if missing:
        errors.append(
            f"{rules_dir.name}/{VALUESETS_DIR}/: concepts the fact readers need are not "
            f"defined: {', '.join(missing)}"
        )
        return None
    return terminology


def _drug_groups(terminology: Terminology | None) -> dict[str, frozenset[str]]:
    """Names a trigger may use for several ingredients: the drug classes, and every value set
    whose members are all canonical ingredients."""
    groups = {name: frozenset(members) for name, members in DRUG_CLASSES.items()}
    if terminology is None:
        return groups
    for vs_id, valueset in terminology.valuesets.items():
        if valueset.members and valueset.members <= set(INGREDIENTS):
            groups.setdefault(vs_id, valueset.members)
    return groups


class _RuleChecker:
    def __init__(
        self,
        rules_dir: Path,
        cards_dir: Path,
        registry: Registry | None,
        drug_groups: dict[str, frozenset[str]],
    ) -> None:
        self.drug_groups = drug_groups
        self.rules_dir = rules_dir
        self.cards_dir = cards_dir
        self.registry = registry
        self.detail_env = detail_environment(cards_dir)
        self.summary_env = summary_environment()
        self.template_errors: dict[str, str | None] = {}

    def load(self, file: Path, report: _Report) -> Rule | None:
        doc = _read(file, report)
        if doc is None or doc.problems:
            return None
        if not isinstance(doc.data, dict):
            report.add((), "a rule file holds one mapping (id, version, title, …)")
            return None
        try:
            spec = RuleFile.model_validate(doc.data)
        except ValidationError as exc:
            report.extend(_pydantic_problems(exc))
            # still check the condition so all its problems show at once
            problems: list[Problem] = []
            if "when" in doc.data:
                parse_condition(doc.data["when"], ("when",), problems)
            report.extend(problems)
            return None
        problems = []
        condition = parse_condition(spec.when, ("when",), problems)
        trigger = self._trigger(spec, problems)
        self._check_rule(spec, file, problems)
        report.extend(problems)
        if report.lines or condition is None:
            return None
        return Rule(
            id=spec.id,
            version=spec.version,
            title=spec.title,
            description=spec.description,
            enabled=spec.enabled,
            hooks=tuple(spec.hooks),
            trigger=trigger,
            condition=condition,
            on_unknown=spec.on_unknown,
            when_unknown=spec.when_unknown,
            indicator=spec.indicator,
            critical_basis=spec.critical_basis,
            evidence=tuple(spec.evidence),
            citations=tuple(spec.citations),
            card=spec.card,
            suggestions=spec.suggestions,
            override_reasons=spec.override_reasons,
            cases=spec.cases,
            source=report.display,
            new_start=spec.trigger.new_start if spec.trigger is not None else False,
            status=spec.status,
        )

    # -- the parts ---------------------------------------------------------------------------

    def _trigger(self, spec: RuleFile, problems: list[Problem]) -> frozenset[str] | None:
        if spec.trigger is None:
            return None
        names: set[str] = set()
        for i, name in enumerate(spec.trigger.ordered):
            if name in self.drug_groups:
                names.update(self.drug_groups[name])
            elif name in INGREDIENTS:
                names.add(name)
            else:
                known = ", ".join([*sorted(self.drug_groups), *INGREDIENTS])
                problems.append(
                    (
                        ("trigger", "ordered", i),
                        f"unknown ingredient or drug class '{name}' (known: {known})",
                    )
                )
        if not ORDER_HOOKS & set(spec.hooks):
            problems.append(
                (
                    ("trigger",),
                    "a trigger only applies to order-select / order-sign, and this "
                    "rule answers neither",
                )
            )
        return frozenset(names)

    def _check_rule(self, spec: RuleFile, file: Path, problems: list[Problem]) -> None:
        if file.stem != spec.id:
            problems.append(
                (("id",), f"rule id '{spec.id}' must match the file name '{file.stem}'")
            )
        if len(set(spec.hooks)) != len(spec.hooks):
            problems.append((("hooks",), "a hook is listed twice"))
        if spec.on_unknown == "branch" and spec.when_unknown is None:
            problems.append((("on_unknown",), "on_unknown: branch needs a when_unknown section"))
        if spec.on_unknown != "branch" and spec.when_unknown is not None:
            problems.append(
                (("when_unknown",), "when_unknown is only used with on_unknown: branch")
            )
        if spec.when_unknown is not None and spec.when_unknown.indicator == "critical":
            problems.append(
                (
                    ("when_unknown", "indicator"),
                    "critical is reserved for documented findings; "
                    "an undecided condition cannot be critical",
                )
            )
        if spec.indicator == "critical" and spec.critical_basis is None:
            problems.append(
                (
                    ("critical_basis",),
                    "a critical rule must say why: ineffective-drug or documented-contraindication",
                )
            )
        if spec.indicator != "critical" and spec.critical_basis is not None:
            problems.append((("critical_basis",), "critical_basis belongs to critical rules only"))
        for i, name in enumerate(spec.card.facts):
            if name not in FACT_CATALOGUE:
                problems.append((("card", "facts", i), unknown_fact_message(name)))
        self._check_citations(spec, problems)
        self._check_templates(spec, problems)
        self._check_suggestions(spec, problems)
        codes = [o.code for o in spec.override_reasons]
        if len(set(codes)) != len(codes):
            problems.append((("override_reasons",), "override reason codes must be unique"))
        self._check_cases(spec, problems)

    def _check_citations(self, spec: RuleFile, problems: list[Problem]) -> None:
        if self.registry is None:
            return  # the registry's own problems are reported already
        levels: set[str] = set()
        locatable = False
        for i, key in enumerate(spec.citations):
            citation = self.registry.citations.get(key)
            if citation is None:
                problems.append(
                    (("citations", i), f"unknown citation '{key}' (not in {CITATIONS_FILE})")
                )
                continue
            levels.update(citation.levels)
            locatable = locatable or bool(verified_links(citation))
        if len(set(spec.citations)) != len(spec.citations):
            problems.append((("citations",), "a citation is listed twice"))
        if levels and not locatable:
            problems.append(
                (
                    ("citations",),
                    "at least one citation must carry a verified DOI, PMID, URL or trial id "
                    "(the card's resolvable link)",
                )
            )
        for i, level in enumerate(spec.evidence):
            if levels and level not in levels:
                problems.append(
                    (
                        ("evidence", i),
                        f"evidence level '{level}' is not the level of any cited "
                        f"source (cited levels: {', '.join(sorted(levels))})",
                    )
                )

    def _check_templates(self, spec: RuleFile, problems: list[Problem]) -> None:
        name = spec.card.template
        if name not in self.template_errors:
            path = template_file(self.cards_dir, name)
            if not path.is_file():
                self.template_errors[name] = (
                    f"unknown template '{name}' ({self.cards_dir.name}/{path.name} not found)"
                )
            else:
                try:
                    compile_detail(self.detail_env, name)
                    self.template_errors[name] = None
                except TemplateError as exc:
                    line = getattr(exc, "lineno", None)
                    at = f" line {line}" if line else ""
                    self.template_errors[name] = f"template {path.name}{at}: {exc}"
        error = self.template_errors[name]
        if error is not None:
            problems.append((("card", "template"), error))
        summaries: list[tuple[KeyPath, str]] = [(("card", "summary"), spec.card.summary)]
        if spec.when_unknown is not None:
            summaries.append((("when_unknown", "summary"), spec.when_unknown.summary))
        for key_path, source in summaries:
            try:
                compile_summary(self.summary_env, source)
            except TemplateError as exc:
                problems.append((key_path, f"summary template: {exc}"))

    def _check_suggestions(self, spec: RuleFile, problems: list[Problem]) -> None:
        for i, suggestion in enumerate(spec.suggestions):
            at: KeyPath = ("suggestions", i, "resource")
            try:
                compiled = compile_resource(self.summary_env, suggestion.resource)
                resource: Any = fill_resource(compiled, {"patient_reference": SAMPLE_PATIENT})
                validate_fhir_resource(resource)
            except TemplateError as exc:
                problems.append((at, f"resource template: {exc}"))
            except ValueError as exc:
                first = str(exc).strip().splitlines()
                problems.append((at, f"not a valid FHIR R4 resource: {' '.join(first[:3])}"))
        if sum(1 for s in spec.suggestions if s.recommended) > 1:
            problems.append((("suggestions",), "at most one suggestion may be recommended"))

    def _check_cases(self, spec: RuleFile, problems: list[Problem]) -> None:
        # A fixture may serve as a case of either kind (the same patient with another order),
        # but each rule needs its own scenario of each kind: a `fires-…` fixture that fires
        # and a `silent-…` fixture that stays silent.
        for kind in ("fires", "silent"):
            if not any(
                c.expect == kind and Path(c.fixture).name.startswith(f"{kind}-") for c in spec.cases
            ):
                problems.append(
                    (
                        ("cases",),
                        f"a rule needs at least one '{kind}' case on a '{kind}-…' "
                        "fixture (it has none)",
                    )
                )
        for i, case in enumerate(spec.cases):
            if case.hook not in spec.hooks:
                problems.append(
                    (
                        ("cases", i, "hook"),
                        f"the rule does not answer {case.hook} (hooks: {', '.join(spec.hooks)})",
                    )
                )
            if case.expect == "silent" and case.branch is not None:
                problems.append((("cases", i, "branch"), "a silent case has no branch"))
            if case.branch == "unknown" and spec.on_unknown == "silent":
                problems.append(
                    (
                        ("cases", i, "branch"),
                        "the rule is silent when undecided; it has no unknown branch",
                    )
                )
