"""The HTTP server: uvicorn configured from settings, behind a connection guard of our own.

Left alone, uvicorn (httptools) reads a request head of any size and with any number of
header fields (a 256 MB header cost 111 s of CPU: httptools joins header pieces
quadratically), waits forever for a head or a body that trickles in, and keeps every idle
connection open until file descriptors run out. `GuardedHttpToolsProtocol` enforces, before
the application sees a request:

- **head size**: request line and headers together at most `CDS_MAX_HEADER_BYTES`, counted as
  bytes arrive (so a huge header is never buffered) → 431;
- **header count**: at most `CDS_MAX_HEADERS` fields → 431;
- **head time**: a complete head within `CDS_HEADER_TIMEOUT_SECONDS` of connecting or of the
  previous response → 408 (or a silent close if nothing was sent); uvicorn's own
  `CDS_KEEPALIVE_TIMEOUT_SECONDS` closes a connection that stays silent after a response;
- **body time** (a backstop): a body still incomplete `BODY_GRACE_SECONDS` after
  `CDS_BODY_TIMEOUT_SECONDS` → closed. The routes that read a body answer 408 themselves at
  `CDS_BODY_TIMEOUT_SECONDS` or after `CDS_BODY_IDLE_TIMEOUT_SECONDS` of silence (api.py);
  the backstop covers requests nobody reads (an unknown route, an early refusal);
- **connections**: at most `CDS_MAX_CONNECTIONS` per worker (lowered to fit the process's file
  descriptor limit). At the limit, the connection that has waited longest for a request head
  (no request in flight: idle keep-alive, or trickling a head) is closed to admit the new
  one, so idle connections cannot lock clients out; with none idle, the new connection gets
  503 and is closed.

Refusals are OperationOutcome JSON with `Connection: close`, logged as one bounded line.
Graceful shutdown is bounded by `CDS_SHUTDOWN_TIMEOUT_SECONDS` (uvicorn cancels what is still
running). WebSockets are off. The guard subclasses uvicorn's httptools protocol, so the
uvicorn version is pinned to a range in pyproject.toml and the end-to-end tests
(tests/test_server_limits.py) exercise every limit through a real process.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import resource
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .logs import truncate
from .settings import Settings

log = logging.getLogger("cds_service.server")

BODY_GRACE_SECONDS = 5.0
"""The body backstop fires this long after the API's own body timeout."""

_FD_RESERVE = 64
"""File descriptors kept for everything but client connections (store, FHIR calls, logs)."""


@dataclass(frozen=True)
class Limits:
    """The guard's limits, from settings."""

    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds + BODY_GRACE_SECONDS,
            max_connections=connection_limit(settings.max_connections),
        )


