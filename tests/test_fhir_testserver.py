"""The node test FHIR server backs a browser client such as the CDS Hooks sandbox: CORS with
preflights (and Private Network Access) for allowed origins only, and `POST Type/_search`,
which the sandbox tries before GET. Real node process on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service import fhir_testserver
from cds_service.fhir_testserver import FHIRServerError, _parse_version, running_fhir_server

pytestmark = pytest.mark.e2e

SANDBOX = "https://sandbox.cds-hooks.org"
PATIENT = "cors-pt-1"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": PATIENT, "name": [{"family": "Fictional"}]},
        {"resourceType": "Patient", "id": "cors-pt-2", "name": [{"family": "Other"}]},
    ]
    for i in range(5):
        out.append(
            {
                "resourceType": "Observation",
                "id": f"obs-{i}",
                "status": "final" if i % 2 == 0 else "amended",
                "code": {"text": f"result {i}"},
                "subject": {"reference": f"Patient/{PATIENT}"},
            }
        )
    out.append(
        {
            "resourceType": "Observation",
            "id": "obs-other",
            "status": "final",
            "code": {"text": "someone else's"},
            "subject": {"reference": "Patient/cors-pt-2"},
        }
    )
    return out


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_fhir_server(_resources(), None, cors_origins=[SANDBOX]) as srv:
        yield srv.base_url


@pytest.fixture(scope="module")
def secured() -> Iterator[str]:
    with running_fhir_server(_resources(), "tok-cors", cors_origins=["*"]) as srv:
        yield srv.base_url


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


def test_preflight_from_an_allowed_origin_allows_what_the_sandbox_sends(server: str) -> None:
    r = httpx.options(
        f"{server}/Observation/_search",
        headers={
            "Origin": SANDBOX,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,accept",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == SANDBOX
    assert "Origin" in r.headers["vary"]
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "accept"} <= allowed
    assert "access-control-allow-private-network" not in r.headers


def test_preflight_answers_private_network_access(server: str) -> None:
    r = httpx.options(
        f"{server}/Patient/{PATIENT}",
        headers={
            "Origin": SANDBOX,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-private-network"] == "true"


def test_preflight_from_another_origin_gets_no_cors_headers(server: str) -> None:
    r = httpx.options(
        f"{server}/Patient",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 403
    assert not any(h.startswith("access-control-") for h in r.headers)


def test_simple_requests_carry_cors_headers_for_allowed_origins_only(server: str) -> None:
    ok = httpx.get(f"{server}/Patient/{PATIENT}", headers={"Origin": SANDBOX})
    assert ok.status_code == 200 and ok.json()["id"] == PATIENT
    assert ok.headers["access-control-allow-origin"] == SANDBOX
    meta = httpx.get(f"{server}/metadata", headers={"Origin": SANDBOX})
    assert meta.headers["access-control-allow-origin"] == SANDBOX
    missing = httpx.get(f"{server}/Patient/nobody", headers={"Origin": SANDBOX})
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == SANDBOX  # errors readable too
    other = httpx.get(f"{server}/Patient/{PATIENT}", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    plain = httpx.get(f"{server}/Patient/{PATIENT}")
    assert "access-control-allow-origin" not in plain.headers


def test_without_cors_origins_the_server_sends_no_cors_headers() -> None:
    with running_fhir_server(_resources(), None) as srv:
        r = httpx.get(f"{srv.base_url}/metadata", headers={"Origin": SANDBOX})
        pre = httpx.options(
            f"{srv.base_url}/Patient",
            headers={"Origin": SANDBOX, "Access-Control-Request-Method": "GET"},
        )
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert pre.status_code == 403


def test_post_search_finds_what_get_finds(server: str) -> None:
    got = httpx.get(f"{server}/Observation", params={"patient": PATIENT})
    posted = httpx.post(
        f"{server}/Observation/_search", content=f"patient={PATIENT}", headers=FORM
    )
    assert got.status_code == posted.status_code == 200
    assert posted.json()["resourceType"] == "Bundle" and posted.json()["type"] == "searchset"
    assert _ids(posted.json()) == _ids(got.json()) == {f"obs-{i}" for i in range(5)}
    assert posted.json()["total"] == 5


def test_post_search_merges_body_and_url_parameters_and_pages(server: str) -> None:
    r = httpx.post(
        f"{server}/Observation/_search?status=final",
        content=f"patient=Patient%2F{PATIENT}&_count=2",
        headers=FORM,
    )
    assert r.status_code == 200
    bundle = r.json()
    assert bundle["total"] == 3  # obs-0, obs-2, obs-4
    assert len(bundle["entry"]) == 2
    nxt = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    rest = httpx.get(nxt).json()
    assert _ids(bundle) | _ids(rest) == {"obs-0", "obs-2", "obs-4"}


def test_post_search_refuses_what_get_refuses(server: str) -> None:
    r = httpx.post(
        f"{server}/Observation/_search", content="code:in=http://x/vs&patient=x", headers=FORM
    )
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"


def test_post_search_needs_a_form_body_of_bounded_size(server: str) -> None:
    wrong = httpx.post(f"{server}/Observation/_search", json={"patient": PATIENT})
    assert wrong.status_code == 415 and wrong.json()["resourceType"] == "OperationOutcome"
    huge = httpx.post(
        f"{server}/Observation/_search", content="patient=" + "x" * 70_000, headers=FORM
    )
    assert huge.status_code == 413 and huge.json()["resourceType"] == "OperationOutcome"
    # the server is still serving after refusing a large body
    assert httpx.get(f"{server}/metadata").status_code == 200


def test_other_writes_are_still_refused(server: str) -> None:
    r = httpx.post(f"{server}/Observation", json={"resourceType": "Observation"})
    assert r.status_code == 405
    assert httpx.put(f"{server}/Patient/{PATIENT}", json={}).status_code == 405


def test_post_search_needs_the_token_when_one_is_set(secured: str) -> None:
    body = f"patient={PATIENT}"
    refused = httpx.post(
        f"{secured}/Observation/_search",
        content=body,
        headers={**FORM, "Origin": "https://any.example"},
    )
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"  # the browser sees the 401
    ok = httpx.post(
        f"{secured}/Observation/_search",
        content=body,
        headers={**FORM, "Authorization": "Bearer tok-cors", "Origin": "https://any.example"},
    )
    assert ok.status_code == 200 and len(ok.json()["entry"]) == 5
    assert ok.headers["access-control-allow-origin"] == "*"


def test_node_version_parsing() -> None:
    assert _parse_version("v20.19.2\n") == (20, 19, 2)
    assert _parse_version("v22.12.0-nightly") == (22, 12, 0)
    assert _parse_version("garbage") is None


def test_missing_npm_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in fhir_testserver._SHIPPED:
        (source / name).write_text("{}" if name.endswith(".json") else "// script", "utf-8")
    monkeypatch.setattr(fhir_testserver, "source_dir", lambda: source)
    monkeypatch.setattr(fhir_testserver.shutil, "which", lambda name: None)
    with pytest.raises(FHIRServerError, match="npm is not on PATH"):
        fhir_testserver.ensure_installed(cache=tmp_path / "cache")
    with pytest.raises(FHIRServerError, match="node is not on PATH"):
        fhir_testserver.node_executable()


def test_first_use_installs_the_npm_packages_into_the_cache_and_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an installed wheel does: the shipped script and lock file, no node_modules yet.
    (Real `npm ci` against the npm registry, once, into a fresh cache folder.)"""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    real = fhir_testserver.source_dir()
    for name in fhir_testserver._SHIPPED:
        (shipped / name).write_bytes((real / name).read_bytes())
    monkeypatch.setattr(fhir_testserver, "source_dir", lambda: shipped)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    said: list[str] = []
    installed = fhir_testserver.ensure_installed(say=said.append)
    assert installed.parent == tmp_path / "cache" / "phall-cds" / "fhir-server"
    assert fhir_testserver.is_installed(installed) and said and "first run only" in said[0]
    assert not list(installed.parent.glob("*.partial-*"))
    assert fhir_testserver.ensure_installed(say=said.append) == installed and len(said) == 1
    with running_fhir_server(_resources(), None) as srv:
        assert srv.process.args[1] == str(installed / "server.mjs")  # type: ignore[index]
        assert httpx.get(f"{srv.base_url}/Patient/{PATIENT}").json()["id"] == PATIENT
