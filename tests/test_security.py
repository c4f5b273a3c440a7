"""Issue 15, in process: each hole of the attack run, as a class of inputs, through the API.

The connection-level limits (head size and count, slow heads and bodies, idle connections,
shutdown) need a real server process: tests/test_server_limits.py. The fuzz tests:
tests/test_fuzz.py.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from cds_service.api import create_app
from cds_service.discovery import prefetch_templates
from cds_service.errors import ConfigError
from cds_service.facts.catalogue import FACT_SOURCES
from cds_service.logs import JSONFormatter
from tests.support.app import (
    TEST_BASE_URL,
    TestClient,
    assert_operation_outcome,
    make_client,
    make_settings,
)
from tests.support.jwt_factory import SigningClient, write_trusted_clients
from tests.support.patients import draft_order, hook_request, patient, searchset

EHR = SigningClient(iss="https://ehr.example.org")
SELECT = "/cds-services/phall-order-select"
FHIR = "https://ehr.example.org/fhir/R4"
ALL_KEYS = tuple(
    prefetch_templates(name for name in FACT_SOURCES if not name.startswith("order."))
)
"""Every prefetch key any service can ask for (derived, as discovery derives them)."""


def _auth_client(tmp_path: Path, *, entry: dict[str, Any] | None = None, **over: Any) -> TestClient:
    trusted = write_trusted_clients(tmp_path, [entry or EHR.trusted_entry()])
    return make_client(tmp_path, auth="on", trusted_clients=trusted, **over)


def _bearer(path: str, base: str = TEST_BASE_URL) -> dict[str, str]:
    return {"Authorization": EHR.bearer(base + path)}


def _fetching(fhir_server: str = FHIR, **over: Any) -> dict[str, Any]:
    """An order-select call whose prefetch is all absent: everything must be fetched."""
    body = hook_request("order-select", prefetch=None, orders=[draft_order("dasatinib")],
                        fhir_server=fhir_server, token="tok-secret-123")
    body.update(over)
    return body


class _Raw(httpx.AsyncByteStream):
    """A body sent as it is (httpx.Response(content=...) would inflate it in the test)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> Any:
        yield self.data


@pytest.fixture
def json_log() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The service's log lines (JSON, through the real formatter) written during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("cds_service")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(x) for x in stream.getvalue().splitlines() if x.strip()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# --- no redirects ---------------------------------------------------------------------------


