"""Timing requests: request bodies, senders, outcome checks, alternating c=1 runs, c=N bursts.

Every request carries a fresh hookInstance (as an EHR's would) without re-encoding the body:
a body is kept as the bytes before the hookInstance value and the bytes after it, and the
new UUID is written between them. Bodies are prepared before the clock starts; the clock
stops when the last byte of the answer is read; the answer is checked afterwards.
An answer counts as an error unless it is HTTP 200 with a JSON object holding a `cards` list.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson

from .client import HTTPClientError, RawConnection, Reply
from .processes import Server
from .stats import median_of, ratio, summarize

_PREFIX = b'{"hookInstance":"'
_UUID_LEN = 36


@dataclass(frozen=True)
class Body:
    """A serialized request whose hookInstance is replaced on every send."""

    prefix: bytes
    suffix: bytes

    @staticmethod
    def of(request: Mapping[str, Any]) -> Body:
        data = orjson.dumps(request)
        if not data.startswith(_PREFIX) or data[len(_PREFIX) + _UUID_LEN] != ord('"'):
            raise ValueError("hookInstance must be the first member and a 36-character UUID")
        return Body(_PREFIX, data[len(_PREFIX) + _UUID_LEN :])

    @property
    def length(self) -> int:
        return len(self.prefix) + _UUID_LEN + len(self.suffix)

    def parts(self) -> tuple[bytes, bytes]:
        return self.prefix + str(uuid.uuid4()).encode("ascii"), self.suffix


class Sender(Protocol):
    async def prepare(self, path: str, body: Body) -> object: ...
    async def send(self, prepared: object) -> Reply: ...
    async def close(self) -> None: ...


class RawSender:
    """Requests over one raw keep-alive connection (bench/client.py)."""

    def __init__(self, server: Server) -> None:
        self.conn = RawConnection("127.0.0.1", server.port)

    async def prepare(self, path: str, body: Body) -> object:
        await self.conn.connect()
        return self.conn.head("POST", path, body.length), body.parts()

    async def send(self, prepared: object) -> Reply:
        assert isinstance(prepared, tuple)
        head: bytes = prepared[0]
        parts: tuple[bytes, ...] = prepared[1]
        return await self.conn.request(head, parts)

    async def close(self) -> None:
        await self.conn.close()


class HttpxSender:
    """The same through one httpx.AsyncClient (for comparison; costs ~1 ms per request)."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.AsyncClient(base_url=server.base, timeout=60.0)

    async def prepare(self, path: str, body: Body) -> object:
        return self.client.build_request(
            "POST",
            path,
            content=b"".join(body.parts()),
            headers={"content-type": "application/json"},
        )

    async def send(self, prepared: object) -> Reply:
        assert isinstance(prepared, httpx.Request)
        try:
            response = await self.client.send(prepared)
        except httpx.HTTPError as exc:
            raise HTTPClientError(f"{type(exc).__name__}: {exc}") from None
        return Reply(response.status_code, response.content)

    async def close(self) -> None:
        await self.client.aclose()


def make_sender(kind: str, server: Server) -> Sender:
    return HttpxSender(server) if kind == "httpx" else RawSender(server)


