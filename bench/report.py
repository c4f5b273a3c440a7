"""What a run prints and keeps: machine description, the Markdown table, the summary line."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .processes import REPO


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text("ascii", "replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {
            d: _version(d) for d in ("uvicorn", "uvloop", "httptools", "orjson", "fastapi", "httpx")
        },
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "cds_service", "rules", "cards")),
    }


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def markdown_table(results: dict[str, Any]) -> str:
    """size × hook × p50 / p99 × ratio at c=1, then c=8 throughput, fetch and memory."""
    m = results["machine"]
    lines = [
        f"Run {m['date_utc']} UTC, {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"uvicorn {m['packages']['uvicorn']} (uvloop {m['packages']['uvloop']}, httptools "
        f"{m['packages']['httptools']}), commit {m['git_commit']}, profile `{results['profile']}`"
        f", load average at start {m['load_avg'][0]}.",
        "",
        "| entries | hook | body KB | service p50 ms | service p99 ms | floor p50 ms "
        "| floor p99 ms | ratio p50 | ratio CPU |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["c1"]:
        s, f = row["service"], row["floor"]
        lines.append(
            f"| {row['entries']:,} | {row['hook']} | {row['body_bytes'] / 1000:,.0f} "
            f"| {_f(s['p50_ms'], 2)} | {_f(s['p99_ms'], 2)} | {_f(f['p50_ms'], 2)} "
            f"| {_f(f['p99_ms'], 2)} | {_f(row['ratio_p50'], 2)} | {_f(row['ratio_cpu'], 2)} |"
        )
    if results.get("c8"):
        lines += [
            "",
            "| entries | hook | c | service req/s | floor req/s | service p50 / p99 ms "
            "| floor p50 / p99 ms |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for row in results["c8"]:
            s, f = row["service"], row["floor"]
            lines.append(
                f"| {row['entries']:,} | {row['hook']} | {row['concurrency']} "
                f"| {_f(s['throughput_rps'], 0)} | {_f(f['throughput_rps'], 0)} "
                f"| {_f(s['p50_ms'])} / {_f(s['p99_ms'])} | {_f(f['p50_ms'])} / {_f(f['p99_ms'])} |"
            )
    for case in results.get("fetch", []):
        if "skipped" in case:
            lines += ["", f"Fetch path: skipped ({case['skipped']})."]
            continue
        s, d = case["service"], case["direct_fetch"]
        lines += [
            "",
            f"Fetch path ({case['entries']} entries, {case['searches']} prefetch queries, "
            f"FHIR page size {case['page_size']}): service p50 {_f(s['p50_ms'])} ms, "
            f"p95 {_f(s['p95_ms'])} ms; the same searches made directly: p50 "
            f"{_f(d['p50_ms'])} ms, p95 {_f(d['p95_ms'])} ms.",
        ]
    mem = results.get("memory", {})
    if mem:
        lines += [
            "",
            f"Peak RSS (VmHWM): service {mem.get('service_peak_kib', 0) / 1024:.0f} MiB, "
            f"floor {mem.get('floor_peak_kib', 0) / 1024:.0f} MiB.",
        ]
    return "\n".join(lines)


def summary_line(results: dict[str, Any]) -> str:
    """bench: ratio500=… ratio50=… p99_5000_ms=… c8_share500=… workers2=… fetch_p95_ms=…
    errors=…"""
    headline = results.get("headline", {})

    def fmt(key: str, digits: int) -> str:
        value = headline.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{value:.{digits}f}"

    return (
        f"bench: ratio500={fmt('ratio500', 2)} ratio50={fmt('ratio50', 2)} "
        f"p99_5000_ms={fmt('p99_5000_ms', 1)} c8_share500={fmt('c8_share500', 2)} "
        f"workers2={fmt('workers2', 2)} fetch_p95_ms={fmt('fetch_p95_ms', 1)} "
        f"errors={results.get('errors', {}).get('total', 0)}"
    )
