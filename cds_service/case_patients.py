"""The rule set's own test cases as patients: the fixtures `cds-service demo` and `synth` use.

Every enabled rule lists cases (`fires` / `silent`, a hook, maybe an order) over fixture
bundles, one fictional patient each. `scenarios` groups those cases by fixture, so a caller
learns which rules each fixture shows firing or silent and with which orders, from the rule
set as it is *now* (never from a hand list). `relabel` turns one fixture into a patient that
can sit beside others on one FHIR server: a new Patient id, every resource id prefixed, every
reference rewritten. `split_drafts` separates the draft orders a fixture may hold (an EHR
sends those in the hook context, they are not in its FHIR store).

Fixtures are found beside the rule set (`<rules_dir>/../fhir_fixtures/...`): in the source
tree and, since the wheel ships them, in an installed package.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .decide import ORDER_TYPES, bundle_resources
from .errors import ConfigError
from .fhir_input import reference_key
from .ruleset.loader import RuleSet
from .ruleset.schema import DRUG_CLASSES

Resource = dict[str, Any]
MAX_ID = 64
"""FHIR ids are at most 64 characters ([A-Za-z0-9-.])."""


@dataclass(frozen=True)
class CaseUse:
    """One rule case on a fixture: the rule, the hook, the order (if any) and the expectation."""

    rule_id: str
    hook: str
    order: str | None
    expect: str
    """'fires' or 'silent'."""


@dataclass(frozen=True)
class Scenario:
    """One fixture and every case of an enabled rule that uses it."""

    fixture: str
    """Path as the cases give it (fhir_fixtures/rules/x.json)."""
    path: Path
    uses: tuple[CaseUse, ...] = field(default=())

    @property
    def stem(self) -> str:
        return Path(self.fixture).stem

    def fires(self) -> tuple[CaseUse, ...]:
        return tuple(u for u in self.uses if u.expect == "fires")

    def orders(self) -> tuple[str, ...]:
        """The drug orders its cases name, in case order, without repeats."""
        return tuple(dict.fromkeys(u.order for u in self.uses if u.order))

    def resources(self) -> list[Resource]:
        return load_fixture(self.path)


def scenarios(ruleset: RuleSet) -> list[Scenario]:
    """The fixtures of the enabled rules' cases, in rule and case order."""
    uses: dict[str, list[CaseUse]] = {}
    for rule in ruleset.rules:
        if not rule.enabled:
            continue
        for case in rule.cases:
            uses.setdefault(case.fixture, []).append(
                CaseUse(rule.id, case.hook, case.order, case.expect)
            )
    base = ruleset.rules_dir.parent
    return [Scenario(f, base / f, tuple(u)) for f, u in uses.items()]


def load_fixture(path: Path) -> list[Resource]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the rule-case fixture {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the rule-case fixture {path} is not a JSON object")
    return [copy.deepcopy(r) for r in bundle_resources(data)]


def is_draft_order(resource: Mapping[str, Any]) -> bool:
    return resource.get("resourceType") in ORDER_TYPES and resource.get("status") == "draft"


def split_drafts(resources: Iterable[Resource]) -> tuple[list[Resource], list[Resource]]:
    """(the record, the draft orders)."""
    record: list[Resource] = []
    drafts: list[Resource] = []
    for r in resources:
        (drafts if is_draft_order(r) else record).append(r)
    return record, drafts


def patient_of(resources: Sequence[Resource]) -> Resource:
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if len(patients) != 1:
        raise ConfigError(f"a patient fixture holds {len(patients)} Patient resources, not 1")
    return patients[0]


def fhir_id(text: str) -> str:
    """`text` as a FHIR id: allowed characters only, at most 64 of them."""
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-.") else "-" for ch in text)
    return cleaned.strip("-.")[:MAX_ID] or "x"


def relabel(resources: Sequence[Resource], patient_id: str, prefix: str) -> list[Resource]:
    """A deep copy where the Patient's id is `patient_id`, every other id is `prefix-<id>`
    and every reference to one of these resources follows."""
    patient = patient_of(resources)
    renamed: dict[str, str] = {}
    for r in resources:
        rid = r.get("id")
        if not isinstance(rid, str):
            continue
        new = patient_id if r is patient else fhir_id(f"{prefix}-{rid}")
        renamed[f"{r['resourceType']}/{rid}"] = new
    out: list[Resource] = []
    for r in resources:
        copied = _rewrite(r, renamed)
        rid = r.get("id")
        if isinstance(rid, str):
            copied["id"] = renamed[f"{r['resourceType']}/{rid}"]
        out.append(copied)
    return out


def _rewrite(node: Any, renamed: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        result: dict[str, Any] = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                target = reference_key(value)
                if target is not None and target in renamed:
                    value = f"{target.split('/', 1)[0]}/{renamed[target]}"
            result[key] = _rewrite(value, renamed)
        return result
    if isinstance(node, list):
        return [_rewrite(item, renamed) for item in node]
    return node


def tki_ingredients() -> tuple[str, ...]:
    """The TKIs, as the rule language names the class."""
    return tuple(DRUG_CLASSES["tki"])