ROUTES = [("GET", "/cds-services"), ("POST", SELECT), ("POST", SELECT + "/feedback")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("host", ["evil.example", "testserver", "127.0.0.1:1"])
def test_a_trailing_slash_is_authenticated_like_the_route_never_redirected(
    tmp_path: Path, method: str, path: str, host: str
) -> None:
    client = _auth_client(tmp_path)
    r = client.request(method, path + "/", headers={"Host": host}, json={})
    assert_operation_outcome(r, 401)
    assert "location" not in r.headers


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_trailing_slash_is_answered_like_the_route(
    tmp_path: Path, method: str, path: str
) -> None:
    client = _auth_client(tmp_path)
    body: Any = None
    if path == SELECT:
        body = hook_request("order-select", prefetch=dict.fromkeys(ALL_KEYS),
                            orders=[draft_order("dasatinib")])
    elif path.endswith("/feedback"):
        body = {"feedback": [{"card": "c-1", "outcome": "overridden",
                              "outcomeTimestamp": "2026-11-22T10:00:00Z"}]}
    r = client.request(method, path + "/", headers=_bearer(path + "/"), json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "path", ["/cds-services//", "/cds-services/x//feedback", "/healthz//", "/cds-services/../x",
             "/CDS-SERVICES", "/cds-services/phall-order-select/feedback/x"],
)
def test_no_path_answers_with_a_redirect(tmp_path: Path, path: str) -> None:
    client = make_client(tmp_path)
    for method in ("GET", "POST"):
        r = client.request(method, path, headers={"Host": "evil.example"})
        assert not 300 <= r.status_code < 400 and "location" not in r.headers, (method, path)
        assert r.json()["resourceType"] == "OperationOutcome"


# --- the audience comes from configuration only -------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "other-cds.example.org"},
        {"Host": "other-cds.example.org", "X-Forwarded-Proto": "https"},
        {"X-Forwarded-Host": "other-cds.example.org", "X-Forwarded-Proto": "https"},
        {"Forwarded": "host=other-cds.example.org;proto=https"},
    ],
)
def test_a_token_for_another_service_is_refused_whatever_the_headers_say(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    client = _auth_client(tmp_path)
    for base in ("http://other-cds.example.org", "https://other-cds.example.org"):
        token = EHR.bearer(base + "/cds-services")
        r = client.get("/cds-services", headers={**headers, "Authorization": token})
        assert_operation_outcome(r, 401)


def test_each_configured_public_base_url_is_an_accepted_audience(tmp_path: Path) -> None:
    client = _auth_client(
        tmp_path, public_base_url="https://cds.example.org/,https://cds-internal.example.org/base"
    )
    for base in ("https://cds.example.org", "https://cds-internal.example.org/base"):
        r = client.get("/cds-services", headers=_bearer("/cds-services", base))
        assert r.status_code == 200, (base, r.text)
    assert_operation_outcome(client.get("/cds-services", headers=_bearer("/cds-services")), 401)


def test_auth_on_without_a_public_base_url_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CDS_PUBLIC_BASE_URL"):
        create_app(make_settings(tmp_path, auth="on", public_base_url=[]))


@pytest.mark.parametrize("bad", ["cds.example.org", "ftp://cds.example.org",
                                 "https://user:pw@cds.example.org", "https://cds.example.org/?a=1"])
def test_a_public_base_url_that_is_not_a_base_url_is_a_settings_error(
    tmp_path: Path, bad: str
) -> None:
    with pytest.raises(ValueError, match="public_base_url"):
        make_settings(tmp_path, auth="on", public_base_url=bad)


# --- the fhirServer is bound to configuration -----------------------------------------------------


@pytest.mark.parametrize(
    "server",
    ["https://169.254.169.254/computeMetadata/v1", "https://metadata.google.internal/fhir",
     "https://0.0.0.0/fhir", "https://127.0.0.1:8443/fhir", "https://localhost/fhir",
     "https://10.0.0.7/fhir", "https://[::ffff:169.254.169.254]/fhir", "https://2852039166/",
     "https://intranet/fhir", "https://[fe80::1]/fhir"],
)
def test_without_a_list_an_internal_fhir_server_is_412_and_never_contacted(
    tmp_path: Path, httpx_mock: HTTPXMock, server: str
) -> None:
    client = make_client(tmp_path)
    oo = assert_operation_outcome(client.post(SELECT, json=_fetching(server)), 412)
    text = json.dumps(oo)
    assert "fhirServer refused" in text and "not contacted" in text
    assert "tok-secret-123" not in text
    assert httpx_mock.get_requests() == []


def _answer_everything(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_callback(
        lambda request: httpx.Response(
            200, json=patient() if "/Patient/" in request.url.path else searchset([])
        ),
        is_reusable=True,
        is_optional=True,
    )


def test_a_client_s_fhir_servers_list_binds_its_calls(tmp_path: Path, httpx_mock: HTTPXMock) -> None:
    _answer_everything(httpx_mock)
    client = _auth_client(tmp_path, entry=EHR.trusted_entry(fhir_servers=[FHIR + "/"]))
    r = client.post(SELECT, json=_fetching(FHIR), headers=_bearer(SELECT))
    assert r.status_code == 200, r.text
    listed = len(httpx_mock.get_requests())
    assert listed >= 7 and all(str(q.url).startswith(FHIR) for q in httpx_mock.get_requests())

    for other in ("https://fhir.example.net/R4", FHIR + "/other", "https://ehr.example.org/fhir"):
        oo = assert_operation_outcome(
            client.post(SELECT, json=_fetching(other), headers=_bearer(SELECT)), 412
        )
        text = json.dumps(oo)
        assert "not on the FHIR server allow-list" in text and EHR.iss in text
    assert len(httpx_mock.get_requests()) == listed  # the others were never contacted


def test_a_listed_private_fhir_server_is_contacted(tmp_path: Path, httpx_mock: HTTPXMock) -> None:
    _answer_everything(httpx_mock)
    private = "https://10.20.30.40:8443/fhir"
    client = _auth_client(tmp_path, entry=EHR.trusted_entry(fhir_servers=[private]))
    assert client.post(SELECT, json=_fetching(private), headers=_bearer(SELECT)).status_code == 200


def test_with_auth_off_the_list_comes_from_cds_fhir_servers(
    tmp_path: Path, httpx_mock: HTTPXMock
) -> None:
    _answer_everything(httpx_mock)
    client = make_client(tmp_path, fhir_servers=FHIR)
    assert client.post(SELECT, json=_fetching(FHIR)).status_code == 200
    before = len(httpx_mock.get_requests())
    oo = assert_operation_outcome(client.post(SELECT, json=_fetching("https://x.example/f")), 412)
    assert "CDS_FHIR_SERVERS" in json.dumps(oo)
    assert len(httpx_mock.get_requests()) == before


def test_a_redirect_from_the_fhir_server_is_not_followed(
    tmp_path: Path, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=307, headers={"Location": "https://evil.example/x"},
                            is_reusable=True, is_optional=True)
    client = make_client(tmp_path)
    oo = assert_operation_outcome(client.post(SELECT, json=_fetching()), 412)
    assert "redirects are not followed" in json.dumps(oo)
    assert all(q.url.host == "ehr.example.org" for q in httpx_mock.get_requests())


# --- FHIR responses are bounded ---------------------------------------------------------------


def test_a_fhir_response_over_the_cap_makes_the_key_unavailable(
    tmp_path: Path, httpx_mock: HTTPXMock
) -> None:
    big = searchset([{"resourceType": "Observation", "id": f"o{i}", "status": "final",
                      "note": [{"text": "n" * 1000}]} for i in range(200)])

    def answer(request: Any) -> Any:
        if "/Observation" in request.url.path:
            return httpx.Response(200, json=big)
        return httpx.Response(200, json=patient() if "/Patient/" in request.url.path
                              else searchset([]))

    httpx_mock.add_callback(answer, is_reusable=True, is_optional=True)
    client = make_client(tmp_path, fhir_max_response_bytes=100_000)
    oo = assert_operation_outcome(client.post(SELECT, json=_fetching()), 412)
    assert "observations" in json.dumps(oo) and "CDS_FHIR_MAX_RESPONSE_BYTES" in json.dumps(oo)


def test_a_gzip_bomb_from_the_fhir_server_is_refused_while_inflating(
    tmp_path: Path, httpx_mock: HTTPXMock
) -> None:
    inflated = b'{"resourceType":"Bundle","type":"searchset","x":"' + b"a" * (64 << 20) + b'"}'
    bomb = gzip.compress(inflated, 9)
    assert len(bomb) < 200_000

    def answer(request: Any) -> Any:
        if "/Observation" in request.url.path:
            return httpx.Response(200, stream=_Raw(bomb), headers={"Content-Encoding": "gzip"})
        return httpx.Response(200, json=patient() if "/Patient/" in request.url.path
                              else searchset([]))

    httpx_mock.add_callback(answer, is_reusable=True, is_optional=True)
    client = make_client(tmp_path)
    oo = assert_operation_outcome(client.post(SELECT, json=_fetching()), 412)
    assert "larger than 8388608 bytes" in json.dumps(oo)


def test_all_fhir_responses_of_a_request_share_one_cap(
    tmp_path: Path, httpx_mock: HTTPXMock
) -> None:
    page = searchset([{"resourceType": "Observation", "id": f"o{i}", "status": "final",
                       "note": [{"text": "n" * 1000}]} for i in range(40)])  # ~45 KB each
    httpx_mock.add_callback(
        lambda request: httpx.Response(
            200, json=patient() if "/Patient/" in request.url.path else page),
        is_reusable=True, is_optional=True,
    )
    client = make_client(tmp_path, fhir_max_response_bytes=100_000, fhir_max_total_bytes=200_000)
    oo = assert_operation_outcome(client.post(SELECT, json=_fetching()), 412)
    assert "CDS_FHIR_MAX_TOTAL_BYTES" in json.dumps(oo)


# --- ids, hookInstance and nesting ------------------------------------------------------------


@pytest.mark.parametrize("pid", [".", "..", "a/b", "pt 1", "x" * 65, "%2e", "1?_id=2", "pt#1"])
def test_a_patient_id_that_is_not_a_fhir_id_is_400_and_nothing_is_fetched(
    tmp_path: Path, httpx_mock: HTTPXMock, pid: str
) -> None:
    body = _fetching()
    body["context"]["patientId"] = pid
    oo = assert_operation_outcome(make_client(tmp_path).post(SELECT, json=body), 400)
    assert "context.patientId must be a FHIR id" in json.dumps(oo)
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("encounterId", ".."), ("encounterId", 7), ("userId", "Practitioner/.."),
     ("userId", "Practitioner/a/b"), ("userId", "doc-1")],
)
def test_other_context_ids_are_checked_too(tmp_path: Path, field: str, value: Any) -> None:
    body = _fetching()
    body["context"][field] = value
    oo = assert_operation_outcome(make_client(tmp_path).post(SELECT, json=body), 400)
    assert f"context.{field}" in json.dumps(oo)