@dataclass
class Tally:
    """Latencies and errors of one target in one measurement."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    first_cards: list[dict[str, Any]] | None = None

    def record(self, elapsed: float, reply: Reply | None, failure: str | None) -> None:
        if reply is None:
            self._error(failure or "no reply")
            return
        cards = _cards(reply)
        if cards is None:
            snippet = reply.body[:300].decode("utf-8", "replace")
            self._error(f"HTTP {reply.status}: {snippet}")
            return
        self.latencies.append(elapsed)
        if self.first_cards is None:
            self.first_cards = cards

    def _error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(text)


def _cards(reply: Reply) -> list[dict[str, Any]] | None:
    if reply.status != 200:
        return None
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    cards = data.get("cards") if isinstance(data, dict) else None
    return cards if isinstance(cards, list) else None


def card_digest(cards: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """What the cards said, for the sanity checks (synthetic patient: no PHI)."""
    if cards is None:
        return {"answered": False}
    return {
        "answered": True,
        "count": len(cards),
        "indicators": sorted(str(c.get("indicator")) for c in cards),
        "summaries": sorted(str(c.get("summary")) for c in cards),
    }


async def timed_send(sender: Sender, path: str, body: Body, tally: Tally) -> None:
    prepared = await sender.prepare(path, body)
    started = time.perf_counter()
    try:
        reply = await sender.send(prepared)
    except HTTPClientError as exc:
        tally.record(time.perf_counter() - started, None, str(exc))
        return
    tally.record(time.perf_counter() - started, reply, None)


@dataclass(frozen=True)
class Target:
    name: str
    server: Server
    path: str


async def alternate_c1(
    targets: Sequence[Target],
    body: Body,
    *,
    rounds: int,
    per_round: int,
    warmup: int,
    client: str,
) -> dict[str, Any]:
    """Concurrency 1: requests alternate between the targets (order flipped every pair), in
    `rounds` rounds; per-round percentiles, then the median of each over the rounds."""
    senders = {t.name: make_sender(client, t.server) for t in targets}
    try:
        scratch = {t.name: Tally() for t in targets}
        for _ in range(warmup):
            for t in targets:
                await timed_send(senders[t.name], t.path, body, scratch[t.name])
        per_target: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
        totals = {t.name: Tally() for t in targets}
        for r in range(rounds):
            tallies = {t.name: Tally() for t in targets}
            cpu0 = {t.name: t.server.cpu_seconds() for t in targets}
            for i in range(per_round):
                order = targets if (i + r) % 2 == 0 else tuple(reversed(targets))
                for t in order:
                    await timed_send(senders[t.name], t.path, body, tallies[t.name])
            for t in targets:
                tally = tallies[t.name]
                summary = summarize(tally.latencies)
                done = max(len(tally.latencies), 1)
                summary["cpu_ms_per_req"] = round(
                    (t.server.cpu_seconds() - cpu0[t.name]) * 1000 / done, 3
                )
                summary["errors"] = float(tally.errors)
                per_target[t.name].append(summary)
                _merge(totals[t.name], tally)
        out: dict[str, Any] = {"rounds": rounds, "per_round": per_round}
        for t in targets:
            rs = per_target[t.name]
            out[t.name] = {
                "p50_ms": median_of(rs, "p50_ms"),
                "p95_ms": median_of(rs, "p95_ms"),
                "p99_ms": median_of(rs, "p99_ms"),
                "mean_ms": median_of(rs, "mean_ms"),
                "cpu_ms_per_req": median_of(rs, "cpu_ms_per_req"),
                "pooled": summarize(totals[t.name].latencies),
                "errors": totals[t.name].errors + scratch[t.name].errors,
                "error_samples": (scratch[t.name].error_samples + totals[t.name].error_samples)[:3],
                "rounds": rs,
                "cards": card_digest(scratch[t.name].first_cards or totals[t.name].first_cards),
            }
        if len(targets) == 2:
            a, b = (t.name for t in targets)
            out["ratio_p50"] = ratio(out[a]["p50_ms"], out[b]["p50_ms"])
            out["ratio_p99"] = ratio(out[a]["p99_ms"], out[b]["p99_ms"])
            out["ratio_cpu"] = ratio(out[a]["cpu_ms_per_req"], out[b]["cpu_ms_per_req"])
            out["ratio_p50_by_round"] = [
                ratio(x["p50_ms"], y["p50_ms"])
                for x, y in zip(per_target[a], per_target[b], strict=True)
            ]
        return out
    finally:
        for s in senders.values():
            await s.close()


def _merge(into: Tally, tally: Tally) -> None:
    into.latencies += tally.latencies
    into.errors += tally.errors
    into.error_samples = (into.error_samples + tally.error_samples)[:3]
    if into.first_cards is None:
        into.first_cards = tally.first_cards


async def burst(
    target: Target, body: Body, *, concurrency: int, seconds: float, client: str
) -> dict[str, Any]:
    """`concurrency` workers, each on its own connection, send back to back for `seconds`."""
    senders = [make_sender(client, target.server) for _ in range(concurrency)]
    tallies = [Tally() for _ in senders]
    for s in senders:  # connect before the clock starts
        await s.prepare(target.path, body)
    cpu0 = target.server.cpu_seconds()
    started = time.perf_counter()
    deadline = started + seconds
    last_end = started

    async def worker(sender: Sender, tally: Tally) -> None:
        nonlocal last_end
        while time.perf_counter() < deadline:
            await timed_send(sender, target.path, body, tally)
            last_end = max(last_end, time.perf_counter())

    try:
        await asyncio.gather(*(worker(s, t) for s, t in zip(senders, tallies, strict=True)))
    finally:
        for s in senders:
            await s.close()
    elapsed = max(last_end - started, 1e-9)
    total = Tally()
    for t in tallies:
        _merge(total, t)
    summary: dict[str, Any] = summarize(total.latencies)
    summary["throughput_rps"] = round(len(total.latencies) / elapsed, 1)
    summary["cpu_ms_per_req"] = round(
        (target.server.cpu_seconds() - cpu0) * 1000 / max(len(total.latencies), 1), 3
    )
    summary["errors"] = total.errors
    summary["error_samples"] = total.error_samples
    return summary


async def alternate_bursts(
    targets: Sequence[Target],
    body: Body,
    *,
    rounds: int,
    seconds: float,
    concurrency: int,
    client: str,
) -> dict[str, Any]:
    """Bursts alternate between the targets, `rounds` times (order flipped every round)."""
    results: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for t in targets:  # warm the connections' paths
        await burst(t, body, concurrency=concurrency, seconds=min(seconds, 0.3), client=client)
    for r in range(rounds):
        order = targets if r % 2 == 0 else tuple(reversed(targets))
        for t in order:
            results[t.name].append(
                await burst(t, body, concurrency=concurrency, seconds=seconds, client=client)
            )
    out: dict[str, Any] = {"concurrency": concurrency, "rounds": rounds, "seconds": seconds}
    for t in targets:
        rs = results[t.name]
        out[t.name] = {
            "p50_ms": median_of(rs, "p50_ms"),
            "p95_ms": median_of(rs, "p95_ms"),
            "p99_ms": median_of(rs, "p99_ms"),
            "throughput_rps": median_of(rs, "throughput_rps"),
            "cpu_ms_per_req": median_of(rs, "cpu_ms_per_req"),
            "errors": sum(int(x["errors"]) for x in rs),
            "error_samples": [s for x in rs for s in x["error_samples"]][:3],
            "rounds": rs,
        }
    if len(targets) == 2:
        a, b = (t.name for t in targets)
        out["ratio_p50"] = ratio(out[a]["p50_ms"], out[b]["p50_ms"])
        out["ratio_throughput"] = ratio(out[b]["throughput_rps"], out[a]["throughput_rps"])
    return out
