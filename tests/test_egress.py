"""Which fhirServer may be contacted: the allow-list, the public-address rule, and the guard
that checks every resolved address before a real connection is made."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from cds_service.egress import (
    EgressPolicy,
    GuardedBackend,
    address_problem,
    guarded_transport,
    normalise_base_url,
)
from cds_service.errors import FHIRClientError
from cds_service.fhir_client import FHIRClient, _ssl_context

NO_LIST = EgressPolicy(None)

# Hosts an attacker would name to reach the service's own network or the cloud metadata API.
FORBIDDEN_HOSTS = [
    "169.254.169.254",  # AWS / GCP / Azure metadata
    "169.254.170.2",  # ECS task metadata
    "[fd00:ec2::254]",  # AWS metadata over IPv6
    "100.100.100.200",  # Alibaba metadata (shared address space)
    "192.0.0.192",  # Oracle metadata
    "metadata.google.internal",
    "metadata.google.internal.",
    "metadata",
    "instance-data",
    "0.0.0.0",  # reaches this machine on Linux
    "[::]",
    "127.0.0.1",
    "127.0.0.2",
    "localhost",
    "LOCALHOST",
    "api.localhost",
    "[::1]",
    "10.0.0.5",
    "172.16.0.1",
    "192.168.1.10",
    "100.64.0.1",  # carrier-grade NAT
    "[fe80::1]",
    "[fc00::1]",
    "[::ffff:169.254.169.254]",  # IPv4-mapped
    "[::ffff:127.0.0.1]",
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
    "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
    "2852039166",  # 169.254.169.254 as one decimal number
    "0xa9fea9fe",
    "0251.0376.0251.0376",  # octal
    "0x7f.1",
    "127.1",
    "intranet",  # a single label resolves through search domains
    "ehr.internal",
    "printer.local",
    "nas.home.arpa",
    "224.0.0.1",  # multicast
    "240.0.0.1",  # reserved
]


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_without_a_list_internal_and_metadata_hosts_are_refused(host: str) -> None:
    problem = NO_LIST.refusal(f"https://{host}/fhir")
    assert problem is not None and "not contacted" in problem


@pytest.mark.parametrize(
    "url", ["https://fhir.ehr.example.org/r4", "https://8.8.8.8/fhir", "https://[2001:4860::8888]/"]
)
def test_without_a_list_public_hosts_are_allowed(url: str) -> None:
    assert NO_LIST.refusal(url) is None


def test_loopback_is_allowed_only_by_the_test_setting() -> None:
    loopback = EgressPolicy(None, allow_loopback=True)
    for url in ("http://127.0.0.1:8080/fhir", "http://localhost:8080", "http://[::1]:1/"):
        assert NO_LIST.refusal(url) is not None
        assert loopback.refusal(url) is None
    assert loopback.refusal("http://169.254.169.254/") is not None
    assert loopback.refusal("http://10.0.0.1/") is not None


def test_an_allow_list_admits_only_its_entries() -> None:
    policy = EgressPolicy.from_list(
        ["https://EHR.example.org:443/fhir/R4/", "https://10.1.2.3:8443/fhir"], where="test list"
    )
    assert policy.refusal("https://ehr.example.org/fhir/R4") is None
    assert policy.refusal("https://ehr.example.org/fhir/R4/") is None
    assert policy.refusal("https://10.1.2.3:8443/fhir") is None  # listed: the deployer vouches
    for other in (
        "https://ehr.example.org/fhir/R4/other",
        "https://ehr.example.org/fhir",
        "http://ehr.example.org/fhir/R4",
        "https://ehr.example.org:8443/fhir/R4",
        "https://ehr.example.org.evil.example/fhir/R4",
        "https://fhir.example.net/fhir/R4",
    ):
        problem = policy.refusal(other)
        assert problem is not None and "test list" in problem, other
    assert EgressPolicy.from_list([], where="x").refusal("https://ehr.example.org/fhir") is not None


def test_base_urls_are_normalised_for_comparison() -> None:
    assert normalise_base_url("HTTPS://Ehr.Example.org/fhir//") == "https://ehr.example.org:443/fhir"
    assert normalise_base_url("http://[::1]:80/x") == "http://[::1]:80/x"
    with pytest.raises(ValueError):
        normalise_base_url("ftp://x.example/")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("8.8.8.8", True), ("2001:4860:4860::8888", True), ("169.254.1.1", False),
     ("::ffff:10.0.0.1", False), ("127.0.0.1", False), ("0.1.2.3", False)],
)
def test_address_classes(address: str, allowed: bool) -> None:
    assert (address_problem(ipaddress.ip_address(address)) is None) is allowed


def test_fhir_client_refuses_before_building_anything() -> None:
    with pytest.raises(FHIRClientError, match="metadata"):
        FHIRClient("https://169.254.169.254/computeMetadata/v1", "tok", call_timeout=1,
                   max_pages=1)


# --- the connect-time guard, through httpx's real transport and a real socket ----------------


class _Resolving(GuardedBackend):
    """GuardedBackend whose DNS answers are fixed (a public-looking name -> chosen addresses)."""

    def __init__(self, answers: dict[str, list[str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answers = answers

    async def resolve(self, host: str, port: int) -> list[Any]:
        if host in self.answers:
            return [ipaddress.ip_address(a) for a in self.answers[host]]
        return await super().resolve(host, port)


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 answering one FHIR Patient per connection; records requests."""
    seen: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                seen.append(conn.recv(65536))
                body = b'{"resourceType":"Patient","id":"p1"}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], seen
    finally:
        stop.set()
        thread.join()
        server.close()


def _get_through_guard(backend: GuardedBackend, url: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = guarded_transport(_ssl_context(), backend=backend)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.get(url, headers={"Authorization": "Bearer secret"})

    return asyncio.run(go())


def test_a_public_name_that_resolves_to_loopback_is_never_connected(
    listener: tuple[int, list[bytes]],
) -> None:
    port, seen = listener
    backend = _Resolving({"fhir.ehr.example.org": ["93.184.216.34", "127.0.0.1"]})
    with pytest.raises(httpx.ConnectError, match=r"resolves to 127\.0\.0\.1, a loopback address"):
        _get_through_guard(backend, f"http://fhir.ehr.example.org:{port}/Patient/p1")
    assert seen == []  # nothing reached the socket: not the token, not the request line


def test_the_guard_connects_to_the_address_it_checked(listener: tuple[int, list[bytes]]) -> None:
    port, seen = listener
    backend = _Resolving({"fhir.ehr.example.org": ["127.0.0.1"]}, allow_loopback=True)
    response = _get_through_guard(backend, f"http://fhir.ehr.example.org:{port}/Patient/p1")
    assert response.status_code == 200
    assert len(seen) == 1 and seen[0].startswith(b"GET /Patient/p1 ")
    assert b"host: fhir.ehr.example.org" in seen[0].lower()  # the name is kept for the server


def test_fhir_client_reports_a_refused_address_and_never_sends_the_token(
    listener: tuple[int, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, seen = listener

    async def fake_getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(anyio, "getaddrinfo", fake_getaddrinfo)

    async def go() -> None:
        async with FHIRClient(f"http://fhir.ehr.example.org:{port}/fhir", "secret",
                              call_timeout=2, max_pages=1, allow_http=True) as client:
            await client.get("Patient/p1")

    with pytest.raises(FHIRClientError) as info:
        asyncio.run(go())
    assert "resolves to 127.0.0.1, a loopback address" in str(info.value)
    assert "not contacted" in str(info.value) and "secret" not in str(info.value)
    assert seen == []
