"""FHIRClient against pytest-httpx: paging, failures, and the token staying on its server."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
from pytest_httpx import HTTPXMock

from cds_service.egress import EgressPolicy
from cds_service.fhir_client import FHIRClient, FHIRClientError

BASE = "https://ehr.example.org/fhir/r4"
TOKEN = "s3cr3t-Token.value"
QUERY = "Observation?patient=123"
T = TypeVar("T")


def run(
    call: Callable[[FHIRClient], Awaitable[T]],
    *,
    base: str = BASE,
    token: str | None = TOKEN,
    max_pages: int = 5,
    allow_http: bool = False,
    call_timeout: float = 1.0,
    egress: EgressPolicy | None = None,
    **limits: int,
) -> T:
    async def go() -> T:
        async with FHIRClient(
            base,
            token,
            call_timeout=call_timeout,
            max_pages=max_pages,
            allow_http=allow_http,
            egress=egress,
            **limits,  # type: ignore[arg-type]
        ) as client:
            return await call(client)

    return asyncio.run(go())


def fails(call: Callable[[FHIRClient], Awaitable[Any]], **kwargs: Any) -> str:
    """Run `call`, expect FHIRClientError, return its message (checked never to hold the token)."""
    with pytest.raises(FHIRClientError) as info:
        run(call, **kwargs)
    message = str(info.value)
    assert TOKEN not in message
    return message


def obs(i: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"o{i}", "status": "final"}


def page(ids: range, next_url: str | None = None, total: int | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": obs(i)} for i in ids],
    }
    if total is not None:
        bundle["total"] = total
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def foreign_requests(httpx_mock: HTTPXMock) -> list[httpx.Request]:
    return [r for r in httpx_mock.get_requests() if r.url.host != "ehr.example.org"]


# --- happy paths ------------------------------------------------------------------------------


def test_pagination_follows_next_links_and_assembles_one_bundle(httpx_mock: HTTPXMock) -> None:
    p2 = f"{BASE}/Observation?patient=123&_page=2"
    p3 = f"{BASE}/Observation?patient=123&_page=3"
    httpx_mock.add_response(url=f"{BASE}/{QUERY}", json=page(range(0, 2), p2, total=5))
    httpx_mock.add_response(url=p2, json=page(range(2, 4), p3))
    httpx_mock.add_response(url=p3, json=page(range(4, 5)))

    bundle = run(lambda c: c.fetch(QUERY))

    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 5
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["o0", "o1", "o2", "o3", "o4"]
    assert "link" not in bundle
    requests = httpx_mock.get_requests()
    assert len(requests) == 3
    for request in requests:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Accept"] == "application/fhir+json"


def test_search_all_returns_the_resources_of_every_page(httpx_mock: HTTPXMock) -> None:
    p2 = f"{BASE}/Observation?patient=123&_page=2"
    httpx_mock.add_response(url=f"{BASE}/{QUERY}", json=page(range(0, 3), p2))
    httpx_mock.add_response(url=p2, json=page(range(3, 4)))

    resources = run(lambda c: c.search_all(QUERY))

    assert [r["id"] for r in resources] == ["o0", "o1", "o2", "o3"]


def test_read_returns_the_resource(httpx_mock: HTTPXMock) -> None:
    patient = {"resourceType": "Patient", "id": "123"}
    httpx_mock.add_response(url=f"{BASE}/Patient/123", json=patient)

    assert run(lambda c: c.get("Patient/123")) == patient


def test_search_with_a_url_valued_parameter_is_a_relative_query(httpx_mock: HTTPXMock) -> None:
    query = "Observation?patient=123&code=http://loinc.org|12345-6"
    httpx_mock.add_response(json=page(range(0, 1)))

    run(lambda c: c.fetch(query))

    (request,) = httpx_mock.get_requests()
    assert request.url.host == "ehr.example.org"
    assert request.url.path == "/fhir/r4/Observation"
    assert request.url.params["code"] == "http://loinc.org|12345-6"


def test_open_server_gets_no_authorization_header(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{BASE}/Patient/1", json={"resourceType": "Patient", "id": "1"})

    run(lambda c: c.get("Patient/1"), token=None)

    (request,) = httpx_mock.get_requests()
    assert "Authorization" not in request.headers


def test_plain_http_needs_allow_http(httpx_mock: HTTPXMock) -> None:
    base = "http://127.0.0.1:8080/fhir"
    message = fails(lambda c: c.get("Patient/1"), base=base)
    assert "plain http" in message
    assert httpx_mock.get_requests() == []

    httpx_mock.add_response(url=f"{base}/Patient/1", json={"resourceType": "Patient", "id": "1"})
    loopback = EgressPolicy(None, allow_loopback=True)
    assert run(lambda c: c.get("Patient/1"), base=base, allow_http=True, egress=loopback)["id"] == "1"


@pytest.mark.parametrize(
    "base",
    ["ftp://ehr.example.org/fhir", "ehr.example.org/fhir", "https://ehr.example.org/fhir?x=1"],
)
def test_unusable_base_urls_are_refused(base: str) -> None:
    with pytest.raises(FHIRClientError, match="fhirServer"):
        FHIRClient(base, TOKEN, call_timeout=1, max_pages=1)


def test_token_that_is_not_a_bearer_token_is_refused_without_echoing_it() -> None:
    bad = "abc\r\nX-Injected: 1"
    with pytest.raises(FHIRClientError) as info:
        FHIRClient(BASE, bad, call_timeout=1, max_pages=1)
    assert "abc" not in str(info.value)


# --- failures ---------------------------------------------------------------------------------


def test_timeout_is_an_error_naming_the_query(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("read timed out"))

    message = fails(lambda c: c.fetch(QUERY))

    assert QUERY in message and "timed out" in message


def test_a_slow_answer_is_cut_at_the_call_timeout(httpx_mock: HTTPXMock) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=page(range(0, 1)))

    httpx_mock.add_callback(slow)
    started = time.monotonic()

    assert "timed out after 0.1s" in fails(lambda c: c.fetch(QUERY), call_timeout=0.1)
    assert time.monotonic() - started < 2


def test_unreachable_server_is_an_error(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("connection refused"))

    assert QUERY in fails(lambda c: c.fetch(QUERY))


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_is_an_error(httpx_mock: HTTPXMock, status: int) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"code": "login"}]}
    httpx_mock.add_response(status_code=status, json=outcome)

    message = fails(lambda c: c.fetch(QUERY))

    assert f"HTTP {status}" in message and "refused the access token" in message


@pytest.mark.parametrize("status", [500, 502, 503, 404, 400])
def test_error_statuses_are_errors(httpx_mock: HTTPXMock, status: int) -> None:
    httpx_mock.add_response(status_code=status, json={"resourceType": "OperationOutcome"})

    assert f"HTTP {status}" in fails(lambda c: c.fetch(QUERY))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>gateway</html>", "non-JSON"),
        (b"", "non-JSON"),
        (b"[1, 2]", "not a resource"),
        (b'{"hello": "world"}', "not a resource"),
        (b'{"resourceType": 7}', "not a resource"),
    ],
)
def test_garbage_bodies_are_errors(httpx_mock: HTTPXMock, body: bytes, expected: str) -> None:
    httpx_mock.add_response(content=body, headers={"Content-Type": "application/fhir+json"})

    assert expected in fails(lambda c: c.fetch(QUERY))


def test_malformed_bundle_entries_are_an_error(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"resourceType": "Bundle", "type": "searchset", "entry": [1]})

    assert "malformed" in fails(lambda c: c.fetch(QUERY))


def test_next_link_cycle_is_an_error(httpx_mock: HTTPXMock) -> None:
    p2 = f"{BASE}/Observation?patient=123&_page=2"
    httpx_mock.add_response(url=f"{BASE}/{QUERY}", json=page(range(0, 1), p2))
    httpx_mock.add_response(url=p2, json=page(range(1, 2), f"{BASE}/{QUERY}"))

    assert "loop" in fails(lambda c: c.fetch(QUERY))
    assert len(httpx_mock.get_requests()) == 2


def test_next_links_past_max_pages_are_an_error(httpx_mock: HTTPXMock) -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        n = len(httpx_mock.get_requests())
        return httpx.Response(200, json=page(range(0, 1), f"{BASE}/Observation?_page={n}"))

    httpx_mock.add_callback(endless, is_reusable=True)

    assert "more than 4 pages" in fails(lambda c: c.fetch(QUERY), max_pages=3)
    assert len(httpx_mock.get_requests()) == 4


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example.net/fhir/r4/Observation?page=2",
        "https://ehr.example.org.evil.example.net/fhir/r4/Observation?page=2",
        "https://ehr.example.org:8443/fhir/r4/Observation?page=2",
        "http://ehr.example.org/fhir/r4/Observation?page=2",
        "https://ehr.example.org/other/Observation?page=2",
        "https://ehr.example.org/fhir/r4/../../admin?page=2",
        "https://user:pw@ehr.example.org/fhir/r4/Observation?page=2",
    ],
)
def test_next_link_off_the_server_is_not_followed(httpx_mock: HTTPXMock, next_url: str) -> None:
    httpx_mock.add_response(url=f"{BASE}/{QUERY}", json=page(range(0, 1), next_url))

    assert "refusing to request" in fails(lambda c: c.fetch(QUERY))

    (request,) = httpx_mock.get_requests()
    assert request.url == httpx.URL(f"{BASE}/{QUERY}")
    assert foreign_requests(httpx_mock) == []


def test_absolute_query_off_the_server_is_not_requested(httpx_mock: HTTPXMock) -> None:
    fails(lambda c: c.get("https://evil.example.net/fhir/r4/Patient/1"))

    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize(
    "location", ["https://evil.example.net/fhir/r4/Observation", f"{BASE}/Observation?x=1"]
)
def test_redirects_are_errors_and_not_followed(httpx_mock: HTTPXMock, location: str) -> None:
    httpx_mock.add_response(status_code=302, headers={"Location": location})

    assert "redirect" in fails(lambda c: c.fetch(QUERY))

    assert len(httpx_mock.get_requests()) == 1
    assert foreign_requests(httpx_mock) == []


# --- bounded bodies (issue 15) ----------------------------------------------------------------


class _Source(httpx.AsyncByteStream):
    """A response body produced on demand; counts the bytes the client pulled."""

    def __init__(self, total: int, chunk: bytes = b"x" * 65536, head: bytes = b"") -> None:
        self.total, self.chunk, self.head, self.pulled = total, chunk, head, 0

    async def __aiter__(self) -> Any:
        if self.head:
            self.pulled += len(self.head)
            yield self.head
        while self.pulled < self.total:
            self.pulled += len(self.chunk)
            yield self.chunk


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_cap_is_refused_while_streaming(
    httpx_mock: HTTPXMock, declared: bool
) -> None:
    source = _Source(200 << 20, head=b'{"resourceType":"Bundle","type":"searchset","x":"')
    headers = {"Content-Length": str(200 << 20)} if declared else {}
    httpx_mock.add_response(url=f"{BASE}/{QUERY}", stream=source, headers=headers)
    message = fails(lambda c: c.get(QUERY), max_response_bytes=1 << 20)
    assert "larger than 1048576 bytes" in message and "CDS_FHIR_MAX_RESPONSE_BYTES" in message
    assert source.pulled <= (0 if declared else 2 << 20)


def _compressed(data: bytes, wbits: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return comp.compress(data) + comp.flush()


@pytest.mark.parametrize(
    ("encoding", "wbits"), [("gzip", 31), ("x-gzip", 31), ("deflate", 15), ("deflate", -15)]
)
def test_compressed_bodies_are_decoded(httpx_mock: HTTPXMock, encoding: str, wbits: int) -> None:
    resource = json.dumps({"resourceType": "Patient", "id": "p1", "x": "y" * 100_000}).encode()
    httpx_mock.add_response(url=f"{BASE}/Patient/p1", content=_compressed(resource, wbits),
                            headers={"Content-Encoding": encoding})
    assert run(lambda c: c.get("Patient/p1"))["id"] == "p1"


@pytest.mark.parametrize(("encoding", "wbits"), [("gzip", 31), ("deflate", 15), ("deflate", -15)])
def test_a_compression_bomb_is_refused_without_inflating_it(
    httpx_mock: HTTPXMock, encoding: str, wbits: int
) -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, wbits)
    parts = [comp.compress(b'{"resourceType":"Bundle","x":"')]
    parts += [comp.compress(b"a" * (1 << 20)) for _ in range(256)]  # 256 MiB inflated
    bomb = b"".join(parts) + comp.compress(b'"}') + comp.flush()
    assert len(bomb) < 400_000
    # sent as raw bytes: httpx.Response(content=...) would inflate the bomb itself, before the
    # client under test sees a byte
    httpx_mock.add_response(url=f"{BASE}/{QUERY}", stream=_Raw(bomb),
                            headers={"Content-Encoding": encoding})
    tracemalloc.start()
    try:
        assert "larger than 1048576 bytes" in fails(
            lambda c: c.get(QUERY), max_response_bytes=1 << 20
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # it stopped inflating at the cap: memory, not time (the machine may be busy), tells it
    assert peak < 32 << 20, f"peak {peak >> 20} MiB while refusing a 256 MiB bomb"


class _Raw(httpx.AsyncByteStream):
    """Bytes sent as they are (httpx.Response(content=...) would decode them at once)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> Any:
        yield self.data


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress"])
def test_other_content_encodings_are_refused(httpx_mock: HTTPXMock, encoding: str) -> None:
    httpx_mock.add_response(url=f"{BASE}/{QUERY}", stream=_Raw(b"\x00" * 100),
                            headers={"Content-Encoding": encoding})
    assert "only gzip and deflate" in fails(lambda c: c.get(QUERY))


