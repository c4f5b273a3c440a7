"""Client JWT checks on every endpoint of the HTTP API (the verifier itself: test_auth.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.app import TestClient, assert_operation_outcome, make_client
from tests.support.jwt_factory import SigningClient, rs384_keypair, write_trusted_clients
from tests.support.patients import hook_request

EHR = SigningClient(iss="https://ehr.example.org")
SELECT = "/cds-services/phall-order-select"
FEEDBACK = {"feedback": [{"card": "c-1", "outcome": "overridden",
                          "outcomeTimestamp": "2026-11-22T10:00:00Z"}]}


def _client(tmp_path: Path, *extra: SigningClient, **over: object) -> TestClient:
    trusted = write_trusted_clients(tmp_path, [c.trusted_entry() for c in (EHR, *extra)])
    return make_client(tmp_path, auth="on", trusted_clients=trusted, **over)


def _call(client: TestClient, path: str, authorization: str | None) -> object:
    headers = {"Authorization": authorization} if authorization else {}
    if path == "/cds-services":
        return client.get(path, headers=headers)
    if path.endswith("/feedback"):
        return client.post(path, json=FEEDBACK, headers=headers)
    return client.post(path, json=hook_request("order-select", prefetch={}), headers=headers)


ENDPOINTS = ["/cds-services", SELECT, SELECT + "/feedback"]


@pytest.mark.req("176", "177")
@pytest.mark.parametrize("path", ENDPOINTS)
def test_valid_token_is_accepted_on_every_endpoint(tmp_path: Path, path: str) -> None:
    client = _client(tmp_path)
    r = _call(client, path, EHR.bearer("http://testserver" + path))
    assert r.status_code != 401, r.text  # type: ignore[attr-defined]


@pytest.mark.req("176", "177")
@pytest.mark.parametrize("path", ENDPOINTS)
def test_missing_or_wrong_audience_token_is_401_everywhere(tmp_path: Path, path: str) -> None:
    client = _client(tmp_path)
    r = _call(client, path, None)
    assert_operation_outcome(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"  # type: ignore[attr-defined]
    other = "http://testserver/cds-services/phall-order-sign"
    assert_operation_outcome(_call(client, path, EHR.bearer(other)), 401)


@pytest.mark.req("195")
def test_untrusted_issuer_is_401(tmp_path: Path) -> None:
    client = _client(tmp_path)
    stranger = SigningClient(iss="https://stranger.example.org")
    r = _call(client, "/cds-services", stranger.bearer("http://testserver/cds-services"))
    assert_operation_outcome(r, 401)


@pytest.mark.req("200", "205")
def test_rs384_client_is_accepted(tmp_path: Path) -> None:
    rs = SigningClient(iss="https://rs.example.org", keypair=rs384_keypair())
    client = _client(tmp_path, rs)
    r = _call(client, "/cds-services", rs.bearer("http://testserver/cds-services"))
    assert r.status_code == 200  # type: ignore[attr-defined]


def test_audience_is_the_public_base_url_behind_a_proxy(tmp_path: Path) -> None:
    client = _client(tmp_path, public_base_url="https://cds.example.org/")
    ok = _call(client, "/cds-services", EHR.bearer("https://cds.example.org/cds-services"))
    assert ok.status_code == 200  # type: ignore[attr-defined]
    internal = _call(client, "/cds-services", EHR.bearer("http://testserver/cds-services"))
    assert_operation_outcome(internal, 401)


def test_auth_on_without_trusted_clients_refuses_every_call(tmp_path: Path) -> None:
    client = make_client(tmp_path, auth="on")
    assert_operation_outcome(
        _call(client, "/cds-services", EHR.bearer("http://testserver/cds-services")), 401
    )


def test_token_replay_is_refused_through_the_api(tmp_path: Path) -> None:
    client = _client(tmp_path)
    token = EHR.bearer("http://testserver/cds-services")
    assert _call(client, "/cds-services", token).status_code == 200  # type: ignore[attr-defined]
    assert_operation_outcome(_call(client, "/cds-services", token), 401)
