"""Latency statistics: nearest-rank percentiles, per-round summaries and medians of rounds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

PERCENTILES: tuple[int, ...] = (50, 95, 99)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence (the p99 of 20 values is the max)."""
    if not sorted_values:
        return math.nan
    rank = max(math.ceil(p / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def summarize(latencies_s: Iterable[float]) -> dict[str, float]:
    """n, p50 / p95 / p99 and mean in milliseconds."""
    ms = sorted(v * 1000 for v in latencies_s)
    out: dict[str, float] = {"n": float(len(ms))}
    for p in PERCENTILES:
        out[f"p{p}_ms"] = round(percentile(ms, p), 3)
    out["mean_ms"] = round(statistics.fmean(ms), 3) if ms else math.nan
    return out


def median_of(rounds: Sequence[Mapping[str, float]], key: str) -> float:
    values = [r[key] for r in rounds if key in r and not math.isnan(r[key])]
    return round(statistics.median(values), 3) if values else math.nan


def ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b) or b <= 0:
        return math.nan
    return round(a / b, 3)
