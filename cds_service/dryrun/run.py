"""The dry-run, end to end: partition → evaluate shards (here, in processes or on Dask) → outputs.

Outputs in OUT_DIR:

* `summary.json` — `{"patients": N, "as_of": …, "rules": {id: {"fired", "per_1000", "by_hook",
  "by_indicator", "by_order", …}}, "input": {…}}`, counts of patients (a patient counts once
  per rule however many hooks and orders fired it); no timing, so two runs over the same
  input with the same key and date give the same bytes whatever --jobs or scheduler;
* `firings.csv` — one row per patient × hook × order × card, sorted, with a pseudonymous
  patient key (HMAC-SHA256 of the patient id under a secret key), never a name or an id;
* `report.html` — firing rates per rule (bar chart) and the tables behind it;
* `run.json` — how the run went: jobs, scheduler, shards, seconds, patients/s.
"""

from __future__ import annotations

import csv
import datetime as dt
import heapq
import json
import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from ..cards import CardRenderer
from ..decide import synthetic_order
from ..discovery import prefetch_templates
from ..errors import ConfigError
from ..facts.extract import extract_facts
from ..facts.model import TKIS
from ..fhir_input import build_record
from ..fingerprint import ruleset_fingerprint
from ..ruleset.loader import RuleSet, load_ruleset
from ..ruleset.schema import HOOKS
from .inputs import Partitioner
from .report import render_report
from .shard import FIRINGS_HEADER, ShardResult, ShardTask, evaluate_shard, row_sort_key

DEFAULT_ORDERS: tuple[str, ...] = (*TKIS, "blinatumomab")
KEY_BYTES = 32
WORK_SUBDIR = ".dry-run-work"


class DryRunError(ConfigError):
    """The dry-run cannot start or finish (bad input, unknown drug, missing extra)."""


@dataclass(frozen=True)
class DryRunOptions:
    input: Path
    out: Path
    rules_dir: Path
    cards_dir: Path
    key: bytes
    orders: tuple[str, ...] = DEFAULT_ORDERS
    as_of: dt.date | None = None
    jobs: int = 1
    scheduler: str | None = None
    work_dir: Path | None = None
    keep_work: bool = False
    progress: bool = True
    max_line_bytes: int = 16 * 1024 * 1024
    max_file_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class DryRunOutcome:
    summary: dict[str, Any]
    run: dict[str, Any]
    files: tuple[Path, ...]

    @property
    def failed(self) -> bool:
        return bool(self.summary["errors"])


# ---- the pseudonym key -------------------------------------------------------------------------


