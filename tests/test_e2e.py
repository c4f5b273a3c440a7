"""End to end: `cds-service serve` as a real process, a real FHIR server (node) on 127.0.0.1.

The service fetches missing prefetch from the FHIR server with the bearer token, answers 412
when the FHIR server refuses the token or cannot be reached, and checks client JWTs.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fhir_server import running_fhir_server
from tests.support.jwt_factory import SigningClient, write_trusted_clients
from tests.support.patients import draft_order, hook_request, t315i_record
from tests.support.service_process import free_port, start_service

pytestmark = pytest.mark.e2e

EHR = SigningClient(iss="https://ehr.example.org")
FHIR_TOKEN = "fhir-token-e2e"


def _start(tmp: Path, extra_args: list[str], scheme: str = "http", verify: Any = True,
           env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    trusted = write_trusted_clients(tmp, [EHR.trusted_entry()])
    service = start_service(tmp, {
        "CDS_AUTH": "on",
        "CDS_TRUSTED_CLIENTS": str(trusted),
        "CDS_ALLOW_HTTP_FHIR": "true",
        "CDS_ALLOW_LOOPBACK_FHIR": "true",
        **(env or {}),
    }, extra_args, scheme=scheme, verify=verify)
    return service.proc, service.base


@pytest.fixture(scope="module")
def service_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("svc")
    proc, base = _start(tmp, [])
    (tmp / "base").write_text(base)
    try:
        yield tmp / "service.log"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        text = (tmp / "service.log").read_text()
        assert FHIR_TOKEN not in text, "a FHIR token reached the log"
        assert "Thr315Ile" not in text, "patient data reached the log"


@pytest.fixture
def service(service_log: Path) -> str:
    return (service_log.parent / "base").read_text()


def _log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.startswith("{")]


def _post(base: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(base + path, json=body, headers={"Authorization": EHR.bearer(base + path)},
                      timeout=15)


SELECT = "/cds-services/phall-order-select"


def test_discovery_over_real_http(service: str) -> None:
    r = httpx.get(service + "/cds-services",
                  headers={"Authorization": EHR.bearer(service + "/cds-services")})
    assert r.status_code == 200
    assert len(r.json()["services"]) == 3
    assert httpx.get(service + "/cds-services").status_code == 401


@pytest.mark.req("34", "54", "61")
def test_fetch_path_with_bearer_token(service: str) -> None:
    with running_fhir_server(t315i_record(), FHIR_TOKEN) as fhir:
        body = hook_request("order-select", prefetch=None, orders=[draft_order("dasatinib")],
                            fhir_server=fhir, token=FHIR_TOKEN)
        r = _post(service, SELECT, body)
        assert r.status_code == 200, r.text
        critical = [c for c in r.json()["cards"] if c["indicator"] == "critical"]
        assert critical and "T315I" in critical[0]["summary"]

        body["fhirAuthorization"]["access_token"] = "wrong-token"
        r = _post(service, SELECT, body)
        assert r.status_code == 412, r.text
        assert r.json()["resourceType"] == "OperationOutcome"


def test_answer_and_refusal_log_lines_carry_the_hook_instance(
    service: str, service_log: Path
) -> None:
    body = hook_request("order-select", prefetch=None, orders=[draft_order("dasatinib")])
    body["hookInstance"] = "5e0f6f7c-0b8e-4d1e-9a55-e2e-refusal"
    assert _post(service, SELECT, body).status_code == 412
    lines = _log_lines(service_log)
    refused = [x for x in lines if x["msg"] == "request refused" and x.get("status") == 412]
    assert refused and refused[-1]["hookInstance"] == body["hookInstance"]


def test_the_audience_is_the_bound_address_not_the_host_header(service: str) -> None:
    port = service.rsplit(":", 1)[1]
    for base in (service, f"http://localhost:{port}"):  # the loopback default: both names
        url = base + "/cds-services"
        assert httpx.get(service + "/cds-services",
                         headers={"Authorization": EHR.bearer(url)}).status_code == 200
    other = "http://other-cds.example.org/cds-services"
    r = httpx.get(service + "/cds-services", headers={"Host": "other-cds.example.org",
                                                      "Authorization": EHR.bearer(other)})
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"


def test_serve_on_a_public_address_without_a_public_base_url_refuses_to_start(
    tmp_path: Path,
) -> None:
    from tests.support.service_process import service_command

    trusted = write_trusted_clients(tmp_path, [EHR.trusted_entry()])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({"CDS_AUTH": "on", "CDS_TRUSTED_CLIENTS": str(trusted),
                "CDS_DATA_DIR": str(tmp_path / "data")})
    done = subprocess.run([*service_command(), "serve", "--host", "0.0.0.0", "--port",
                           str(free_port())], env=env, capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert b"CDS_PUBLIC_BASE_URL must be set" in done.stderr


@pytest.mark.req("54")
def test_unreachable_fhir_server_is_412(service: str) -> None:
    body = hook_request("order-select", prefetch=None, orders=[draft_order("dasatinib")],
                        fhir_server=f"http://127.0.0.1:{free_port()}", token=FHIR_TOKEN)
    r = _post(service, SELECT, body)
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"


def test_feedback_over_real_http(service: str) -> None:
    with running_fhir_server(t315i_record(), FHIR_TOKEN) as fhir:
        body = hook_request("order-select", prefetch=None, orders=[draft_order("dasatinib")],
                            fhir_server=fhir, token=FHIR_TOKEN)
        card = _post(service, SELECT, body).json()["cards"][0]
    fb = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                        "outcomeTimestamp": "2026-11-22T10:00:00Z"}]}
    assert _post(service, SELECT + "/feedback", fb).status_code == 200


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.req("2", "168")
def test_serves_https_when_given_a_certificate(tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    ctx = ssl.create_default_context(cafile=str(cert))
    proc, base = _start(tmp_path, ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
                        scheme="https", verify=ctx)
    try:
        url = base + "/cds-services"
        r = httpx.get(url, headers={"Authorization": EHR.bearer(url)}, verify=ctx)
        assert r.status_code == 200 and len(r.json()["services"]) == 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
