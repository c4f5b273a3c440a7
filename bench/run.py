"""The benchmark: the service against the floor, side by side in one run; fetch path; soak.

    python bench/run.py --quick      # under 3 minutes on 2 cores; ends with the `bench:` line
    python bench/run.py              # the full suite (more rounds, c=8 for every hook, paging)
    python bench/run.py --soak       # 10 minutes at concurrency 8: errors and memory

One run starts the real service (`cds-service serve`, CDS_AUTH=off, fresh data dir) and the
floor (bench/floor.py: read, orjson-parse, answer no cards) under the same uvicorn settings,
each in its own process. For each record size (50 / 500 / 5,000 entries) and hook it sends
the same request body to both, alternating request by request at concurrency 1 and burst by
burst at concurrency 8, in rounds; it reports per-round p50 / p95 / p99 (and CPU time per
request read from /proc), quotes the median over rounds and the service / floor ratios. The
fetch path sends requests without prefetch to a real FHIR server on 127.0.0.1. Results go to
bench/results/<profile>-<time>.json (and .md); the last line printed is

    bench: ratio500=<…> ratio50=<…> p99_5000_ms=<…> c8_share500=<…> workers2=<…>
           fetch_p95_ms=<…> errors=<n>

`workers2` comes from a second phase: the same 500-entry order-select body at c=8, bursts
alternating between the one-worker service and a `--workers 2` service (when `serve` offers
`--workers`). With `--record`, the run's figures are written to bench/FIGURES.md — the one
place the READMEs point to; nothing is copied by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fetchpath import run_fetch_case
from bench.generate import (
    HOOKS,
    SIZES,
    generate_record,
    hook_request,
    service_ids_from_discovery,
    templates_from_discovery,
)
from bench.measure import Body, Target, alternate_bursts, alternate_c1
from bench.processes import REPO, Server, StartError, start_floor, start_service
from bench.report import machine, markdown_table, summary_line
from bench.soak import soak

T = TypeVar("T")
RESULTS = REPO / "bench" / "results"

TARGETS = {
    "ratio500": 1.5,
    "ratio50": 2.5,
    "p99_5000_ms": 250.0,
    "ratio5000": 1.3,
    "c8_share500": 0.70,
    "workers2": 1.8,
    "fetch_p95_ms": 150.0,
}
"""Issue targets: ratios are service / floor medians at c=1 (order-select; the other two
hooks within the same bounds), c8_share500 the service's c=8 throughput as a share of the
floor's at 500 entries, workers2 the c=8 throughput of `--workers 2` over one worker."""


@dataclass(frozen=True)
class FetchCase:
    entries: int
    page_size: int | None
    rounds: int
    per_round: int


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int
    per_round: Mapping[int, int]
    warmup: Mapping[int, int]
    c8_hooks: tuple[str, ...]
    c8_rounds: int
    c8_seconds: Mapping[int, float]
    fetch: tuple[FetchCase, ...]


QUICK = Profile(
    name="quick",
    rounds=3,
    per_round={50: 40, 500: 25, 5000: 8},
    warmup={50: 10, 500: 5, 5000: 2},
    c8_hooks=("order-select",),
    c8_rounds=2,
    c8_seconds={50: 1.0, 500: 1.5, 5000: 3.0},
    fetch=(FetchCase(50, None, 3, 10),),
)
FULL = Profile(
    name="full",
    rounds=5,
    per_round={50: 200, 500: 80, 5000: 20},
    warmup={50: 30, 500: 10, 5000: 3},
    c8_hooks=HOOKS,
    c8_rounds=3,
    c8_seconds={50: 3.0, 500: 4.0, 5000: 8.0},
    fetch=(FetchCase(50, None, 5, 30), FetchCase(500, 100, 5, 15)),
)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed (a cheaper client loop), else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _scaled(value: float, scale: float, minimum: float) -> Any:
    scaled = max(value * scale, minimum)
    return int(scaled) if isinstance(value, int) else scaled