def load_or_create_key(path: Path) -> bytes:
    """The secret that makes patient keys pseudonymous: read it, or create it (mode 0600).

    Keep it apart from firings.csv: with it, an authorised person can find a patient again
    (HMAC of their id); without it, a key says nothing about the patient.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(KEY_BYTES) + "\n")
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as exc:
        raise DryRunError(f"cannot read the pseudonym key {path}: {exc}") from None
    if len(key) < 16:
        raise DryRunError(f"the pseudonym key in {path} is too short (at least 16 bytes, hex)")
    return key


# ---- checks before reading anything ------------------------------------------------------------


def _check_orders(ruleset: RuleSet, orders: Sequence[str]) -> None:
    """Every hypothetical order must name a drug the service recognises (same resolution)."""
    if not orders:
        raise DryRunError("give at least one --order")
    empty = build_record([], None)
    unknown = []
    for name in orders:
        facts = extract_facts(
            empty, orders=[synthetic_order(name, None)], terminology=ruleset.terminology
        )
        if not facts.orders or facts.orders[0].ingredient is None:
            unknown.append(name)
    if unknown:
        raise DryRunError(
            f"--order names a drug the service does not recognise: {', '.join(unknown)} "
            f"(e.g. {', '.join(DEFAULT_ORDERS)}, or a brand name)"
        )


def read_types(ruleset: RuleSet) -> frozenset[str]:
    """Resource types the service prefetches for its evaluated rules (all hooks)."""
    types: set[str] = set()
    for hook in HOOKS:
        for query in prefetch_templates(ruleset.facts_for_hook(hook)).values():
            types.add(query.split("?", 1)[0].split("/", 1)[0])
    return frozenset(types)


# ---- progress ----------------------------------------------------------------------------------


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.1f} patients/s", style="progress.data.speed")


def _progress(console: Console, enabled: bool, *columns: ProgressColumn | str) -> Progress:
    return Progress(*columns, console=console, disable=not enabled, transient=False)


# ---- executing shards --------------------------------------------------------------------------


def _execute(tasks: list[ShardTask], jobs: int, scheduler: str | None) -> Iterator[ShardResult]:
    if scheduler is not None:
        yield from _on_dask(tasks, scheduler)
    elif jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield evaluate_shard(task)
    else:
        # spawn, not fork: the progress bar runs a thread, and forking threads can deadlock
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(evaluate_shard, task) for task in tasks]
            for future in as_completed(futures):
                yield future.result()


def _on_dask(tasks: list[ShardTask], address: str) -> Iterator[ShardResult]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise DryRunError(
            "--scheduler needs dask.distributed: pip install 'phall-cds[dask]'"
        ) from None
    with Client(address, timeout="30s") as client:  # type: ignore[no-untyped-call]
        futures = client.map(evaluate_shard, tasks, pure=False)
        for future in dask_completed(futures):  # type: ignore[no-untyped-call]
            result: ShardResult = future.result()
            yield result


# ---- outputs -----------------------------------------------------------------------------------


def _per_1000(count: int, patients: int) -> float:
    return round(1000 * count / patients, 2) if patients else 0.0


def build_summary(
    ruleset: RuleSet,
    total: ShardResult,
    *,
    as_of: dt.date,
    orders: Sequence[str],
    hooks: Sequence[str],
    input_stats: dict[str, Any],
) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for rule in ruleset.rules:
        if not rule.evaluated:
            continue
        fired = total.fired.get(rule.id, 0)
        rule_hooks = [h for h in hooks if h in rule.hooks]
        entry: dict[str, Any] = {
            "version": rule.version,
            "status": rule.status,
            "indicator": rule.indicator,
            "fired": fired,
            "per_1000": _per_1000(fired, total.patients),
            "cards": total.cards.get(rule.id, 0),
            "by_hook": {h: total.by_hook.get(rule.id, Counter())[h] for h in rule_hooks},
            "by_indicator": dict(sorted(total.by_indicator.get(rule.id, {}).items())),
        }
        if any(h != "patient-view" for h in rule_hooks):
            entry["by_order"] = {o: total.by_order.get(rule.id, Counter())[o] for o in orders}
        rules[rule.id] = entry
    return {
        "patients": total.patients,
        "as_of": as_of.isoformat(),
        "hooks": list(hooks),
        "orders": list(orders),
        "patients_with_any_card": total.patients_with_cards,
        "cards": total.firings,
        "rules": rules,
        "not_evaluated": sorted(r.id for r in ruleset.rules if not r.evaluated),
        "input": {
            **input_stats,
            "patients_without_patient_resource": total.orphans,
            "resources_of_those": total.orphan_resources,
        },
        "errors": dict(sorted(total.errors.items())),
        "failed_patient_keys": sorted(total.failed_keys),
    }


def _merge_firings(parts: Sequence[Path], out: Path) -> None:
    """One sorted CSV from the shards' sorted CSVs, streaming (heapq.merge)."""
    with _CsvParts(parts) as readers, out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIRINGS_HEADER)
        merged: Iterator[list[str]] = heapq.merge(*readers, key=row_sort_key)
        writer.writerows(merged)