def connection_limit(wanted: int) -> int:
    """`wanted`, lowered if the file descriptor limit cannot hold that many connections (the
    soft limit is raised towards the hard one first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + _FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    fitted = max(8, soft - _FD_RESERVE)
    log.warning(
        "CDS_MAX_CONNECTIONS lowered to fit the file descriptor limit",
        extra={"wanted": wanted, "max_connections": fitted, "nofile": soft},
    )
    return fitted


@functools.cache
def _limits_from_environment() -> Limits:
    """For worker processes started by uvicorn (`--workers`): settings from CDS_* again."""
    return Limits.from_settings(Settings())


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal is on the protocol."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module docstring."""

    limits: ClassVar[Limits | None] = None
    """Set by `configure`; worker processes read the environment instead."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = type(self).limits or _limits_from_environment()
        self._awaiting_head = True
        self._head_bytes = 0
        self._head_size = 0
        self._header_count = 0
        self._pending: tuple[int, str, str] | None = None
        self._refused = False
        self._head_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None
        self.waiting_since: float | None = None
        """loop time since when this connection waits for a request head; None while a
        request is in flight."""

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        admitted = self._make_room()
        super().connection_made(transport)
        if not admitted:
            self._refuse(503, "transient", "too many connections; retry shortly")
            return
        self._wait_for_head()

    def _make_room(self) -> bool:
        """True when this new connection fits, closing the longest-waiting idle one if needed."""
        limit = self._limits.max_connections
        if len(self.connections) < limit:
            return True
        live = [c for c in self.connections if not c.transport.is_closing()]
        if len(live) < limit:
            return True
        idle = [
            c
            for c in live
            if isinstance(c, GuardedHttpToolsProtocol) and c.waiting_since is not None
        ]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.waiting_since or 0.0)
        victim.waiting_since = None
        victim.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self.waiting_since = None
        super().connection_lost(exc)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _wait_for_head(self) -> None:
        self.waiting_since = self.loop.time()
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_late)

    def _in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _head_late(self) -> None:
        self._head_timer = None
        if not self._awaiting_head or self.transport.is_closing() or self._in_flight():
            return
        if self._head_bytes:
            self._refuse(
                408,
                "timeout",
                f"request head not complete within {self._limits.header_timeout:g} s "
                "(CDS_HEADER_TIMEOUT_SECONDS)",
            )
        else:
            self.transport.close()

    def _body_late(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
            return
        self._refuse(
            408,
            "timeout",
            f"request body not complete within {self._limits.body_timeout:g} s",
        )

    # -- reading ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if self._awaiting_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # as uvicorn does: WebSockets are off
            return
        except httptools.HttpParserError:
            if self._pending is not None:
                self._refuse(*self._pending)
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        if self._awaiting_head and self._head_bytes > self._limits.max_header_bytes:
            self._refuse(*self._head_too_large())

    def _head_too_large(self) -> tuple[int, str, str]:
        return (
            431,
            "too-long",
            f"request head over {self._limits.max_header_bytes} bytes (CDS_MAX_HEADER_BYTES)",
        )

    def _stop(self, refusal: tuple[int, str, str]) -> None:
        self._pending = refusal
        raise _Refused

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self._limits.max_header_bytes:
            self._stop(self._head_too_large())
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4
        if self._header_count > self._limits.max_headers:
            self._stop(
                (
                    431,
                    "too-long",
                    f"more than {self._limits.max_headers} header fields (CDS_MAX_HEADERS)",
                )
            )
        if self._head_size > self._limits.max_header_bytes:
            self._stop(self._head_too_large())
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self.waiting_since = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._body_timer = self.loop.call_later(self._limits.body_timeout, self._body_late)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._awaiting_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or not self._awaiting_head or self._in_flight():
            return
        self._wait_for_head()

    # -- refusing --------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "invalid", msg)

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer `status` with an OperationOutcome (unless a response is under way), close."""
        self._refused = True
        self._cancel_timers()
        self.waiting_since = None
        log.warning("connection refused", extra={"status": status, "reason": truncate(message)})
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            body = orjson.dumps(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": code, "diagnostics": message}],
                }
            )
            head = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head += [
                b"content-type: application/fhir+json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


def configure(settings: Settings) -> dict[str, Any]:
    """uvicorn.run keyword arguments for these settings (protocol, timeouts, logging)."""
    GuardedHttpToolsProtocol.limits = Limits.from_settings(settings)
    return {
        "http": GuardedHttpToolsProtocol,
        "ws": "none",
        "timeout_keep_alive": max(1, math.ceil(settings.keepalive_timeout_seconds)),
        "timeout_graceful_shutdown": max(1, math.ceil(settings.shutdown_timeout_seconds)),
        "server_header": False,
        "log_config": None,
        "access_log": False,
    }


def loopback_base_urls(host: str, port: int, scheme: str) -> list[str] | None:
    """The base URLs of a service bound to a loopback `host` (by its address and as
    localhost), or None when `host` is not a loopback address."""
    if host == "localhost":
        return [f"{scheme}://localhost:{port}", f"{scheme}://127.0.0.1:{port}"]
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if not ip.is_loopback:
        return None
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    return [f"{scheme}://{shown}:{port}", f"{scheme}://localhost:{port}"]
