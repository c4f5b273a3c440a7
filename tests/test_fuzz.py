"""Fuzzing (hypothesis): no request, however shaped, gets a 5xx or takes the process down.

Two layers:

- **in process**, over the structure of CDS Hooks requests: envelopes whose every member may be
  missing, mistyped, hostile (ids like "..", metadata fhirServer URLs, 4 MB strings) or nested
  ~1,000 levels deep anywhere, sent to every route; the FHIR server behind them answers with
  garbage, redirects, OperationOutcomes and oversized or compressed bodies. Every answer is
  below 500, JSON, and an OperationOutcome when it is not 2xx;
- **over real sockets** to a `cds-service serve` process: raw HTTP/1.1 requests with random
  request lines, paths, header fields, framing (Content-Length, chunked) and bodies. Every
  answer is below 500 (503 only for the connection limit), every connection is answered or
  closed within the configured time limits, and the process still answers /healthz after.

Profiles: the default ("ci") is derandomized so CI runs the same examples every time;
`HYPOTHESIS_PROFILE=explore` runs ten times as many random ones.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.api import create_app
from cds_service.service import CDSService
from tests.support.app import TestClient, make_settings
from tests.support.service_process import Service, running_service

settings.register_profile(
    "ci", max_examples=250, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "explore", max_examples=2500, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PATHS = ["/cds-services", "/cds-services/", "/cds-services/phall-order-select",
         "/cds-services/phall-order-sign/", "/cds-services/phall-patient-view",
         "/cds-services/phall-order-select/feedback", "/cds-services/nope",
         "/cds-services/phall-order-select/feedback/", "/healthz", "/", "//cds-services",
         "/cds-services/../healthz", "/cds-services/%2e%2e/x"]
KEYS = ["patient", "conditions", "medicationAdministrations", "medicationRequests",
        "medicationStatements", "observations", "procedures"]
HOSTILE_IDS = [".", "..", "%2e", "a/b", "x" * 65, "", " ", "p1?x=1", "p1#", "1", "pt-1",
               "Patient/pt-1", "é", "\x00"]
HOSTILE_SERVERS = ["https://169.254.169.254/latest", "http://metadata.google.internal/",
                   "https://0.0.0.0/", "https://127.0.0.1/fhir", "https://[::1]/",
                   "https://2852039166/", "https://intranet/", "https://ehr.example.org/fhir",
                   "https://user:pw@ehr.example.org/fhir", "ftp://ehr.example.org",
                   "https://ehr.example.org/fhir?x=1", "not a url", "https://", "https://[::"]

json_leaf = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=15,
)
ident = st.sampled_from(HOSTILE_IDS) | st.text(max_size=70) | json_value


@st.composite
def resources(draw: st.DrawFn) -> Any:
    rtype = draw(st.sampled_from(["Patient", "Observation", "Condition", "MedicationRequest",
                                  "MedicationStatement", "Medication", "OperationOutcome",
                                  "Bundle", "Nonsense"]) | json_value)
    resource: dict[str, Any] = draw(st.dictionaries(
        st.sampled_from(["id", "status", "code", "subject", "valueString", "contained",
                         "medicationReference", "entry", "issue", "note", "component"]),
        json_value, max_size=5))
    resource["resourceType"] = rtype
    if draw(st.booleans()):
        resource["subject"] = {"reference": "Patient/" + str(draw(ident))}
    if draw(st.booleans()):
        resource["medicationReference"] = {"reference": "Medication/" + str(draw(ident))}
    return resource


@st.composite
def bundles(draw: st.DrawFn) -> Any:
    return {"resourceType": "Bundle", "type": draw(st.sampled_from(["searchset", "collection"])),
            "entry": draw(st.lists(st.fixed_dictionaries({"resource": resources()}) | json_value,
                                   max_size=4))}


def mostly(draw: st.DrawFn, good: Any, bad: st.SearchStrategy[Any], p: int = 8) -> Any:
    """`good` about p times in 10, else something drawn from `bad` (hypothesis favours the
    first elements of sampled_from, so "good" is also what examples shrink towards)."""
    return good if draw(st.sampled_from([True] * p + [False] * (10 - p))) else draw(bad)


@st.composite
def envelopes(draw: st.DrawFn, hook: str | None = None) -> Any:
    """A CDS Hooks request that is mostly right, with hostile members mixed in, so that many
    examples get through the envelope to the prefetch, the FHIR server and the rules."""
    hook = hook or draw(st.sampled_from(["order-select", "order-sign", "patient-view"]))
    orders = draw(st.lists(resources(), max_size=3))
    context: dict[str, Any] = {
        "patientId": mostly(draw, "pt-1", ident),
        "userId": mostly(draw, "Practitioner/doc-1", ident),
    }
    if draw(st.booleans()):
        context["encounterId"] = mostly(draw, "enc-1", ident)
    if hook != "patient-view":
        context["draftOrders"] = mostly(draw, {"resourceType": "Bundle", "type": "collection",
                                               "entry": [{"resource": o} for o in orders]},
                                        bundles() | json_value)
        if hook == "order-select":
            context["selections"] = mostly(
                draw, [f"{o.get('resourceType')}/{o.get('id')}" for o in orders], json_value)
    prefetch: dict[str, Any] = {}
    for key in KEYS:
        choice = draw(st.sampled_from(["value"] * 4 + ["absent"] * 4 + ["null"] * 2))
        if choice == "absent":
            continue  # fetched from the (hostile) FHIR server
        prefetch[key] = None if choice == "null" else draw(bundles() | resources() | json_value)
    body: dict[str, Any] = {
        "hook": mostly(draw, hook, json_value, 9),
        "hookInstance": mostly(draw, str(draw(st.uuids())), st.text(max_size=200) | json_value),
        "context": mostly(draw, context, json_value, 9),
        "prefetch": mostly(draw, prefetch, json_value, 9),
        "fhirServer": mostly(draw, "https://ehr.example.org/fhir",
                             st.sampled_from(HOSTILE_SERVERS) | json_value, 5),
        "fhirAuthorization": mostly(draw, {"access_token": "tok-1", "token_type": "Bearer"},
                                    json_value, 7),
    }
    for name in list(body):
        if not draw(st.sampled_from([True] * 19 + [False])):
            del body[name]
    return body


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, bytes]:
    """(path, body): a hook call to the service of its hook most of the time."""
    hook = draw(st.sampled_from(["order-select", "order-sign", "patient-view"]))
    path = mostly(draw, f"/cds-services/phall-{hook}", st.sampled_from(PATHS), 8)
    if draw(st.booleans()) and path.count("/") == 2:
        path += "/"
    if path.endswith(("feedback", "feedback/")):
        return path, draw(raw_bodies(feedback=True))
    return path, draw(raw_bodies(hook=hook))


@st.composite
def raw_bodies(draw: st.DrawFn, hook: str | None = None, feedback: bool = False) -> bytes:
    """A JSON body, maybe with one value replaced by a deep nest or a huge string."""
    feedbacks = st.fixed_dictionaries({"feedback": json_value | st.lists(
        st.fixed_dictionaries({"card": st.text(max_size=40), "outcome": st.sampled_from(
            ["accepted", "overridden", "x"]), "outcomeTimestamp": st.text(max_size=30)}),
        max_size=5)})
    body = draw(feedbacks if feedback else envelopes(hook))
    text = json.dumps(body, separators=(",", ":"))
    twist = draw(st.sampled_from(["none"] * 5 + ["nest", "huge", "truncate"]))
    if twist == "nest" and '"' in text:
        depth = draw(st.sampled_from([65, 300, 990, 1030]))
        spot = draw(st.sampled_from([m for m in ('"context":', '"prefetch":', '"draftOrders":',
                                                 '"entry":', '"feedback":') if m in text]
                                    or ['{']))
        open_, close = ("[" * depth, "]" * depth)
        at = text.index(spot) + len(spot)
        # wrap the value that starts here: find its end by parsing the rest
        rest = text[at:]
        try:
            _value, end = json.JSONDecoder().raw_decode(rest)
            text = text[:at] + open_ + rest[:end] + close + rest[end:]
        except ValueError:
            pass
    elif twist == "huge":
        text = text.replace('"hookInstance":"', '"hookInstance":"' + "h" * (1 << 20), 1)
    elif twist == "truncate":
        text = text[: draw(st.integers(0, len(text)))]  # truncated
    return text.encode()


_BOMB = gzip.compress(b'{"resourceType":"Bundle","type":"searchset","x":"' + b"a" * (20 << 20)
                      + b'"}')


def _hostile_fhir(request: httpx.Request) -> httpx.Response:
    """A FHIR server that answers each path with something else that can go wrong (bodies
    are streams, as from a real server: the client reads them raw and bounded)."""

    def body(data: bytes, status: int = 200, **headers: str) -> httpx.Response:
        return httpx.Response(status, stream=httpx.ByteStream(data), headers=headers)

    kind = sum(request.url.path.encode()) % 8
    if kind == 0:
        return body(b"<html>not json")
    if kind == 1:
        return body(b"", 302, Location="https://evil.example/")
    if kind == 2:
        return body(b'{"resourceType":"OperationOutcome","issue":[]}')
    if kind == 3:
        return body(b"[1, 2, 3]")
    if kind == 4:
        return body(b"x" * (9 << 20))  # over the per-call cap
    if kind == 5:
        return body(b"", 500)
    if kind == 6:
        return body(_BOMB, **{"Content-Encoding": "gzip"})
    return body(b'{"resourceType":"Bundle","type":"searchset"}')


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    tmp = tmp_path_factory.mktemp("fuzz")
    app_settings = make_settings(tmp, fhir_servers="https://ehr.example.org/fhir")
    service = CDSService.from_settings(app_settings, transport=httpx.MockTransport(_hostile_fhir))
    return TestClient(create_app(app_settings, service))


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    body = response.json()
    if response.status_code >= 300:
        assert body["resourceType"] == "OperationOutcome" and body["issue"], body


@given(call=calls())
def test_no_request_structure_gets_a_5xx(client: TestClient, call: tuple[str, bytes]) -> None:
    path, body = call
    method = "GET" if path.rstrip("/") in ("/cds-services", "/healthz", "") else "POST"
    _check(client.request(method, path, content=body,
                          headers={"Content-Type": "application/json"}))


@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
       path=st.sampled_from(PATHS) | st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                             max_size=40).map(lambda p: "/" + p),
       headers=st.dictionaries(st.sampled_from(["Host", "X-Forwarded-Host", "X-Forwarded-Proto",
                                                "Content-Type", "Forwarded", "Authorization"]),
                               st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                       max_size=40), max_size=4))
def test_no_method_path_or_header_gets_a_5xx_or_a_redirect(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    try:
        response = client.request(method, path, headers=headers, content=b"{}")
    except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
        return  # the client library refuses to send it; the raw-socket fuzz below covers these
    assert not 300 <= response.status_code < 400
    if method != "HEAD":
        _check(response)
    else:
        assert response.status_code < 500


# --- raw HTTP over real sockets ----------------------------------------------------------------

LIMITS = {"CDS_AUTH": "off", "CDS_HEADER_TIMEOUT_SECONDS": "1", "CDS_BODY_TIMEOUT_SECONDS": "2",
          "CDS_BODY_IDLE_TIMEOUT_SECONDS": "1", "CDS_KEEPALIVE_TIMEOUT_SECONDS": "1",
          "CDS_MAX_HEADER_BYTES": "8192"}
ANSWER_WITHIN = 6.0  # header 1 s, body 2 s (+2 s backstop grace), keep-alive 1 s


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("fuzz-live"), LIMITS) as service:
        yield service
        assert service.alive(), service.log()[-3000:]


token = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
                min_size=1, max_size=20)


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"OPTIONS", b"CONNECT", b"PRI"])
                  | token.map(str.encode))
    path = draw(st.sampled_from([p.encode() for p in PATHS]) | st.binary(max_size=40)
                | st.just(b"*") | st.just(b"http://evil.example/cds-services"))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b""]))
    body = draw(raw_bodies() | st.binary(max_size=300))
    headers = draw(st.lists(st.tuples(token.map(str.encode), st.binary(max_size=60)),
                            max_size=6))
    framing = draw(st.sampled_from(["length", "wrong-length", "chunked", "bad-chunked", "none",
                                    "both"]))
    lines = [method + b" " + path + b" " + version, b"Host: x"]
    lines += [k + b": " + v.replace(b"\r", b"").replace(b"\n", b"") for k, v in headers]
    if framing in ("length", "both"):
        lines.append(b"Content-Length: %d" % len(body))
    if framing == "wrong-length":
        lines.append(b"Content-Length: %d" % (len(body) + draw(st.integers(-5, 50))))
    if framing in ("chunked", "bad-chunked", "both"):
        lines.append(b"Transfer-Encoding: chunked")
        size = b"%x" % len(body) if framing != "bad-chunked" else b"zz"
        body = size + b"\r\n" + body + b"\r\n0\r\n\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@settings(max_examples=60)
@given(request=raw_requests())
def test_raw_requests_never_get_a_5xx_and_never_hang(live: Service, request: bytes) -> None:
    with socket.create_connection(("127.0.0.1", live.port), timeout=ANSWER_WITHIN) as sock:
        started = time.monotonic()
        try:
            sock.sendall(request)
        except OSError:
            return  # the service already closed (it refused early): fine
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if time.monotonic() - started > ANSWER_WITHIN:
                    break
        except TimeoutError:
            pytest.fail(f"no answer and no close within {ANSWER_WITHIN} s")
        except OSError:
            pass
    for status_line in (x for x in data.split(b"\r\n") if x.startswith(b"HTTP/1.")):
        parts = status_line.split()
        if len(parts) > 1 and parts[1].isdigit():
            assert int(parts[1]) < 500 or int(parts[1]) == 503, data[:300]
    assert live.alive()


def test_the_fuzzed_process_is_still_live(live: Service, tmp_path: Path) -> None:
    assert live.alive()
    assert '"unexpected error"' not in live.log()