class _CsvParts:
    """CSV readers over several files (header skipped), closed together."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = paths
        self.handles: list[Any] = []

    def __enter__(self) -> list[Iterator[list[str]]]:
        readers: list[Iterator[list[str]]] = []
        for path in self.paths:
            fh = path.open(encoding="utf-8", newline="")
            self.handles.append(fh)
            reader = csv.reader(fh)
            next(reader, None)
            readers.append(reader)
        return readers

    def __exit__(self, *exc: object) -> None:
        for fh in self.handles:
            fh.close()


# ---- the run -----------------------------------------------------------------------------------


def run_dry_run(options: DryRunOptions, console: Console | None = None) -> DryRunOutcome:
    console = console or Console(stderr=True)
    started = time.perf_counter()
    if not options.input.is_dir():
        raise DryRunError(f"{options.input} is not a folder (an $export output or Bundles)")
    ruleset = load_ruleset(options.rules_dir, options.cards_dir)
    CardRenderer(ruleset, options.cards_dir)  # templates compile here, before any work
    _check_orders(ruleset, options.orders)
    hooks = tuple(h for h in HOOKS if ruleset.enabled(h))
    as_of = options.as_of or dt.datetime.now(dt.UTC).date()
    options.out.mkdir(parents=True, exist_ok=True)
    work = (options.work_dir or options.out) / WORK_SUBDIR  # only this folder is ever removed
    if work.exists():
        shutil.rmtree(work)
    partitioner = Partitioner(
        read_types(ruleset),
        max_line_bytes=options.max_line_bytes,
        max_file_bytes=options.max_file_bytes,
    )
    total_bytes = sum(p.stat().st_size for p in options.input.iterdir() if p.is_file())
    with _progress(
        console,
        options.progress,
        TextColumn("reading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    ) as bar:
        job = bar.add_task("reading", total=total_bytes)
        partition = partitioner.run(
            options.input,
            work,
            min_shards=4 * max(options.jobs, 1),
            on_bytes=lambda n: bar.advance(job, n),
        )
    partitioned = time.perf_counter()
    if partition.stats.resources == 0:
        raise DryRunError(
            f"no FHIR resources found in {options.input} (*.ndjson, *.ndjson.gz, *.json)",
            details=partition.stats.problems,
        )
    fingerprint = ruleset_fingerprint(options.rules_dir, options.cards_dir)
    tasks = sorted(
        (
            ShardTask(
                shard=str(shard),
                firings=str(shard.with_suffix(".firings.csv")),
                references=str(partition.references),
                rules_dir=str(options.rules_dir.resolve()),
                cards_dir=str(options.cards_dir.resolve()),
                fingerprint=fingerprint,
                key=options.key,
                as_of=as_of,
                orders=tuple(options.orders),
                hooks=hooks,
            )
            for shard in partition.shards
            if shard.stat().st_size > 0
        ),
        key=lambda t: -Path(t.shard).stat().st_size,  # biggest first: better packing
    )
    total = ShardResult()
    with _progress(
        console,
        options.progress,
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as bar:
        job = bar.add_task("evaluating", total=partition.stats.patient_resources or None)
        for result in _execute(tasks, options.jobs, options.scheduler):
            total.merge(result)
            bar.advance(job, result.patients)
    evaluated = time.perf_counter()
    summary = build_summary(
        ruleset,
        total,
        as_of=as_of,
        orders=options.orders,
        hooks=hooks,
        input_stats=partition.stats.as_json(),
    )
    files = _write_outputs(options.out, summary, ruleset, tasks)
    finished = time.perf_counter()
    evaluate_seconds = evaluated - partitioned
    workers = 1 if options.scheduler is None and options.jobs <= 1 else options.jobs
    run = {
        "jobs": options.jobs,
        "scheduler": options.scheduler,
        "shards": len(tasks),
        "patients": total.patients,
        "seconds": {
            "partition": round(partitioned - started, 3),
            "evaluate": round(evaluate_seconds, 3),
            "total": round(finished - started, 3),
        },
        "patients_per_s": round(total.patients / evaluate_seconds, 2) if evaluate_seconds else None,
        "patients_per_s_per_worker": (
            round(total.patients / evaluate_seconds / workers, 2) if evaluate_seconds else None
        ),
    }
    (options.out / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    if not options.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return DryRunOutcome(summary, run, (*files, options.out / "run.json"))


def _write_outputs(
    out: Path, summary: dict[str, Any], ruleset: RuleSet, tasks: Sequence[ShardTask]
) -> tuple[Path, ...]:
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", "utf-8")
    firings = out / "firings.csv"
    _merge_firings([Path(t.firings) for t in tasks], firings)
    report = out / "report.html"
    report.write_text(render_report(summary, ruleset), encoding="utf-8")
    return summary_path, firings, report
