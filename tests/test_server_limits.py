"""Request framing limits of `cds-service serve` (server.py, api.read_body), over real sockets.

One service process with small limits serves most tests; each test ends with the process
alive and answering /healthz. Graceful shutdown gets its own process.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.service_process import Service, running_service

pytestmark = pytest.mark.e2e

SELECT = "/cds-services/phall-order-select"
LIMITS = {
    "CDS_AUTH": "off",
    "CDS_MAX_HEADER_BYTES": "4096",
    "CDS_MAX_HEADERS": "20",
    "CDS_HEADER_TIMEOUT_SECONDS": "1",
    "CDS_BODY_TIMEOUT_SECONDS": "2",
    "CDS_BODY_IDLE_TIMEOUT_SECONDS": "1",
    "CDS_MAX_CONNECTIONS": "12",
    "CDS_KEEPALIVE_TIMEOUT_SECONDS": "1",
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("limits"), LIMITS) as service:
        yield service


@pytest.fixture(autouse=True)
def _still_alive(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "svc" in request.fixturenames:
        service: Service = request.getfixturevalue("svc")
        assert service.alive(), service.log()[-2000:]


def connect(service: Service, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=timeout)


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response (read until the connection closes or the
    body is complete); (0, {}, b"") when the server closed without answering."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def outcome(body: bytes) -> str:
    parsed = json.loads(body)
    assert parsed["resourceType"] == "OperationOutcome"
    return str(parsed["issue"][0]["diagnostics"])


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


# --- the request head ---------------------------------------------------------------------------


def test_a_head_over_the_byte_limit_is_431(svc: Service) -> None:
    with connect(svc) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        status, headers, body = answer(sock)
    assert status == 431 and headers["connection"] == "close"
    assert "CDS_MAX_HEADER_BYTES" in outcome(body)


def test_a_long_request_line_counts_too(svc: Service) -> None:
    with connect(svc) as sock:
        sock.sendall(b"GET /healthz?" + b"q" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer(sock)[0] == 431


def test_a_head_just_under_the_limit_is_served(svc: Service) -> None:
    with connect(svc) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3500 + b"\r\n\r\n")
        assert answer(sock)[0] == 200


def test_too_many_header_fields_is_431(svc: Service) -> None:
    fields = b"".join(b"X-H-%d: v\r\n" % i for i in range(21))
    with connect(svc) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n" + fields + b"\r\n")
        status, _, body = answer(sock)
    assert status == 431 and "CDS_MAX_HEADERS" in outcome(body)


def test_a_huge_header_is_never_read_whole(svc: Service) -> None:
    """64 MB of one header: the service stops reading within a few KB; its memory stays flat
    and another client is answered meanwhile."""
    before = svc.peak_rss_kib()
    sent = 0
    with connect(svc, timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            block = b"a" * 65536
            while sent < 64 << 20:
                sock.sendall(block)
                sent += len(block)
        except OSError:
            pass
    assert sent < 16 << 20, "the service kept reading the header"
    assert svc.peak_rss_kib() - before < 16 * 1024
    assert '"status": 431' in svc.log()


def test_a_slow_head_is_cut_at_the_header_timeout(svc: Service) -> None:
    with connect(svc) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        status, _headers, body = answer(sock)
        took = time.monotonic() - started
    assert status == 408 and "CDS_HEADER_TIMEOUT_SECONDS" in outcome(body)
    assert 0.8 < took < 5


def test_a_head_trickled_byte_by_byte_is_cut_too(svc: Service) -> None:
    with connect(svc) as sock:
        started = time.monotonic()
        for ch in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([ch]))
            except OSError:
                break
            time.sleep(0.05)
            if time.monotonic() - started > 6:
                break
        assert time.monotonic() - started < 5


def test_a_silent_connection_is_closed(svc: Service) -> None:
    with connect(svc) as sock:
        assert closed_within(sock, 4)


def test_a_keep_alive_connection_is_closed_after_the_keepalive_timeout(svc: Service) -> None:
    with connect(svc) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer(sock)[0] == 200
        assert closed_within(sock, 4)


# --- the request body ---------------------------------------------------------------------------


def _post_head(length: int, path: str = SELECT) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), length))


def test_a_body_trickled_at_a_byte_per_interval_gets_408_at_the_body_timeout(svc: Service) -> None:
    with connect(svc) as sock:
        sock.sendall(_post_head(10_000))
        started = time.monotonic()
        sock.settimeout(0.3)
        data = b""
        while time.monotonic() - started < 10 and not data:
            try:
                sock.sendall(b" ")
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
        took = time.monotonic() - started
        sock.settimeout(5)
        head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data[:200]
    assert 1.5 < took < 5
    assert b"CDS_BODY_TIMEOUT_SECONDS" in rest


def test_a_paused_body_gets_408_at_the_idle_timeout(svc: Service) -> None:
    with connect(svc) as sock:
        sock.sendall(_post_head(1000) + b"{")
        started = time.monotonic()
        status, _, body = answer(sock)
    assert status == 408 and "CDS_BODY_IDLE_TIMEOUT_SECONDS" in outcome(body)  # not the 2 s one
    assert time.monotonic() - started < 5


def test_a_body_nobody_reads_is_cut_by_the_backstop(svc: Service) -> None:
    with connect(svc) as sock:
        sock.sendall(_post_head(10_000, "/no-such-route"))
        assert answer(sock)[0] == 404
        started = time.monotonic()
        sock.settimeout(0.5)
        while time.monotonic() - started < 15:
            try:
                sock.sendall(b" ")
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        assert time.monotonic() - started < 8


# --- connections ----------------------------------------------------------------------------------


def test_idle_connections_cannot_lock_clients_out(svc: Service) -> None:
    """More idle connections than CDS_MAX_CONNECTIONS: each newcomer evicts the one that has
    waited longest, so /healthz is answered at once."""
    socks = [connect(svc) for _ in range(30)]
    try:
        time.sleep(0.2)
        started = time.monotonic()
        assert httpx.get(svc.base + "/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 3  # answered at once, not after a head timeout
        assert closed_within(socks[0], 1)  # the oldest was closed
    finally:
        for s in socks:
            s.close()


def test_at_the_limit_with_every_connection_busy_a_newcomer_gets_503(svc: Service) -> None:
    socks = []
    try:
        for _ in range(12):
            sock = connect(svc)
            sock.sendall(_post_head(100_000) + b"{")  # a request in flight: not idle
            socks.append(sock)
        time.sleep(0.3)
        with connect(svc) as extra:
            status, _, body = answer(extra)
        assert status == 503 and "too many connections" in outcome(body)
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)


# --- shutdown -------------------------------------------------------------------------------------


def test_sigterm_with_a_slow_client_exits_within_the_shutdown_timeout(tmp_path: Path) -> None:
    env = {"CDS_AUTH": "off", "CDS_SHUTDOWN_TIMEOUT_SECONDS": "2",
           "CDS_BODY_TIMEOUT_SECONDS": "120", "CDS_BODY_IDLE_TIMEOUT_SECONDS": "60"}
    with running_service(tmp_path, env) as service:
        sock = connect(service)
        sock.sendall(_post_head(100_000))
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.5):
                try:
                    sock.sendall(b" ")
                except OSError:
                    return

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        time.sleep(1.0)
        started = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        try:
            service.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 20 s after SIGTERM")
        finally:
            stop.set()
            thread.join()
            sock.close()
        assert time.monotonic() - started < 6