@pytest.mark.parametrize("value", ["h" * 129, "has space", "tab\there", "nul\x00", "é" * 10, ""])
def test_a_hook_instance_that_is_not_a_short_ascii_token_is_400_and_not_logged(
    tmp_path: Path, json_log: Callable[[], list[dict[str, Any]]], value: str
) -> None:
    body = hook_request("order-select", prefetch=dict.fromkeys(ALL_KEYS))
    body["hookInstance"] = value
    assert_operation_outcome(make_client(tmp_path).post(SELECT, json=body), 400)
    if value:
        assert all(value not in json.dumps(x) for x in json_log())


@pytest.mark.parametrize("depth", [65, 1_000, 1_020])
@pytest.mark.parametrize("where", ["draftOrders", "selections", "extra"])
def test_deep_nesting_in_the_context_is_400(tmp_path: Path, depth: int, where: str) -> None:
    body = hook_request("order-select", prefetch=dict.fromkeys(ALL_KEYS),
                        orders=[draft_order("dasatinib")])
    inner = json.dumps(body["context"].get(where, "x"))
    body["context"][where] = "@@"
    raw = json.dumps(body).replace('"@@"', "[" * depth + inner + "]" * depth)
    r = make_client(tmp_path).post(SELECT, content=raw.encode(),
                                   headers={"Content-Type": "application/json"})
    assert_operation_outcome(r, 400)


