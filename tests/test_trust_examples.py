"""The trust examples under examples/ work as shipped.

* examples/sandbox/ (the demo profile: service.env + trusted-clients.yaml) accepts a JWT made
  exactly as the public CDS Hooks sandbox makes it — with the sandbox's published key, its jku
  header, its iss — without fetching anything, and answers the browser's CORS preflight from
  the sandbox's origin, Private Network Access included.
* examples/trusted-clients.yaml: a client with a pre-shared key that also sends `jku` is
  accepted when that jku is listed; when it is not, the 401 names the jku to add.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpx import HTTPXMock

from cds_service.sandbox import load_profile, read_env_file
from cds_service.settings import Settings
from cds_service.trusted_clients import load_trusted_clients
from tests.support import cds_hooks_sandbox as sbx
from tests.support.app import TestClient, assert_operation_outcome
from tests.support.jwt_factory import SigningClient, generate_keypair, write_trusted_clients
from tests.support.patients import hook_request

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PROFILE = EXAMPLES / "sandbox"
DISCOVERY = "/cds-services"
VIEW = "/cds-services/phall-patient-view"


def _profile_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[TestClient, str]:
    """The app with exactly the settings of examples/sandbox/service.env (from the repo root)."""
    from cds_service.api import create_app

    for name in list(os.environ):
        if name.startswith("CDS_"):
            monkeypatch.delenv(name)
    env = read_env_file(PROFILE / "service.env")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(REPO)  # the env file names the trusted-clients file from the repo root
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path / "data"))
    settings = Settings()
    return TestClient(create_app(settings)), env["CDS_PUBLIC_BASE_URL"]


def test_the_profile_files_agree_with_each_other() -> None:
    env = read_env_file(PROFILE / "service.env")
    assert env["CDS_AUTH"] == "on"
    assert (REPO / env["CDS_TRUSTED_CLIENTS"]).resolve() == (PROFILE / "trusted-clients.yaml")
    assert sbx.ORIGIN in env["CDS_CORS_ORIGINS"].split(",")
    profile = load_profile(PROFILE)
    assert profile.cors_origins == (sbx.ORIGIN,)
    clients = load_trusted_clients(PROFILE / "trusted-clients.yaml")
    sandbox = clients.get(sbx.ISS)
    assert sandbox is not None and sandbox.allows_jku(sbx.JKU)
    assert set(sandbox.keys) == {sbx.KID}
    # the pre-shared key is the public half of the key pair the sandbox publishes
    assert sandbox.keys[sbx.KID].key.public_numbers() == (
        sbx.keypair().private_key.public_key().public_numbers()
    )


@pytest.mark.req("176", "177", "199", "205")
def test_the_sandbox_profile_accepts_the_sandbox_as_it_signs_without_fetching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, httpx_mock: HTTPXMock
) -> None:
    client, base = _profile_client(tmp_path, monkeypatch)
    r = client.get(DISCOVERY, headers={"Authorization": sbx.sandbox_bearer(base + DISCOVERY)})
    assert r.status_code == 200, r.text
    assert {s["hook"] for s in r.json()["services"]} >= {"patient-view", "order-select"}
    body = hook_request("patient-view", prefetch={"patient": None})
    r = client.post(VIEW, json=body, headers={"Authorization": sbx.sandbox_bearer(base + VIEW)})
    assert r.status_code != 401, r.text
    assert httpx_mock.get_requests() == []  # the jku was never fetched: the key is pre-shared


def test_the_sandbox_profile_refuses_the_sandbox_key_with_an_unlisted_jku(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, httpx_mock: HTTPXMock
) -> None:
    client, base = _profile_client(tmp_path, monkeypatch)
    other = "https://sandbox.cds-hooks.org/elsewhere/jwks.json"
    token = sbx.sandbox_token(base + DISCOVERY)
    forged = SigningClient(sbx.ISS, sbx.keypair(), jku=other).bearer(base + DISCOVERY)
    assert client.get(DISCOVERY, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    outcome = assert_operation_outcome(
        client.get(DISCOVERY, headers={"Authorization": forged}), 401
    )
    assert other in outcome["issue"][0]["diagnostics"]
    assert httpx_mock.get_requests() == []


@pytest.mark.req("208")
def test_the_sandbox_profile_answers_the_browser_preflight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, base = _profile_client(tmp_path, monkeypatch)
    preflight = {
        "Origin": sbx.ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
        "Access-Control-Request-Private-Network": "true",
    }
    r = client.options(VIEW, headers=preflight)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == sbx.ORIGIN
    assert r.headers["access-control-allow-private-network"] == "true"
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    got = client.get(
        DISCOVERY,
        headers={"Origin": sbx.ORIGIN, "Authorization": sbx.sandbox_bearer(base + DISCOVERY)},
    )
    assert got.status_code == 200 and got.headers["access-control-allow-origin"] == sbx.ORIGIN
    stranger = client.options(VIEW, headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers


# --- examples/trusted-clients.yaml --------------------------------------------------------------


def _example_entries() -> list[dict[str, Any]]:
    document = yaml.safe_load((EXAMPLES / "trusted-clients.yaml").read_text("utf-8"))
    return list(document["clients"])


def test_every_trusted_clients_example_loads() -> None:
    files = sorted(EXAMPLES.rglob("*trusted-clients*.yaml"))
    assert len(files) >= 2
    for path in files:
        assert len(load_trusted_clients(path)) >= 1, path


def _preshared_with_jku() -> dict[str, Any]:
    entries = [e for e in _example_entries() if e.get("jwks") and e.get("jku")]
    assert entries, "the example shows a pre-shared key together with the jku its client sends"
    return entries[0]


def _with_test_key(entry: dict[str, Any]) -> tuple[dict[str, Any], SigningClient]:
    """The example entry with its example key swapped for a test key of the same kid."""
    kid = entry["jwks"]["keys"][0]["kid"]
    keypair = generate_keypair(entry["jwks"]["keys"][0].get("alg", "ES384"), kid)
    jku = entry["jku"][0] if isinstance(entry["jku"], list) else entry["jku"]
    swapped = copy.deepcopy(entry)
    swapped["jwks"] = keypair.jwks()
    return swapped, SigningClient(entry["iss"], keypair, jku=jku)


def _client(tmp_path: Path, entries: list[dict[str, Any]]) -> TestClient:
    from cds_service.api import create_app

    path = write_trusted_clients(tmp_path, entries)
    settings = Settings(
        data_dir=tmp_path / "data",
        auth="on",
        trusted_clients=path,
        public_base_url="https://cds.example.org",
    )
    return TestClient(create_app(settings))


def test_example_preshared_client_sending_its_listed_jku_is_accepted_without_fetching(
    tmp_path: Path, httpx_mock: HTTPXMock
) -> None:
    entry, ehr = _with_test_key(_preshared_with_jku())
    client = _client(tmp_path, [entry])
    aud = "https://cds.example.org" + DISCOVERY
    r = client.get(DISCOVERY, headers={"Authorization": ehr.bearer(aud)})
    assert r.status_code == 200, r.text
    assert httpx_mock.get_requests() == []


def test_example_preshared_client_whose_jku_is_not_listed_is_told_which_jku_to_add(
    tmp_path: Path, httpx_mock: HTTPXMock
) -> None:
    entry, ehr = _with_test_key(_preshared_with_jku())
    del entry["jku"]  # the pattern the example used to show: pre-shared key, no jku
    client = _client(tmp_path, [entry])
    aud = "https://cds.example.org" + DISCOVERY
    outcome = assert_operation_outcome(
        client.get(DISCOVERY, headers={"Authorization": ehr.bearer(aud)}), 401
    )
    text = outcome["issue"][0]["diagnostics"]
    assert ehr.jku is not None and repr(ehr.jku) in text
    assert "has no jku allow-list" in text and "add it to the client's 'jku' list" in text
    assert httpx_mock.get_requests() == []


def test_a_401_reaches_the_browser_with_cors_headers(tmp_path: Path) -> None:
    """A refused call must be readable by the sandbox (else it only shows 'All clear')."""
    from cds_service.api import create_app

    settings = Settings(
        data_dir=tmp_path / "data",
        auth="on",
        trusted_clients=PROFILE / "trusted-clients.yaml",
        public_base_url="http://127.0.0.1:8080",
        cors_origins=[sbx.ORIGIN],  # type: ignore[arg-type]
    )
    client = TestClient(create_app(settings))
    r = client.get(DISCOVERY, headers={"Origin": sbx.ORIGIN})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == sbx.ORIGIN