def discovery_of(service: Server) -> dict[str, Any]:
    with urllib.request.urlopen(service.base + "/cds-services", timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def run_suite(
    service: Server,
    floor: Server,
    profile: Profile,
    *,
    sizes: tuple[int, ...],
    hooks: tuple[str, ...],
    client: str,
    fetch: bool,
    scale: float,
) -> dict[str, Any]:
    document = discovery_of(service)
    templates = templates_from_discovery(document)
    service_ids = service_ids_from_discovery(document)
    results: dict[str, Any] = {
        "profile": profile.name,
        "client": client,
        "service_command": service.how,
        "discovery_prefetch_keys": {h: sorted(t) for h, t in templates.items()},
        "c1": [],
        "c8": [],
        "fetch": [],
        "memory": {"by_size": {}},
    }
    for size in sizes:
        record = generate_record(size)
        for hook in hooks:
            if hook not in service_ids:
                log(f"  {hook}: not offered by the service's discovery; skipped")
                continue
            path = f"/cds-services/{service_ids[hook]}"
            body = Body.of(hook_request(hook, record, templates[hook]))
            targets = (Target("service", service, path), Target("floor", floor, path))
            started = time.perf_counter()
            row = run_async(
                alternate_c1(
                    targets,
                    body,
                    rounds=profile.rounds,
                    per_round=_scaled(profile.per_round[size], scale, 3),
                    warmup=profile.warmup[size],
                    client=client,
                )
            )
            row |= {"entries": size, "hook": hook, "body_bytes": body.length}
            results["c1"].append(row)
            log(
                f"  c=1 {size:>5} {hook:<13} service p50 {row['service']['p50_ms']:8.2f} ms "
                f"p99 {row['service']['p99_ms']:8.2f} | floor p50 {row['floor']['p50_ms']:8.2f} "
                f"p99 {row['floor']['p99_ms']:8.2f} | ratio {row['ratio_p50']:.2f} "
                f"| errors {row['service']['errors']} | {time.perf_counter() - started:.1f} s"
            )
            if hook in profile.c8_hooks:
                started = time.perf_counter()
                burst_row = run_async(
                    alternate_bursts(
                        targets,
                        body,
                        rounds=profile.c8_rounds,
                        seconds=_scaled(profile.c8_seconds[size], scale, 0.5),
                        concurrency=8,
                        client=client,
                    )
                )
                burst_row |= {"entries": size, "hook": hook, "body_bytes": body.length}
                results["c8"].append(burst_row)
                s, f = burst_row["service"], burst_row["floor"]
                log(
                    f"  c=8 {size:>5} {hook:<13} service {s['throughput_rps']:7.0f} req/s "
                    f"p50 {s['p50_ms']:8.2f} ms | floor {f['throughput_rps']:7.0f} req/s "
                    f"p50 {f['p50_ms']:8.2f} ms | {time.perf_counter() - started:.1f} s"
                )
        results["memory"]["by_size"][str(size)] = {
            "service_peak_kib": service.status_kib("VmHWM"),
            "floor_peak_kib": floor.status_kib("VmHWM"),
        }
    if fetch:
        for case in profile.fetch:
            results["fetch"].append(
                fetch_case(service, service_ids, templates, case, client, scale)
            )
    results["memory"] |= {
        "service_peak_kib": service.status_kib("VmHWM"),
        "floor_peak_kib": floor.status_kib("VmHWM"),
        "service_rss_end_kib": service.status_kib("VmRSS"),
    }
    return results


def fetch_case(
    service: Server,
    service_ids: Mapping[str, str],
    templates: Mapping[str, Mapping[str, str]],
    case: FetchCase,
    client: str,
    scale: float,
) -> dict[str, Any]:
    hook = "order-select"
    if hook not in service_ids:
        return {"entries": case.entries, "skipped": f"no {hook} service in discovery"}
    started = time.perf_counter()
    try:
        row = run_fetch_case(
            service,
            f"/cds-services/{service_ids[hook]}",
            templates[hook],
            entries=case.entries,
            page_size=case.page_size,
            rounds=case.rounds,
            per_round=_scaled(case.per_round, scale, 3),
            client=client,
        )
    except (RuntimeError, ImportError, OSError) as exc:  # node or its modules missing
        log(f"  fetch {case.entries}: skipped: {exc}")
        return {"entries": case.entries, "skipped": str(exc).splitlines()[0][:300]}
    log(
        f"  fetch {case.entries:>4} entries: service p50 {row['service']['p50_ms']:.1f} ms p95 "
        f"{row['service']['p95_ms']:.1f} ms | direct p50 {row['direct_fetch']['p50_ms']:.1f} ms "
        f"p95 {row['direct_fetch']['p95_ms']:.1f} ms | errors {row['service']['errors']} "
        f"| {time.perf_counter() - started:.1f} s"
    )
    return row


def _find(rows: list[dict[str, Any]], entries: int, hook: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["entries"] == entries and r["hook"] == hook), None)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def _worst_ratio(c1: list[dict[str, Any]], entries: int) -> float | None:
    """The largest service / floor ratio over the hooks measured at `entries`."""
    ratios = [r["ratio_p50"] for r in c1 if r["entries"] == entries and r["ratio_p50"] is not None]
    return max(ratios) if ratios else None