@pytest.mark.parametrize("depth", [200, 500])
def test_deep_contained_resources_in_the_prefetch_are_never_a_500(
    tmp_path: Path, depth: int
) -> None:
    level = ('{"resourceType":"Observation","id":"o%d","status":"final",'
             '"subject":{"reference":"Patient/pt-1"},"contained":[')
    nested = "".join(level % i for i in range(depth)) + '{"resourceType":"Observation"}' + (
        "]}" * depth)
    prefetch: dict[str, Any] = dict.fromkeys(ALL_KEYS)
    prefetch["patient"] = patient()
    prefetch["observations"] = "@@"
    body = hook_request("order-select", prefetch=prefetch, orders=[draft_order("dasatinib")])
    raw = json.dumps(body).replace('"@@"', '{"resourceType":"Bundle","type":"searchset",'
                                   '"entry":[{"resource":' + nested + "}]}")
    r = make_client(tmp_path).post(SELECT, content=raw.encode(),
                                   headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400), r.text


# --- feedback -----------------------------------------------------------------------------------


def _feedback(n: int) -> dict[str, Any]:
    return {"feedback": [{"card": f"card-{i}", "outcome": "overridden",
                          "outcomeTimestamp": "2026-11-22T10:00:00Z"} for i in range(n)]}


