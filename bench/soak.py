"""Soak: the service alone at concurrency 8 for minutes; errors, latency drift and memory.

Workers cycle through the three hooks at one record size, each request with a fresh
hookInstance. Resident memory is read at start-up (idle), after the warm-up (the first 10% of
the run, at least 15 s: allocator arenas and caches fill), every sample interval, and at the
end; growth is end over after-warm-up (and over idle, for reference).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from .measure import Body, Sender, Tally, Target, make_sender, timed_send
from .stats import summarize


async def soak(
    targets: Sequence[tuple[Target, Body]],
    *,
    seconds: float,
    concurrency: int,
    client: str,
    sample_every: float = 10.0,
) -> dict[str, Any]:
    service = targets[0][0].server
    idle_kib = service.status_kib("VmRSS")
    warmup = min(max(seconds * 0.1, 15.0), seconds / 2)
    started = time.perf_counter()
    deadline = started + seconds
    window = Tally()
    total_errors = 0
    total_requests = 0
    samples: list[dict[str, Any]] = []
    warm_kib: int | None = None
    error_samples: list[str] = []
    turn = 0

    async def worker(sender: Sender) -> None:
        nonlocal turn
        while time.perf_counter() < deadline:
            target, body = targets[turn % len(targets)]
            turn += 1
            await timed_send(sender, target.path, body, window)

    async def sampler() -> None:
        nonlocal window, total_errors, total_requests, warm_kib, error_samples
        next_sample = started + sample_every
        while time.perf_counter() < deadline:
            await asyncio.sleep(min(0.5, max(deadline - time.perf_counter(), 0)))
            now = time.perf_counter()
            if warm_kib is None and now - started >= warmup:
                warm_kib = service.status_kib("VmRSS")
            if now >= next_sample or now >= deadline:
                done, window = window, Tally()
                total_errors += done.errors
                total_requests += len(done.latencies) + done.errors
                error_samples = (error_samples + done.error_samples)[:3]
                samples.append(
                    {
                        "t_s": round(now - started, 1),
                        "rss_kib": service.status_kib("VmRSS"),
                        "requests": len(done.latencies) + done.errors,
                        "errors": done.errors,
                        **summarize(done.latencies),
                    }
                )
                next_sample += sample_every

    senders = [make_sender(client, service) for _ in range(concurrency)]
    try:
        await asyncio.gather(sampler(), *(worker(s) for s in senders))
    finally:
        for s in senders:
            await s.close()
    total_errors += window.errors
    total_requests += len(window.latencies) + window.errors
    end_kib = service.status_kib("VmRSS")
    growth = (
        round(100.0 * (end_kib - warm_kib) / warm_kib, 2)
        if end_kib is not None and warm_kib
        else None
    )
    return {
        "seconds": seconds,
        "concurrency": concurrency,
        "requests": total_requests,
        "errors": total_errors,
        "error_samples": error_samples,
        "rss_idle_kib": idle_kib,
        "rss_start_kib": warm_kib,
        "rss_end_kib": end_kib,
        "rss_peak_kib": service.status_kib("VmHWM"),
        "rss_growth_pct": growth,
        "rss_growth_over_idle_pct": (
            round(100.0 * (end_kib - idle_kib) / idle_kib, 2) if end_kib and idle_kib else None
        ),
        "samples": samples,
    }