def conclude(results: dict[str, Any]) -> None:
    """Headline figures, error totals, sanity checks and targets, added to `results`."""
    c1, c8 = results["c1"], results["c8"]
    r500, r5000 = _find(c1, 500, "order-select"), _find(c1, 5000, "order-select")
    r50 = _find(c1, 50, "order-select")
    b500 = _find(c8, 500, "order-select")
    fetched = next((f for f in results["fetch"] if "service" in f), None)
    share = None
    if b500 and b500["floor"]["throughput_rps"]:
        share = b500["service"]["throughput_rps"] / b500["floor"]["throughput_rps"]
    scaling = results.get("workers", {}).get("scaling")
    headline = {
        "ratio500": r500["ratio_p50"] if r500 else None,
        "ratio50": r50["ratio_p50"] if r50 else None,
        "p99_5000_ms": r5000["service"]["p99_ms"] if r5000 else None,
        "ratio5000": r5000["ratio_p50"] if r5000 else None,
        "c8_share500": share,
        "workers2": scaling,
        "fetch_p95_ms": fetched["service"]["p95_ms"] if fetched else None,
        "worst_ratio500_any_hook": _worst_ratio(c1, 500),
        "worst_ratio50_any_hook": _worst_ratio(c1, 50),
    }
    results["headline"] = headline
    service_errors = sum(r["service"]["errors"] for r in c1 + c8)
    floor_errors = sum(r["floor"]["errors"] for r in c1 + c8)
    fetch_errors = sum(f["service"]["errors"] for f in results["fetch"] if "service" in f)
    worker_errors = int(results.get("workers", {}).get("errors", 0))
    results["errors"] = {
        "service": service_errors,
        "floor": floor_errors,
        "fetch": fetch_errors,
        "workers": worker_errors,
        "total": service_errors + floor_errors + fetch_errors + worker_errors,
    }
    critical = None
    if r500 is not None:
        critical = "critical" in r500["service"]["cards"].get("indicators", [])
    r50 = _find(c1, 50, "order-select")
    same = None
    if fetched is not None and r50 is not None and fetched["entries"] == 50:
        same = fetched["service"]["cards"].get("indicators") == r50["service"]["cards"].get(
            "indicators"
        )
    results["checks"] = {
        "critical_card_500_order_select_t315i_dasatinib": critical,
        "fetch_path_cards_match_prefetch_50": same,
    }

    def met(value: float | None, limit: float, inclusive: bool) -> bool | None:
        if value is None or math.isnan(value):
            return None
        return value <= limit if inclusive else value < limit

    def at_least(value: float | None, limit: float) -> bool | None:
        if value is None or math.isnan(value):
            return None
        return value >= limit

    results["targets"] = {
        "ratio500 <= 1.5": met(headline["ratio500"], TARGETS["ratio500"], True),
        "ratio50 <= 2.5": met(headline["ratio50"], TARGETS["ratio50"], True),
        "every hook ratio500 <= 1.5": met(
            headline["worst_ratio500_any_hook"], TARGETS["ratio500"], True
        ),
        "every hook ratio50 <= 2.5": met(
            headline["worst_ratio50_any_hook"], TARGETS["ratio50"], True
        ),
        "p99_5000_ms < 250": met(headline["p99_5000_ms"], TARGETS["p99_5000_ms"], False),
        "ratio5000 <= 1.3": met(headline["ratio5000"], TARGETS["ratio5000"], True),
        "c8_share500 >= 0.70": at_least(headline["c8_share500"], TARGETS["c8_share500"]),
        "workers2 >= 1.8": at_least(headline["workers2"], TARGETS["workers2"]),
        "fetch_p95_ms < 150": met(headline["fetch_p95_ms"], TARGETS["fetch_p95_ms"], False),
    }