def test_feedback_over_the_item_cap_is_413(tmp_path: Path) -> None:
    client = make_client(tmp_path, feedback_max_items=10)
    assert client.post(SELECT + "/feedback", json=_feedback(10)).status_code == 200
    oo = assert_operation_outcome(client.post(SELECT + "/feedback", json=_feedback(11)), 413)
    assert "CDS_FEEDBACK_MAX_ITEMS" in json.dumps(oo)
    oo = assert_operation_outcome(
        make_client(tmp_path, feedback_max_body_bytes=16 << 20).post(
            SELECT + "/feedback", json=_feedback(60_000)), 413)
    assert "60000 items" in json.dumps(oo)


def test_a_feedback_body_over_its_byte_limit_is_413_before_parsing(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    oo = assert_operation_outcome(client.post(SELECT + "/feedback", json=_feedback(60_000)), 413)
    assert "1048576-byte limit" in json.dumps(oo)


def test_feedback_is_validated_and_stored_off_the_event_loop(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    store = client.app.state.service.store  # type: ignore[attr-defined]
    threads: list[int] = []
    loop_threads: list[int] = []
    original = store.record_feedback

    def recording(*args: Any, **kwargs: Any) -> int:
        threads.append(threading.get_ident())
        return int(original(*args, **kwargs))

    store.record_feedback = recording

    async def probe(scope: Any, receive: Any, send: Any) -> None:
        loop_threads.append(threading.get_ident())
        await client.app(scope, receive, send)

    TestClient(probe).post(SELECT + "/feedback", json=_feedback(3))  # type: ignore[arg-type]
    assert threads and loop_threads and threads[0] != loop_threads[0]


# --- refusal log lines carry the hookInstance -------------------------------------------------


HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"


def _refusal_line(lines: list[dict[str, Any]], msg: str) -> dict[str, Any]:
    found = [x for x in lines if x["msg"] == msg]
    assert found, lines
    return found[-1]


def test_a_412_refusal_line_carries_the_hook_instance(
    tmp_path: Path, json_log: Callable[[], list[dict[str, Any]]]
) -> None:
    body = hook_request("order-select", prefetch=None, orders=[draft_order("dasatinib")])
    assert_operation_outcome(make_client(tmp_path).post(SELECT, json=body), 412)
    line = _refusal_line(json_log(), "request refused")
    assert line["status"] == 412 and line["hookInstance"] == HOOK_INSTANCE


def test_a_400_after_the_envelope_is_read_carries_the_hook_instance(
    tmp_path: Path, json_log: Callable[[], list[dict[str, Any]]]
) -> None:
    body = hook_request("patient-view", prefetch=dict.fromkeys(ALL_KEYS))
    assert_operation_outcome(make_client(tmp_path).post(SELECT, json=body), 400)
    line = _refusal_line(json_log(), "request refused")
    assert line["status"] == 400 and line["hookInstance"] == HOOK_INSTANCE


def test_a_500_line_carries_the_hook_instance(
    tmp_path: Path,
    json_log: Callable[[], list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client(tmp_path)

    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr("cds_service.service.decide", broken)
    body = hook_request("order-select",
                        prefetch={**dict.fromkeys(ALL_KEYS), "observations": searchset([
                            {"resourceType": "Observation", "id": "o1", "status": "final"}])})
    oo = assert_operation_outcome(client.post(SELECT, json=body), 500)
    assert "a bug" not in json.dumps(oo)
    line = _refusal_line(json_log(), "unexpected error")
    assert line["error"] == "KeyError" and line["hookInstance"] == HOOK_INSTANCE


def test_the_correlation_id_does_not_leak_into_the_next_request(
    tmp_path: Path, json_log: Callable[[], list[dict[str, Any]]]
) -> None:
    client = make_client(tmp_path)
    body = hook_request("order-select", prefetch=None, orders=[draft_order("dasatinib")])
    client.post(SELECT, json=body)
    assert_operation_outcome(client.post(SELECT, content=b"{not json"), 400)
    assert "hookInstance" not in _refusal_line(json_log(), "request refused")
