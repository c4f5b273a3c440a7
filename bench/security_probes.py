"""Security probes: the attacks of issue 15, run against a real `cds-service serve` process.

Each probe starts the service the way an operator does (bench/processes.py), attacks it over
loopback, and reports what happened: status, wall time, the service's CPU seconds and peak
resident memory (VmHWM) growth, whether a hostile FHIR server was contacted or handed the
token, and the longest log line. The closing note of issue 15 quotes this table, run once at
the commit before the fix (`--service-src <old tree>`) and once at the fix.

    python bench/security_probes.py                       # every probe, this tree
    python bench/security_probes.py --only header-256mb,idle-300
    python bench/security_probes.py --service-src /tmp/old-tree --out before.md

The hostile FHIR server is a threaded Python HTTP server in this process on 127.0.0.1; it
streams its bodies (never holds 200 MB itself) and records every request it gets. Loopback
FHIR servers are refused by the hardened service unless CDS_ALLOW_LOOPBACK_FHIR=true, so the
probes that measure response handling set it (and CDS_ALLOW_HTTP_FHIR=true); the probes that
measure the refusal do not. Settings the older tree does not know are ignored by it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import processes  # noqa: E402
from tests.support.jwt_factory import SigningClient, write_trusted_clients  # noqa: E402

MIB = 1024 * 1024
PROBE_TOKEN = "probe-fhir-token-0123456789"
SELECT = "/cds-services/phall-order-select"
EHR = SigningClient(iss="https://ehr.example.org")


# --- the hostile FHIR server --------------------------------------------------------------------


def _entry(i: int) -> bytes:
    head = (
        b'{"fullUrl":"https://x/Observation/o%d","resource":{"resourceType":"Observation",'
        b'"id":"o%d","status":"final","subject":{"reference":"Patient/pt-1"},' % (i, i)
    )
    return head + (
        b'"code":{"coding":[{"system":"http://loinc.org","code":"718-7","display":'
        b'"Hemoglobin [Mass/volume] in Blood"}],"text":"Hemoglobin"},'
        b'"effectiveDateTime":"2024-01-01T00:00:00Z","valueQuantity":{"value":12.5,'
        b'"unit":"g/dL","system":"http://unitsofmeasure.org","code":"g/dL"},'
        b'"note":[{"text":"' + b"n" * 600 + b'"}]}}'
    )


_TINY = b'{"resource":{"resourceType":"Observation"}}'
_GZIP_PATH = Path(tempfile.gettempdir()) / "cds-probe-bomb-1g.json.gz"


def gzip_bomb() -> bytes:
    """~1 MiB of gzip that inflates to a 1 GiB JSON document (cached in /tmp)."""
    if _GZIP_PATH.exists():
        return _GZIP_PATH.read_bytes()
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [comp.compress(b'{"resourceType":"Bundle","type":"searchset","x":"')]
    block = b"a" * MIB
    for _ in range(1024):
        out.append(comp.compress(block))
    out.append(comp.compress(b'"}'))
    out.append(comp.flush())
    data = b"".join(out)
    _GZIP_PATH.write_bytes(data)
    return data


@dataclass
class Hostile:
    """What the hostile server saw."""

    requests: list[tuple[str, str | None]] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _bodies(mode: str, path: str) -> tuple[Iterator[bytes], int, dict[str, str]]:
    """The body (chunks), its length and extra headers for `mode` at `path`."""
    headers: dict[str, str] = {}
    if path.startswith("/Patient/") or path == "/Patient":
        body = b'{"resourceType":"Patient","id":"pt-1","birthDate":"1970-01-01"}'
        return iter([body]), len(body), headers
    if not path.startswith("/Observation") or mode == "record":
        body = b'{"resourceType":"Bundle","type":"searchset","total":0}'
        return iter([body]), len(body), headers
    if mode == "big":  # ~200 MB searchset of realistic entries
        n = 200 * MIB // len(_entry(0))
        head, tail = b'{"resourceType":"Bundle","type":"searchset","entry":[', b"]}"
        size = len(head) + len(tail) + sum(len(_entry(i)) + 1 for i in range(n)) - 1

        def big() -> Iterator[bytes]:
            yield head
            buf: list[bytes] = []
            for i in range(n):
                buf.append(_entry(i) if i == 0 else b"," + _entry(i))
                if len(buf) == 256:
                    yield b"".join(buf)
                    buf = []
            yield b"".join(buf) + tail

        return big(), size, headers
    if mode == "junk":  # 200 MB that is not JSON
        block = b"<html>" + b"x" * (MIB - 6)
        return iter([block] * 200), 200 * MIB, headers
    if mode == "tiny":  # 250,000 tiny entries
        head, tail = b'{"resourceType":"Bundle","type":"searchset","entry":[', b"]}"
        n = 250_000
        body_len = len(head) + n * len(_TINY) + (n - 1) + len(tail)

        def tiny() -> Iterator[bytes]:
            yield head
            chunk = b",".join([_TINY] * 1000)
            for i in range(n // 1000):
                yield (b"," if i else b"") + chunk
            yield tail

        return tiny(), body_len, headers
    if mode == "gzip":
        data = gzip_bomb()
        headers["Content-Encoding"] = "gzip"
        return iter([data]), len(data), headers
    raise ValueError(mode)


def start_hostile() -> tuple[ThreadingHTTPServer, Hostile]:
    seen = Hostile()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with seen.lock:
                seen.connections += 1

        def do_GET(self) -> None:
            mode, _, rest = self.path.lstrip("/").partition("/")
            with seen.lock:
                seen.requests.append(("/" + rest, self.headers.get("Authorization")))
            chunks, size, extra = _bodies(mode, "/" + rest.partition("?")[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            if size > MIB:  # no length announced: the reader has to count
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(size))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            try:
                for chunk in chunks:
                    self.wfile.write(chunk)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


# --- the service ------------------------------------------------------------------------------


_TEMP_DIRS: list[Path] = []
"""Data dirs and logs of the services started; removed when the probes end."""


@dataclass
class Run:
    server: processes.Server
    tmp: Path

    def peak_mib(self) -> float:
        return (self.server.status_kib("VmHWM") or 0) / 1024

    def max_log_line(self) -> int:
        try:
            return max((len(line) for line in self.server.log_path.open("rb")), default=0)
        except OSError:
            return 0


def start(
    source: Path | None,
    *,
    auth: bool = False,
    nofile: int | None = None,
    env: dict[str, str] | None = None,
) -> Run:
    tmp = Path(tempfile.mkdtemp(prefix="cds-probe-"))
    _TEMP_DIRS.append(tmp)
    extra = {"CDS_ALLOW_HTTP_FHIR": "true", **(env or {})}
    if auth:
        trusted = write_trusted_clients(tmp, [EHR.trusted_entry()])
        extra.update({"CDS_AUTH": "on", "CDS_TRUSTED_CLIENTS": str(trusted)})
    return Run(_spawn(tmp, extra, source, nofile), tmp)


def _spawn(
    tmp: Path, extra: dict[str, str], source: Path | None, nofile: int | None
) -> processes.Server:
    """Like processes.start_service (ready on /healthz, so auth may be on), optionally under
    `prlimit --nofile` (a small descriptor limit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(
        {
            "CDS_AUTH": "off",
            "CDS_DATA_DIR": str(tmp / "data"),
            "PYTHONPATH": str(source or REPO),
            **extra,
        }
    )
    port = processes.free_port()
    prefix, how = processes.service_command(source)
    limit = ["prlimit", f"--nofile={nofile}:{nofile}"] if nofile else []
    argv = [*limit, *prefix, "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = processes._spawn(
        "service", argv, env, tmp / "service.log", how, port, cwd=source or REPO
    )
    server.wait_ready("/healthz")
    return server


def hook_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "order-select",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {
            "userId": "Practitioner/doc-1",
            "patientId": "pt-1",
            "selections": ["MedicationRequest/draft-1"],
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "MedicationRequest",
                            "id": "draft-1",
                            "status": "draft",
                            "intent": "order",
                            "subject": {"reference": "Patient/pt-1"},
                            "medicationCodeableConcept": {"text": "dasatinib"},
                        }
                    }
                ],
            },
        },
    }
    body.update(over)
    return body