def _write(results: dict[str, Any], stem: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stem}.json"
    path.write_text(json.dumps(_nan_to_none(results), indent=1), "utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the CDS service against a parse-only floor (see bench/README.md)."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the quick suite (< 3 min, 2 cores)")
    mode.add_argument("--soak", action="store_true", help="soak the service at concurrency 8")
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument("--soak-entries", type=int, default=500)
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="record sizes, comma-separated"
    )
    parser.add_argument("--hooks", default=",".join(HOOKS), help="hooks, comma-separated")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load client (raw: bench/client.py, ~1 ms cheaper per request than httpx)",
    )
    parser.add_argument("--no-fetch", action="store_true", help="skip the fetch-path run")
    parser.add_argument(
        "--service-src",
        type=Path,
        help="run the service from this source tree (e.g. a copy with a proposed patch)",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply requests per round and burst lengths"
    )
    parser.add_argument(
        "--no-workers", action="store_true", help="skip the --workers 2 scaling phase"
    )
    parser.add_argument(
        "--record", action="store_true", help="write the figures to bench/FIGURES.md"
    )
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s)
    hooks = tuple(h for h in args.hooks.split(",") if h)
    unknown = [h for h in hooks if h not in HOOKS]
    if unknown:
        parser.error(f"unknown hooks {unknown}; choose from {HOOKS}")
    profile = QUICK if args.quick else FULL
    name = "soak" if args.soak else profile.name
    stem = f"{name}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}"
    started = time.perf_counter()
    info = machine()
    log(f"bench {name}: {info['cpu']}, {info['cores']} cores, load {info['load_avg']}")
    with tempfile.TemporaryDirectory(prefix="cds-bench-") as tmp:
        try:
            service = start_service(
                Path(tmp) / "data", RESULTS / f"{stem}-service.log", source=args.service_src
            )
        except StartError as exc:
            log(f"bench: the service did not start: {exc}")
            print(
                "bench: ratio500=n/a ratio50=n/a p99_5000_ms=n/a c8_share500=n/a workers2=n/a "
                "fetch_p95_ms=n/a errors=1"
            )
            return 2
        floor: Server | None = None
        try:
            log(f"  service pid {service.pid} ({service.how}) ready")
            if args.soak:
                results = soak_run(service, args.soak_seconds, args.soak_entries, args.client)
            else:
                floor = start_floor(RESULTS / f"{stem}-floor.log")
                results = run_suite(
                    service,
                    floor,
                    profile,
                    sizes=sizes,
                    hooks=hooks,
                    client=args.client,
                    fetch=not args.no_fetch,
                    scale=args.scale,
                )
                if not args.no_workers and 500 in sizes:
                    floor.stop()
                    results["workers"] = workers_phase(
                        service, Path(tmp), stem, profile, args.client, args.scale, args.service_src
                    )
        finally:
            service.stop()
            if floor is not None:
                floor.stop()
    results["machine"] = info
    results["service_src"] = str(args.service_src or REPO)
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    if args.soak:
        path = _write(results, stem)
        log(f"results: {path}")
        s = results["soak"]
        print(
            f"soak: seconds={s['seconds']:.0f} requests={s['requests']} errors={s['errors']} "
            f"rss_start_mib={(s['rss_start_kib'] or 0) / 1024:.1f} "
            f"rss_end_mib={(s['rss_end_kib'] or 0) / 1024:.1f} growth_pct={s['rss_growth_pct']}"
        )
        return 0
    conclude(results)
    path = _write(results, stem)
    table = markdown_table(_nan_to_none(results))
    (RESULTS / f"{stem}.md").write_text(table + "\n", "utf-8")
    log("")
    log(table)
    log("")
    log(f"checks: {results['checks']}")
    log(f"targets: {results['targets']}")
    log(f"results: {path} ({results['wall_seconds']:.0f} s)")
    line = summary_line(results)
    if args.record:
        FIGURES.write_text(figures_page(results, table, line), "utf-8")
        log(f"figures: {FIGURES}")
    print(line)
    return 0


