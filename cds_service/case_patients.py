"""The rule set's own test cases as patients: the fixtures `cds-service demo` and `synth` use.

Every enabled rule lists cases (`fires` / `silent`, a hook, maybe an order) over fixture
bundles, one fictional patient each. `scenarios` groups those cases by fixture, so a caller
learns which rules each fixture shows firing or silent and with which orders, from the rule
set as it is *now* (never from a hand list). `relabel` turns one fixture into a patient that
can sit beside others on one FHIR server: a new Patient id, every resource id prefixed, every
reference rewritten. `shift_dates` moves a record's timeline so that a case written for its
evaluation date reads the same on another day (today, for a live service). `split_drafts`
separates the draft orders a fixture may hold (an EHR sends those in the hook context, they
are not in its FHIR store).

Fixtures are found beside the rule set (`<rules_dir>/../fhir_fixtures/...`): in the source
tree and, since the wheel ships them, in an installed package.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .decide import ORDER_TYPES, bundle_resources
from .errors import ConfigError
from .facts.model import DRUG_CLASSES
from .fhir_input import reference_key
from .ruleset.loader import RuleSet

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
    as_of: dt.date
    """The evaluation date the case is written for."""


@dataclass(frozen=True)
class Scenario:
    """One fixture and every case of an enabled rule that uses it."""

    fixture: str
    """Path as the cases give it (fhir_fixtures/rules/x.json)."""
    path: Path
    uses: tuple[CaseUse, ...] = field(default=())
    label: str = ""
    """Suffix telling apart the scenarios of one fixture read at another date."""

    @property
    def stem(self) -> str:
        return Path(self.fixture).stem + self.label

    def fires(self) -> tuple[CaseUse, ...]:
        return tuple(u for u in self.uses if u.expect == "fires")

    @property
    def as_of(self) -> dt.date:
        """The evaluation date of its cases (the first fires case's, when they differ)."""
        return (self.fires() or self.uses)[0].as_of

    def orders(self) -> tuple[str, ...]:
        """The drug orders its cases name, in case order, without repeats."""
        return tuple(dict.fromkeys(u.order for u in self.uses if u.order))

    def resources(self) -> list[Resource]:
        return load_fixture(self.path)


def scenarios(ruleset: RuleSet) -> list[Scenario]:
    """The fixtures of the enabled rules' cases, in rule and case order: one scenario per
    fixture and evaluation date (the same record read at two dates is two timelines)."""
    uses: dict[tuple[str, dt.date], list[CaseUse]] = {}
    for rule in ruleset.rules:
        if not rule.evaluated:
            continue
        for case in rule.cases:
            uses.setdefault((case.fixture, case.as_of), []).append(
                CaseUse(rule.id, case.hook, case.order, case.expect, case.as_of)
            )
    base = ruleset.rules_dir.parent
    first_date: dict[str, dt.date] = {}
    out: list[Scenario] = []
    for (fixture, as_of), u in uses.items():
        first = first_date.setdefault(fixture, as_of)
        label = "" if as_of == first else f"-at-{as_of.isoformat()}"
        out.append(Scenario(fixture, base / fixture, tuple(u), label))
    return out


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


# -- dates -------------------------------------------------------------------------------------

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(T.*)?)?)?$")
_DATE_KEYS = frozenset(
    {
        "date",
        "start",
        "end",
        "issued",
        "authoredOn",
        "recorded",
        "lastUpdated",
        "dateAsserted",
        "dateWritten",
        "whenHandedOver",
        "whenPrepared",
        "created",
    }
)


def _is_date_key(key: str) -> bool:
    return key in _DATE_KEYS or key.endswith(("DateTime", "Date", "Instant"))


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def shift_date(value: str, days: int) -> str:
    """A FHIR date / dateTime / instant moved by `days`, keeping its precision and time of day.

    A month-precision date moves by the nearest whole number of months, a year by whole years,
    so that "2024-03" stays a month and "2019" a year."""
    match = _DATE.match(value)
    if match is None:
        return value
    year_s, month_s, day_s, rest = match.groups()
    year = int(year_s)
    if month_s is None:
        return f"{year + round(days / 365.25):04d}"
    month = int(month_s)
    if day_s is None:
        y, m = _add_months(year, month, round(days / 30.436875))
        return f"{y:04d}-{m:02d}"
    try:
        day = dt.date(year, month, int(day_s))
    except ValueError:
        return value
    moved = day + dt.timedelta(days=days)
    return moved.isoformat() + (rest or "")


def shift_dates(resources: Sequence[Resource], days: int) -> list[Resource]:
    """Deep copies with every date element moved by `days` (see `shift_date`)."""
    if days == 0:
        return [copy.deepcopy(r) for r in resources]
    return [_shift(r, days) for r in resources]


def _shift(node: Any, days: int) -> Any:
    if isinstance(node, dict):
        return {
            k: shift_date(v, days) if isinstance(v, str) and _is_date_key(k) else _shift(v, days)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_shift(item, days) for item in node]
    return node


def tki_ingredients() -> tuple[str, ...]:
    """The TKIs, as the rule language names the class."""
    return tuple(DRUG_CLASSES["tki"])
