"""The fetch path: no prefetch; the service fetches the record from a real FHIR server.

The FHIR server is the one the end-to-end tests use (tests/support/fhir_server.py: node and
@medplum/fhir-router on 127.0.0.1, bearer token required). Each service request (timed at the
client, like the prefetch runs) alternates with a *direct fetch*: the driver itself issues the
same searches the service must make — every prefetch template of the hook, concurrently,
following `next` links, with the bearer token, through httpx as the service does — so the
report separates the FHIR server's own time from ours.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from typing import Any

import httpx

from .generate import PATIENT_ID, generate_record, hook_request
from .measure import Body, Tally, Target, card_digest, make_sender, timed_send
from .processes import Server
from .stats import median_of, ratio, summarize

PATIENT_TOKEN = "{{context.patientId}}"


async def _search_all(client: httpx.AsyncClient, url: str, token: str) -> int:
    """Follow a search's next links; return the number of resources read."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    read = 0
    next_url: str | None = url
    while next_url:
        response = await client.get(next_url, headers=headers)
        response.raise_for_status()
        data = response.json()
        if data.get("resourceType") != "Bundle":
            return read + 1
        read += len(data.get("entry") or [])
        next_url = next(
            (link["url"] for link in data.get("link") or [] if link.get("relation") == "next"),
            None,
        )
    return read


async def direct_fetch(
    client: httpx.AsyncClient, base: str, templates: Mapping[str, str], token: str
) -> int:
    urls = [f"{base}/{q.replace(PATIENT_TOKEN, PATIENT_ID)}" for q in templates.values()]
    counts = await asyncio.gather(*(_search_all(client, u, token) for u in urls))
    return sum(counts)


def run_fetch_case(
    service: Server,
    path: str,
    templates: Mapping[str, str],
    *,
    entries: int,
    page_size: int | None,
    rounds: int,
    per_round: int,
    client: str,
) -> dict[str, Any]:
    """Start a FHIR server holding an `entries` record, then alternate service and direct."""
    from tests.support.fhir_server import running_fhir_server

    record = generate_record(entries)
    token = secrets.token_urlsafe(24)
    with running_fhir_server(record, token, page_size=page_size) as base:
        request = hook_request(
            "order-select", record, None, fhir_server=base, token=token, hook_instance=None
        )
        body = Body.of(request)
        return asyncio.run(
            _alternate(service, path, templates, base, token, body, rounds, per_round, client)
        ) | {"entries": entries, "page_size": page_size or 50, "searches": len(templates)}


async def _alternate(
    service: Server,
    path: str,
    templates: Mapping[str, str],
    base: str,
    token: str,
    body: Body,
    rounds: int,
    per_round: int,
    client: str,
) -> dict[str, Any]:
    target = Target("service", service, path)
    sender = make_sender(client, service)
    limits = httpx.Limits(max_connections=len(templates) + 2)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as fhir:
        resources = await direct_fetch(fhir, base, templates, token)  # warm-up and a count
        warm = Tally()
        for _ in range(3):
            await timed_send(sender, target.path, body, warm)
        service_rounds: list[dict[str, float]] = []
        direct_rounds: list[dict[str, float]] = []
        total = Tally()
        for r in range(rounds):
            tally = Tally()
            direct: list[float] = []
            for i in range(per_round):
                if (i + r) % 2 == 0:
                    await timed_send(sender, target.path, body, tally)
                started = time.perf_counter()
                await direct_fetch(fhir, base, templates, token)
                direct.append(time.perf_counter() - started)
                if (i + r) % 2 == 1:
                    await timed_send(sender, target.path, body, tally)
            service_rounds.append(summarize(tally.latencies) | {"errors": float(tally.errors)})
            direct_rounds.append(summarize(direct))
            total.latencies += tally.latencies
            total.errors += tally.errors
            total.error_samples = (total.error_samples + tally.error_samples)[:3]
    await sender.close()
    out: dict[str, Any] = {"resources_fetched_directly": resources}
    for name, rs in (("service", service_rounds), ("direct_fetch", direct_rounds)):
        out[name] = {
            "p50_ms": median_of(rs, "p50_ms"),
            "p95_ms": median_of(rs, "p95_ms"),
            "p99_ms": median_of(rs, "p99_ms"),
            "rounds": rs,
        }
    out["service"]["errors"] = total.errors + warm.errors
    out["service"]["error_samples"] = (warm.error_samples + total.error_samples)[:3]
    out["service"]["pooled"] = summarize(total.latencies)
    out["service"]["cards"] = card_digest(warm.first_cards or total.first_cards)
    out["ratio_p95_service_over_direct"] = ratio(
        out["service"]["p95_ms"], out["direct_fetch"]["p95_ms"]
    )
    return out