FIGURES = REPO / "bench" / "FIGURES.md"


def figures_page(results: dict[str, Any], table: str, line: str) -> str:
    """bench/FIGURES.md: the latest recorded run, as the bench wrote it."""
    targets = "\n".join(
        f"| {name} | {'met' if ok else 'not met' if ok is False else 'not measured'} |"
        for name, ok in results["targets"].items()
    )
    workers = results.get("workers", {})
    scaling = ""
    if "one_worker_rps" in workers:
        scaling = (
            f"\n\n`--workers 2` at c=8, 500 entries, order-select: {workers['two_workers_rps']:.0f}"
            f" req/s against {workers['one_worker_rps']:.0f} req/s for one worker "
            f"({workers['scaling']:.2f}×, medians over {workers['rounds']} alternating bursts)."
        )
    return (
        "# Benchmark figures\n\n"
        "Written by `python bench/run.py --record` (see bench/README.md for the method); do not "
        "edit by hand.\n\n"
        f"```\n{line}\n```\n\n{table}{scaling}\n\n| target | |\n|---|---|\n{targets}\n"
    )


def serve_offers_workers() -> bool:
    from bench.processes import service_command

    prefix, _ = service_command()
    try:
        out = subprocess.run(
            [*prefix, "serve", "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return "--workers" in out.stdout


def workers_phase(
    one: Server,
    tmp: Path,
    stem: str,
    profile: Profile,
    client: str,
    scale: float,
    source: Path | None,
) -> dict[str, Any]:
    """c=8 throughput of `--workers 2` over one worker, bursts alternating (500 entries)."""
    if not serve_offers_workers():
        log("  workers: `cds-service serve` has no --workers; skipped")
        return {"skipped": "serve has no --workers"}
    try:
        two = start_service(
            tmp / "data-w2", RESULTS / f"{stem}-service-w2.log", source=source, workers=2
        )
    except StartError as exc:
        log(f"  workers: the 2-worker service did not start: {exc}")
        return {"skipped": str(exc).splitlines()[0][:300]}
    try:
        document = discovery_of(one)
        templates = templates_from_discovery(document)
        path = f"/cds-services/{service_ids_from_discovery(document)['order-select']}"
        body = Body.of(
            hook_request("order-select", generate_record(500), templates["order-select"])
        )
        targets = (Target("one", one, path), Target("two", two, path))
        row = run_async(
            alternate_bursts(
                targets,
                body,
                rounds=max(profile.c8_rounds, 2),
                seconds=_scaled(profile.c8_seconds[500], scale, 0.5),
                concurrency=8,
                client=client,
            )
        )
    finally:
        two.stop()
    one_rps, two_rps = row["one"]["throughput_rps"], row["two"]["throughput_rps"]
    log(f"  workers: one {one_rps:.0f} req/s, two {two_rps:.0f} req/s")
    return {
        "one_worker_rps": one_rps,
        "two_workers_rps": two_rps,
        "scaling": two_rps / one_rps if one_rps else None,
        "rounds": row["rounds"],
        "errors": row["one"]["errors"] + row["two"]["errors"],
    }


def soak_run(service: Server, seconds: float, entries: int, client: str) -> dict[str, Any]:
    document = discovery_of(service)
    templates = templates_from_discovery(document)
    ids = service_ids_from_discovery(document)
    record = generate_record(entries)
    targets = [
        (
            Target("service", service, f"/cds-services/{ids[h]}"),
            Body.of(hook_request(h, record, templates[h])),
        )
        for h in HOOKS
        if h in ids
    ]
    log(f"  soak: {seconds:.0f} s at concurrency 8, {entries} entries, hooks {sorted(ids)}")
    result = run_async(soak(targets, seconds=seconds, concurrency=8, client=client))
    return {"profile": "soak", "entries": entries, "client": client, "soak": result}


if __name__ == "__main__":
    raise SystemExit(main())