def test_a_truncated_or_corrupt_compressed_body_is_an_error(httpx_mock: HTTPXMock) -> None:
    whole = gzip.compress(json.dumps({"resourceType": "Patient", "id": "p"}).encode())
    httpx_mock.add_response(url=f"{BASE}/Patient/a", stream=_Raw(whole[: len(whole) // 2]),
                            headers={"Content-Encoding": "gzip"})
    httpx_mock.add_response(url=f"{BASE}/Patient/b", stream=_Raw(b"not gzip at all"),
                            headers={"Content-Encoding": "gzip"})
    assert "truncated" in fails(lambda c: c.get("Patient/a"))
    assert "does not decompress" in fails(lambda c: c.get("Patient/b"))


def test_all_pages_of_a_client_share_the_total_cap(httpx_mock: HTTPXMock) -> None:
    big = [{"resourceType": "Observation", "id": f"o{i}", "note": [{"text": "n" * 1000}]}
           for i in range(50)]  # ~55 KB per page

    def pages(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("page", "1"))
        bundle = {"resourceType": "Bundle", "type": "searchset",
                  "entry": [{"resource": r} for r in big],
                  "link": [{"relation": "next", "url": f"{BASE}/Observation?page={n + 1}"}]}
        return httpx.Response(200, json=bundle)

    httpx_mock.add_callback(pages, is_reusable=True)
    message = fails(lambda c: c.fetch(QUERY), max_pages=50, max_response_bytes=100_000,
                    max_total_bytes=300_000)
    assert "CDS_FHIR_MAX_TOTAL_BYTES" in message
    assert len(httpx_mock.get_requests()) <= 6


@pytest.mark.parametrize(
    "query", ["Patient/.", "Patient/..", "Patient/%2e", "Patient/%2E%2E", "Observation/./x",
              "Patient/../Observation"]
)
def test_dot_segments_are_never_requested(httpx_mock: HTTPXMock, query: str) -> None:
    assert "'.' or '..' path segment" in fails(lambda c: c.get(query))
    assert httpx_mock.get_requests() == []
