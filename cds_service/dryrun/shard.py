"""Evaluating one shard: every patient in it, through the service's own decision path.

For each patient: the record the live service would build (`service.patient_record` over the
patient's resources plus the Medications they reference, as prefetch would deliver them),
then `decide.decide` for patient-view and, per hypothetical order (a draft MedicationRequest
naming the drug, `decide.synthetic_order`), for order-select and order-sign — the same calls
the HTTP path makes, so a dry-run firing rate is what production would see. Silent rules are
evaluated (their cards are what silent mode records); retired rules are not.

A task is plain data (paths, the pseudonym key, the date, the orders), so it runs the same in
this process, in a local process pool or on a Dask worker. Each worker loads the rule set
once and refuses to run if its rule set is not the one the run was started with.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..cards import CardRenderer
from ..decide import decide, synthetic_order
from ..errors import CDSError
from ..fhir_input import iter_resources
from ..fingerprint import ruleset_fingerprint
from ..prefetch import missing_medication_references
from ..ruleset.loader import RuleSet, load_ruleset
from ..ruleset.schema import ORDER_HOOKS
from ..service import patient_record
from .inputs import References, read_shard

FIRINGS_HEADER = (
    "patient_key",
    "hook",
    "order",
    "rule_id",
    "rule_version",
    "status",
    "indicator",
    "branch",
    "summary",
)
HOOK_RANK = {"patient-view": 0, "order-select": 1, "order-sign": 2}


def patient_key(key: bytes, patient_id: str) -> str:
    """A pseudonymous, stable patient key: HMAC-SHA256 under the run's secret key."""
    return hmac.new(key, patient_id.encode(), hashlib.sha256).hexdigest()[:20]


def row_sort_key(row: Sequence[str]) -> tuple[str, int, str, str]:
    return (row[0], HOOK_RANK.get(row[1], 9), row[2], row[3])


@dataclass(frozen=True)
class ShardTask:
    shard: str
    firings: str
    """CSV file this shard's firings are written to (sorted, with the header)."""
    references: str
    rules_dir: str
    cards_dir: str
    fingerprint: str
    key: bytes
    as_of: dt.date
    orders: tuple[str, ...]
    hooks: tuple[str, ...]


@dataclass
class ShardResult:
    patients: int = 0
    orphans: int = 0
    """Patients referenced by resources but with no Patient resource (not evaluated)."""
    orphan_resources: int = 0
    patients_with_cards: int = 0
    firings: int = 0
    fired: Counter[str] = field(default_factory=Counter)
    """rule id → patients with at least one card of it."""
    cards: Counter[str] = field(default_factory=Counter)
    """rule id → cards (patient × hook × order)."""
    by_hook: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_indicator: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_order: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    errors: Counter[str] = field(default_factory=Counter)
    """Exception type → patients whose evaluation failed (counted, never skipped silently)."""
    failed_keys: list[str] = field(default_factory=list)

    def merge(self, other: ShardResult) -> None:
        self.patients += other.patients
        self.orphans += other.orphans
        self.orphan_resources += other.orphan_resources
        self.patients_with_cards += other.patients_with_cards
        self.firings += other.firings
        self.fired.update(other.fired)
        self.cards.update(other.cards)
        self.errors.update(other.errors)
        self.failed_keys.extend(other.failed_keys)
        for mine, theirs in (
            (self.by_hook, other.by_hook),
            (self.by_indicator, other.by_indicator),
            (self.by_order, other.by_order),
        ):
            for rule_id, counts in theirs.items():
                mine.setdefault(rule_id, Counter()).update(counts)


_LOADED: dict[tuple[str, str], tuple[RuleSet, CardRenderer, str]] = {}


def _ruleset(task: ShardTask) -> tuple[RuleSet, CardRenderer]:
    cache_key = (task.rules_dir, task.cards_dir)
    if cache_key not in _LOADED:
        rules, cards = Path(task.rules_dir), Path(task.cards_dir)
        ruleset = load_ruleset(rules, cards)
        renderer = CardRenderer(ruleset, cards)
        _LOADED[cache_key] = (ruleset, renderer, ruleset_fingerprint(rules, cards))
    ruleset, renderer, found = _LOADED[cache_key]
    if found != task.fingerprint:
        raise CDSError(
            f"this worker's rule set ({task.rules_dir}) differs from the one the dry-run was "
            "started with; results would not be comparable"
        )
    return ruleset, renderer


def evaluate_shard(task: ShardTask) -> ShardResult:
    """Evaluate every patient of one shard; write its firings; return its counts."""
    ruleset, renderer = _ruleset(task)
    references = References(Path(task.references))
    result = ShardResult()
    rows: list[tuple[str, ...]] = []
    try:
        for patient_id, lines in read_shard(Path(task.shard)):
            resources = [orjson.loads(line) for line in lines]
            if not any(
                r.get("resourceType") == "Patient" and r.get("id") == patient_id
                for r in iter_resources(resources)
            ):
                result.orphans += 1
                result.orphan_resources += len(resources)
                continue
            result.patients += 1
            pkey = patient_key(task.key, patient_id)
            try:
                patient_rows = _evaluate_patient(
                    ruleset, renderer, references, task, patient_id, pkey, resources
                )
            except Exception as exc:  # one bad record must not end the run; it is counted
                result.errors[type(exc).__name__] += 1
                if len(result.failed_keys) < 20:
                    result.failed_keys.append(pkey)
                continue
            _count(result, patient_rows)
            rows.extend(patient_rows)
    finally:
        references.close()
    rows.sort(key=row_sort_key)
    with Path(task.firings).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIRINGS_HEADER)
        writer.writerows(rows)
    return result


def _evaluate_patient(
    ruleset: RuleSet,
    renderer: CardRenderer,
    references: References,
    task: ShardTask,
    patient_id: str,
    pkey: str,
    resources: list[dict[str, Any]],
) -> list[tuple[str, ...]]:
    referenced = references.get(missing_medication_references([resources]))
    record = patient_record(ruleset, [resources, referenced], patient_id)
    rows: list[tuple[str, ...]] = []
    calls: list[tuple[str, str]] = []
    for hook in task.hooks:
        if hook in ORDER_HOOKS:
            calls.extend((hook, order) for order in task.orders)
        else:
            calls.append((hook, ""))
    for hook, order in calls:
        orders = [synthetic_order(order, patient_id)] if order else []
        decision = decide(
            ruleset,
            renderer,
            record,
            hook=hook,
            orders=orders,
            context_orders=[],
            as_of=task.as_of,
        )
        for finding, card in zip(decision.findings, decision.cards, strict=True):
            rule = finding.rule
            rows.append(
                (
                    pkey,
                    hook,
                    order,
                    rule.id,
                    rule.version,
                    rule.status,
                    card.indicator,
                    finding.branch,
                    card.summary,
                )
            )
    return rows


def _count(result: ShardResult, rows: list[tuple[str, ...]]) -> None:
    if rows:
        result.patients_with_cards += 1
    result.firings += len(rows)
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for _, hook, order, rule_id, _, _, indicator, _, _ in rows:
        result.cards[rule_id] += 1
        seen[rule_id].add(("hook", hook))
        seen[rule_id].add(("indicator", indicator))
        if order:
            seen[rule_id].add(("order", order))
    for rule_id, marks in seen.items():
        result.fired[rule_id] += 1
        for kind, value in marks:
            target = {
                "hook": result.by_hook,
                "indicator": result.by_indicator,
                "order": result.by_order,
            }[kind]
            target.setdefault(rule_id, Counter())[value] += 1