def post(
    base: str, path: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[int, dict[str, str], bytes, float]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    started = time.monotonic()
    try:
        # refused before the body was sent whole: the answer may be waiting all the same
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request(
                "POST",
                path,
                body=data,
                headers={"Content-Type": "application/json", **(headers or {})},
            )
        resp = conn.getresponse()
        payload = resp.read()
        return (
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            payload,
            time.monotonic() - started,
        )
    finally:
        conn.close()


def diagnostics(payload: bytes) -> str:
    try:
        issues = json.loads(payload).get("issue") or []
        return str(issues[0].get("diagnostics", ""))[:110]
    except (ValueError, AttributeError, IndexError):
        return payload[:80].decode("utf-8", "replace")


class Poller:
    """GET /healthz every 20 ms on a fresh connection; the worst latency seen."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.worst = 0.0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        host, port = self.base.removeprefix("http://").split(":")
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
            except OSError:
                self.failures += 1
            self.worst = max(self.worst, time.monotonic() - started)
            time.sleep(0.02)

    def __enter__(self) -> Poller:
        self._thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=40)


def raw_connect(base: str, timeout: float = 10.0) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_status(sock: socket.socket) -> str:
    try:
        data = sock.recv(4096)
    except (TimeoutError, OSError) as exc:
        return type(exc).__name__
    if not data:
        return "closed"
    return data.split(b"\r\n", 1)[0].decode("latin-1")


# --- probes -----------------------------------------------------------------------------------

Probe = Callable[[Path | None], str]
PROBES: dict[str, tuple[str, Probe]] = {}


def probe(name: str, title: str) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        PROBES[name] = (title, fn)
        return fn

    return register


@probe("audience-host", "token for another service, sent with that service's Host header")
def _audience(source: Path | None) -> str:
    run = start(source, auth=True)
    try:
        other = "http://other-cds.example.org/cds-services"
        conn = http.client.HTTPConnection("127.0.0.1", run.server.port, timeout=10)
        conn.request(
            "GET",
            "/cds-services",
            headers={"Host": "other-cds.example.org", "Authorization": EHR.bearer(other)},
        )
        status = conn.getresponse().status
        conn.close()
        return f"{status}" + (" (accepted)" if status == 200 else " (refused)")
    finally:
        run.server.stop()


@probe("trailing-slash", "POST /cds-services/<id>/ without a token, Host: evil.example")
def _trailing(source: Path | None) -> str:
    run = start(source, auth=True)
    try:
        status, headers, payload, _ = post(
            run.server.base, SELECT + "/", hook_body(), {"Host": "evil.example"}
        )
        where = headers.get("location")
        outcome = b"OperationOutcome" in payload
        return (
            f"{status}"
            + (f", Location {where}" if where else "")
            + (", OperationOutcome" if outcome else ", no OperationOutcome")
        )
    finally:
        run.server.stop()


def _fetch_probe(source: Path | None, fhir: str, *, loopback: bool) -> tuple[str, float]:
    env = {"CDS_ALLOW_LOOPBACK_FHIR": "true"} if loopback else {}
    run = start(source, env=env)
    try:
        body = hook_body(
            fhirServer=fhir, fhirAuthorization={"access_token": PROBE_TOKEN, "token_type": "Bearer"}
        )
        status, _, payload, took = post(run.server.base, SELECT, body)
        return f"{status} in {took:.2f} s: {diagnostics(payload)}", took
    finally:
        run.server.stop()


@probe("unspecified-server", "fhirServer http://0.0.0.0:<port> (reaches loopback on Linux)")
def _unspecified(source: Path | None) -> str:
    server, seen = start_hostile()
    try:
        text, _ = _fetch_probe(
            source, f"http://0.0.0.0:{server.server_port}/record", loopback=False
        )
        return f"{text}; hostile server: {seen.connections} connection(s)"
    finally:
        server.shutdown()


@probe("loopback-server", "fhirServer on 127.0.0.1 (no allow-list, loopback not allowed)")
def _loopback(source: Path | None) -> str:
    server, seen = start_hostile()
    try:
        text, _ = _fetch_probe(
            source, f"http://127.0.0.1:{server.server_port}/record", loopback=False
        )
        tokens = sum(1 for _, auth in seen.requests if auth and PROBE_TOKEN in auth)
        return f"{text}; hostile server: {seen.connections} connection(s), token sent {tokens}x"
    finally:
        server.shutdown()


def _memory_probe(source: Path | None, mode: str) -> str:
    if mode == "gzip":
        gzip_bomb()  # built before the clock starts
    server, _seen = start_hostile()
    run = start(source, env={"CDS_ALLOW_LOOPBACK_FHIR": "true"})
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        token = {"access_token": PROBE_TOKEN, "token_type": "Bearer"}
        post(
            run.server.base, SELECT, hook_body(fhirServer=base + "/record", fhirAuthorization=token)
        )  # warm-up
        before, cpu = run.peak_mib(), run.server.cpu_seconds()
        status, _, payload, took = post(
            run.server.base,
            SELECT,
            hook_body(fhirServer=f"{base}/{mode}", fhirAuthorization=token),
            timeout=300,
        )
        grown = run.peak_mib() - before
        return (
            f"{status} in {took:.1f} s, CPU {run.server.cpu_seconds() - cpu:.1f} s, "
            f"peak RSS +{grown:.0f} MiB: {diagnostics(payload)[:70]}"
        )
    finally:
        run.server.stop()
        server.shutdown()


@probe("fhir-200mb", "FHIR search answering a 200 MB searchset")
def _big(source: Path | None) -> str:
    return _memory_probe(source, "big")


@probe("fhir-junk", "FHIR search answering 200 MB that is not JSON")
def _junk(source: Path | None) -> str:
    return _memory_probe(source, "junk")


@probe("fhir-tiny", "FHIR search answering 250,000 tiny entries (12 MB)")
def _tiny(source: Path | None) -> str:
    return _memory_probe(source, "tiny")


@probe("fhir-gzip", "FHIR search answering 1 MiB of gzip that inflates to 1 GiB")
def _gzip(source: Path | None) -> str:
    return _memory_probe(source, "gzip")


@probe("id-dot", 'patientId "." and ".." (fetch path)')
def _ids(source: Path | None) -> str:
    server, seen = start_hostile()
    run = start(source, env={"CDS_ALLOW_LOOPBACK_FHIR": "true"})
    try:
        out = []
        for pid in (".", ".."):
            seen.requests.clear()
            body = hook_body(
                fhirServer=f"http://127.0.0.1:{server.server_port}/record",
                fhirAuthorization={"access_token": PROBE_TOKEN, "token_type": "Bearer"},
            )
            body["context"]["patientId"] = pid
            status, _, _, _ = post(run.server.base, SELECT, body)
            patient = sorted(
                {p for p, _ in seen.requests if p.startswith("/Patient") or p in ("/", "")}
            )
            out.append(f"{pid!r}: {status}, Patient requests sent {patient or 'none'}")
        return "; ".join(out)
    finally:
        run.server.stop()
        server.shutdown()


@probe("nested-1000", "context.draftOrders wrapped in 1,000 nested lists")
def _nested(source: Path | None) -> str:
    run = start(source)
    try:
        body = hook_body()
        orders = json.dumps(body["context"].pop("draftOrders")).encode()
        raw = (
            json.dumps(body).encode()[:-2]
            + b', "draftOrders": '
            + b"[" * 1000
            + orders
            + b"]" * 1000
            + b"}}"
        )
        status, _, payload, _ = post(run.server.base, SELECT, raw)
        return f"{status}: {diagnostics(payload)[:80]}"
    finally:
        run.server.stop()


def _send_header(base: str, size: int) -> tuple[str, int, float]:
    """Send one header of `size` bytes; (answer, bytes sent, seconds)."""
    sock = raw_connect(base, timeout=300)
    started = time.monotonic()
    sent = 0
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        block = b"a" * MIB
        while sent < size:
            sock.sendall(block)
            sent += len(block)
        sock.sendall(b"\r\n\r\n")
        answer = read_status(sock)
    except OSError as exc:
        answer = f"connection {type(exc).__name__}"
    finally:
        sock.close()
    return answer, sent, time.monotonic() - started


@probe("header-256mb", "one 256 MB request header, unauthenticated")
def _header_256(source: Path | None) -> str:
    run = start(source)
    try:
        before, cpu = run.peak_mib(), run.server.cpu_seconds()
        answer, sent, took = _send_header(run.server.base, 256 * MIB)
        time.sleep(0.5)
        cpu_used, grown = run.server.cpu_seconds() - cpu, run.peak_mib() - before
        return (
            f"{answer} after {sent // MIB} MiB sent, {took:.1f} s; service CPU "
            f"{cpu_used:.1f} s, peak RSS +{grown:.0f} MiB"
        )
    finally:
        run.server.stop()


@probe("header-64mb-others", "a 64 MB header while another client polls /healthz")
def _header_64(source: Path | None) -> str:
    run = start(source)
    try:
        with Poller(run.server.base) as poller:
            answer, sent, _ = _send_header(run.server.base, 64 * MIB)
            time.sleep(0.3)
        return (
            f"attacker: {answer} after {sent // MIB} MiB; other client's worst /healthz "
            f"{poller.worst * 1000:.0f} ms, {poller.failures} failed"
        )
    finally:
        run.server.stop()


@probe("headers-20000", "20,000 request headers")
def _many_headers(source: Path | None) -> str:
    run = start(source)
    try:
        sock = raw_connect(run.server.base)
        head = (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H-%d: v\r\n" % i for i in range(20_000))
            + b"\r\n"
        )
        try:
            sock.sendall(head)
            answer = read_status(sock)
        except OSError as exc:
            answer = f"connection {type(exc).__name__}"
        sock.close()
        return answer
    finally:
        run.server.stop()


def _slow_body(base: str, limit: float) -> tuple[str, float]:
    sock = raw_connect(base, timeout=limit + 5)
    started = time.monotonic()
    sock.sendall(
        b"POST " + SELECT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: "
        b"application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    sock.settimeout(1.0)
    answer = ""
    while time.monotonic() - started < limit:
        try:
            sock.sendall(b" ")
        except OSError as exc:
            answer = f"connection {type(exc).__name__}"
            break
        try:
            data = sock.recv(4096)
            answer = data.split(b"\r\n", 1)[0].decode("latin-1") if data else "closed"
            break
        except TimeoutError:
            continue
        except OSError as exc:
            answer = f"connection {type(exc).__name__}"
            break
    took = time.monotonic() - started
    sock.close()
    return (answer or f"still open at {limit:.0f} s"), took


@probe("body-1-byte-per-s", "request body trickled at 1 byte/s")
def _slowloris_body(source: Path | None) -> str:
    run = start(source)
    try:
        answer, took = _slow_body(run.server.base, 60)
        return f"{answer} after {took:.0f} s"
    finally:
        run.server.stop()


@probe("idle-300", "300 idle connections, then GET /healthz (service under `ulimit -n 256`)")
def _idle(source: Path | None) -> str:
    run = start(source, nofile=256)
    socks: list[socket.socket] = []
    try:
        for _ in range(300):
            try:
                socks.append(raw_connect(run.server.base, timeout=5))
            except OSError:
                break
        time.sleep(1.0)
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", run.server.port, timeout=10)
            conn.request("GET", "/healthz")
            status = f"/healthz {conn.getresponse().status}"
            conn.close()
        except OSError as exc:
            status = f"/healthz failed ({type(exc).__name__})"
        took = time.monotonic() - started
        alive = 0
        for s in socks:
            s.settimeout(0.01)
            try:
                alive += s.recv(1) != b""
            except TimeoutError:
                alive += 1
            except OSError:
                pass
        return f"{len(socks)} opened; {status} in {took:.2f} s; {alive} idle still held after"
    finally:
        for s in socks:
            s.close()
        run.server.stop()


@probe("feedback-60000", "feedback with 60,000 items while another client polls /healthz")
def _feedback(source: Path | None) -> str:
    run = start(source)
    try:
        items = [
            {
                "card": f"card-{i}",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-22T10:00:00Z",
            }
            for i in range(60_000)
        ]
        with Poller(run.server.base) as poller:
            status, _, _payload, took = post(
                run.server.base, SELECT + "/feedback", {"feedback": items}
            )
            time.sleep(0.2)
        return (
            f"{status} in {took:.2f} s; other client's worst /healthz {poller.worst * 1000:.0f} ms"
        )
    finally:
        run.server.stop()


@probe("log-4mb-hookinstance", "a 4 MB hookInstance")
def _log(source: Path | None) -> str:
    run = start(source)
    try:
        keys = (
            "patient",
            "conditions",
            "medicationAdministrations",
            "medicationRequests",
            "medicationStatements",
            "observations",
            "procedures",
        )
        body = hook_body(hookInstance="h" * (4 * MIB), prefetch=dict.fromkeys(keys))
        status, _, _, _ = post(run.server.base, SELECT, body)
        time.sleep(0.3)
        return f"{status}; longest log line {run.max_log_line():,} bytes"
    finally:
        run.server.stop()


@probe("shutdown-slow-client", "SIGTERM while a client trickles a body at 1 byte/s")
def _shutdown(source: Path | None) -> str:
    run = start(source)
    sock = raw_connect(run.server.base, timeout=5)
    stop = threading.Event()

    def trickle() -> None:
        sock.sendall(
            b"POST " + SELECT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        )
        while not stop.is_set():
            try:
                sock.sendall(b" ")
            except OSError:
                return
            stop.wait(1.0)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    time.sleep(2.0)
    started = time.monotonic()
    run.server.proc.send_signal(signal.SIGTERM)
    try:
        run.server.proc.wait(timeout=60)
        outcome = f"exited {time.monotonic() - started:.1f} s after SIGTERM"
    except subprocess.TimeoutExpired:
        outcome = "still running 60 s after SIGTERM (killed)"
        run.server.proc.kill()
        run.server.proc.wait()
    stop.set()
    sock.close()
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--service-src",
        type=Path,
        default=None,
        help="run the service from this source tree (e.g. the commit before)",
    )
    parser.add_argument("--only", default="", help="comma-separated probe names")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(PROBES)
    rows = ["| probe | result |", "|---|---|"]
    for name in names:
        title, fn = PROBES[name]
        started = time.monotonic()
        try:
            result = fn(args.service_src)
        except Exception as exc:  # a probe that breaks is a result too
            result = f"probe error: {type(exc).__name__}: {exc}"[:200]
        line = f"| {name}: {title} | {result} |"
        print(line, f"({time.monotonic() - started:.0f} s)", flush=True)
        rows.append(line)
    if args.out:
        args.out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    for tmp in _TEMP_DIRS:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
