"""Loading the trusted-clients allow-list: good files load, bad files say what to fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.errors import ConfigError
from cds_service.settings import load_settings
from cds_service.trusted_clients import (
    load_trusted_clients,
    parse_jwk_set,
    trusted_clients_from_settings,
)
from tests.support.jwt_factory import (
    KeyPair,
    es384_keypair,
    generate_keypair,
    jwk_set,
    rs384_keypair,
    write_trusted_clients,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "trusted-clients.yaml"
ISS = "https://ehr.example.org"
JKU = "https://ehr.example.org/.well-known/jwks.json"


@pytest.fixture(scope="module")
def ec_key() -> KeyPair:
    return es384_keypair("ec-1")


@pytest.fixture(scope="module")
def rsa_key() -> KeyPair:
    return rs384_keypair("rsa-1")


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_trusted_clients(path)
    return info.value


def write(tmp_path: Path, text: str, name: str = "clients.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- files that load --------------------------------------------------------------------------


@pytest.mark.req(195, 199)
def test_the_example_file_loads() -> None:
    clients = load_trusted_clients(EXAMPLE)
    assert len(clients) == 2
    published = clients.get("https://ehr.example.org")
    assert published is not None
    assert published.jku == ("https://ehr.example.org/.well-known/jwks.json",)
    assert dict(published.keys) == {}
    assert published.fhir_servers == ("https://ehr.example.org:443/fhir/R4",
                                      "https://fhir.internal.example.org:8443/R4")
    preshared = clients.get("https://sandbox.example-ehr.com/cds-client")
    assert preshared is not None
    assert preshared.jku == ("https://sandbox.example-ehr.com/.well-known/jwks.json",)
    assert preshared.fhir_servers is None
    assert preshared.keys["example-ehr-2025"].accepts("ES384")
    assert not preshared.keys["example-ehr-2025"].accepts("RS384")


def test_json_file_with_a_relative_jwks_file_loads(
    tmp_path: Path, ec_key: KeyPair, rsa_key: KeyPair
) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ehr.json").write_text(json.dumps(jwk_set(ec_key, rsa_key)))
    path = write_trusted_clients(
        tmp_path, [{"iss": ISS, "name": "EHR", "jwks_file": "keys/ehr.json"}], fmt="json"
    )
    client = load_trusted_clients(path).get(ISS)
    assert client is not None
    assert client.name == "EHR"
    assert set(client.keys) == {"ec-1", "rsa-1"}
    assert client.keys["rsa-1"].algorithms == {"RS384"}  # the JWK declares alg RS384


def test_rsa_key_without_alg_accepts_every_rsa_algorithm(tmp_path: Path, rsa_key: KeyPair) -> None:
    jwk = {k: v for k, v in rsa_key.public_jwk().items() if k != "alg"}
    path = write_trusted_clients(tmp_path, [{"iss": ISS, "jwks": {"keys": [jwk]}}])
    client = load_trusted_clients(path).get(ISS)
    assert client is not None
    key = client.keys["rsa-1"]
    assert key.accepts("RS384") and key.accepts("PS256")
    assert not key.accepts("ES384") and not key.accepts("HS256")


def test_iss_is_matched_exactly(tmp_path: Path) -> None:
    clients = load_trusted_clients(write_trusted_clients(tmp_path, [{"iss": ISS, "jku": JKU}]))
    assert clients.get(ISS) is not None
    assert clients.get(ISS + "/") is None
    assert clients.get(ISS.upper()) is None


def test_loopback_http_jku_is_allowed_for_local_testing(tmp_path: Path) -> None:
    url = "http://127.0.0.1:8089/jwks.json"
    clients = load_trusted_clients(write_trusted_clients(tmp_path, [{"iss": ISS, "jku": url}]))
    client = clients.get(ISS)
    assert client is not None and client.allows_jku(url)
    assert not client.allows_jku(url + "?x=1")


# --- settings ---------------------------------------------------------------------------------


def test_unset_setting_says_which_variable_to_set() -> None:
    settings = load_settings(trusted_clients=None)
    with pytest.raises(ConfigError, match="CDS_TRUSTED_CLIENTS is not set"):
        trusted_clients_from_settings(settings)
    with pytest.raises(ConfigError, match="CDS_AUTH=off is for local use only"):
        load_trusted_clients(None)


def test_settings_path_is_used(tmp_path: Path) -> None:
    path = write_trusted_clients(tmp_path, [{"iss": ISS, "jku": JKU}])
    clients = trusted_clients_from_settings(load_settings(trusted_clients=path))
    assert clients.source == path
    assert clients.get(ISS) is not None


# --- files that do not load -------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nope.yaml")
    assert "nope.yaml" in error.message
    assert "not found" in error.message and "CDS_TRUSTED_CLIENTS" in error.message


def test_unknown_suffix(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "clients: []", name="clients.txt"))
    assert "clients.txt" in error.message and "*.yaml, *.yml or *.json" in error.message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "clients:\n  - iss: [unclosed\n"))
    assert "clients.yaml" in error.message and "invalid YAML" in error.message
    assert "line" in error.message


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    text = f"clients:\n  - iss: {ISS}\n    jku: {JKU}\n    iss: https://other.example\n"
    error = load_error(write(tmp_path, text))
    assert "duplicate key 'iss'" in error.message and "line 4" in error.message


def test_duplicate_json_key(tmp_path: Path) -> None:
    text = '{"clients": [{"iss": "a", "iss": "b", "jku": "https://a.example/jwks"}]}'
    error = load_error(write(tmp_path, text, name="clients.json"))
    assert "invalid JSON" in error.message and "duplicate key 'iss'" in error.message


def client_problem(tmp_path: Path, entries: list[Any] | Any) -> str:
    """The error message for a document whose `clients` value is `entries`."""
    path = tmp_path / "clients.yaml"
    path.write_text(json.dumps({"clients": entries}), encoding="utf-8")  # JSON is YAML
    return load_error(path).message


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([], "clients: must be a non-empty list"),
        ("https://ehr.example.org", "clients: must be a non-empty list"),
        (["https://ehr.example.org"], "clients[0]: must be a mapping"),
        ([{"jku": JKU}], "clients[0].iss: required"),
        ([{"iss": " https://ehr.example.org", "jku": JKU}], "leading or trailing spaces"),
        (
            [{"iss": ISS, "jwks_url": JKU}],
            "clients[0].jwks_url: unknown key; allowed keys are iss, name, jku, jwks_file, jwks",
        ),
        ([{"iss": ISS}], "clients[0]: no way to verify this client's JWTs; add a pre-shared"),
        (
            [{"iss": ISS, "jku": JKU}, {"iss": ISS, "jku": JKU}],
            "clients[1].iss: 'https://ehr.example.org' is already listed at clients[0]",
        ),
        ([{"iss": ISS, "jku": "http://ehr.example.org/jwks"}], "clients[0].jku: "),
        ([{"iss": ISS, "jku": "http://ehr.example.org/jwks"}], "must use https"),
        ([{"iss": ISS, "jku": "/jwks.json"}], "must be an absolute https URL"),
        ([{"iss": ISS, "jku": [JKU, JKU + "#k"]}], "clients[0].jku[1]: "),
        ([{"iss": ISS, "jku": JKU + "#k"}], "must not have a #fragment"),
        ([{"iss": ISS, "jku": "https://u:p@ehr.example.org/j"}], "must not carry credentials"),
        ([{"iss": ISS, "jku": {"url": JKU}}], "clients[0].jku: must be a URL or a list of URLs"),
        ([{"iss": ISS, "jwks": {"keys": []}, "jwks_file": "x.json"}], "not both"),
        ([{"iss": ISS, "jwks": [{"kty": "EC"}]}], "a JWK Set must be an object with a 'keys'"),
        ([{"iss": ISS, "jwks": {"keys": []}}], "clients[0].jwks: the JWK Set has no keys"),
        ([{"iss": ISS, "jwks_file": "missing.json"}], "clients[0].jwks_file: JWK Set file"),
    ],
)
def test_client_entry_problems(tmp_path: Path, entries: Any, expected: str) -> None:
    message = client_problem(tmp_path, entries)
    assert expected in message
    assert f"trusted clients file {tmp_path / 'clients.yaml'}" in message


def test_top_level_must_be_a_mapping_with_clients_only(tmp_path: Path) -> None:
    assert "top level must be a mapping" in load_error(write(tmp_path, "- iss: x\n")).message
    message = load_error(write(tmp_path, f"client:\n  - iss: {ISS}\n")).message
    assert "'client': unknown top-level key" in message
    assert "clients: must be a non-empty list" in message


def test_jwks_file_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text("{not json", encoding="utf-8")
    message = client_problem(tmp_path, [{"iss": ISS, "jwks_file": "keys.json"}])
    assert "clients[0].jwks_file: JWK Set file" in message and "is not valid JSON" in message


def key_problem(tmp_path: Path, jwk: dict[str, Any]) -> str:
    return client_problem(tmp_path, [{"iss": ISS, "jwks": {"keys": [jwk]}}])


def test_private_key_material_is_refused(tmp_path: Path, ec_key: KeyPair, rsa_key: KeyPair) -> None:
    message = key_problem(tmp_path, ec_key.private_jwk())
    assert "clients[0].jwks: keys[0]: contains private key material (d)" in message
    message = key_problem(tmp_path, rsa_key.private_jwk())
    assert "contains private key material (d, p, q, dp, dq, qi)" in message
    assert "only the client's public key may be shared" in message


@pytest.mark.req(203)
def test_symmetric_key_is_refused(tmp_path: Path) -> None:
    message = key_problem(tmp_path, {"kty": "oct", "kid": "k", "k": "c2VjcmV0"})
    assert "symmetric key (kty 'oct') refused" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kid": None}, "'kid' is required"),
        ({"kid": ""}, "'kid' is required"),
        ({"kty": "OKP"}, "kty must be 'EC' or 'RSA'"),
        ({"use": "enc"}, "'use' must be 'sig'"),
        ({"key_ops": ["encrypt"]}, "'key_ops' does not include 'verify'"),
        ({"alg": "HS256"}, "alg 'HS256' is not accepted"),
        ({"alg": "ES256"}, "alg ES256 does not match curve P-384"),
        ({"crv": "secp256k1"}, "crv must be one of P-256, P-384, P-521"),
        ({"x": "AAAA"}, "not a valid EC public key"),
    ],
)
def test_unusable_ec_keys(
    tmp_path: Path, ec_key: KeyPair, change: dict[str, Any], expected: str
) -> None:
    jwk = {k: v for k, v in {**ec_key.public_jwk(), **change}.items() if v is not None}
    assert expected in key_problem(tmp_path, jwk)


def test_short_rsa_key_is_refused(tmp_path: Path) -> None:
    weak = generate_keypair("RS384", "weak", rsa_bits=1024)
    assert "RSA key is 1024 bits; at least 2048" in key_problem(tmp_path, weak.public_jwk())


def test_rsa_key_with_ec_alg_is_refused(tmp_path: Path, rsa_key: KeyPair) -> None:
    message = key_problem(tmp_path, rsa_key.public_jwk(alg="ES384"))
    assert "alg ES384 is not an RSA algorithm" in message


def test_duplicate_kid_is_refused(tmp_path: Path, ec_key: KeyPair) -> None:
    other = es384_keypair("ec-1")
    message = client_problem(tmp_path, [{"iss": ISS, "jwks": jwk_set(ec_key, other)}])
    assert "keys[1]: kid 'ec-1' appears more than once" in message


def test_every_problem_is_reported_at_once(tmp_path: Path, ec_key: KeyPair) -> None:
    path = tmp_path / "clients.yaml"
    document = {
        "clients": [
            {"iss": ISS, "jku": ["http://ehr.example.org/jwks"]},
            {"iss": "https://b.example", "jwks": {"keys": [ec_key.private_jwk()]}},
            {"iss": "https://c.example"},
        ]
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    error = load_error(path)
    assert error.message.startswith(f"trusted clients file {path}: 4 problem(s)")
    assert [d.split(":", 2)[1].strip() for d in error.details] == [
        "clients[0].jku[0]",
        "clients[0]",  # the only jku was refused, so nothing is left to verify with
        "clients[1].jwks",
        "clients[2]",
    ]
    assert all(d.startswith("clients.yaml: ") for d in error.details)


# --- JWK Sets fetched at run time -------------------------------------------------------------


def test_fetched_jwk_set_keeps_usable_keys_and_reports_the_rest(
    ec_key: KeyPair, rsa_key: KeyPair
) -> None:
    weak = generate_keypair("RS256", "weak", rsa_bits=1024)
    dup_a, dup_b = es384_keypair("dup"), es384_keypair("dup")
    document = {
        "keys": [
            ec_key.public_jwk(),
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            weak.public_jwk(),
            rsa_key.public_jwk(),
            dup_a.public_jwk(),
            dup_b.public_jwk(),
        ]
    }
    keys, problems = parse_jwk_set(document)
    assert set(keys) == {"ec-1", "rsa-1"}
    assert [p.split(":", 1)[0] for p in problems] == ["keys[1]", "keys[2]", "keys[5]"]


@pytest.mark.parametrize("document", [None, [], {"keys": "x"}, {"kty": "EC"}])
def test_document_that_is_not_a_jwk_set(document: object) -> None:
    with pytest.raises(ValueError, match="'keys' list"):
        parse_jwk_set(document)


# --- fhir_servers (issue 15) --------------------------------------------------------------------


def test_fhir_servers_are_normalised_and_absent_means_no_list(tmp_path: Path, ec_key: KeyPair) -> None:
    path = write_trusted_clients(tmp_path, [
        {"iss": ISS, "jwks": jwk_set(ec_key),
         "fhir_servers": ["https://EHR.example.org/fhir/R4/", "https://ehr.example.org:443/fhir/R4"]},
        {"iss": "https://other.example.org", "jwks": jwk_set(ec_key), "fhir_servers": []},
        {"iss": "https://third.example.org", "jwks": jwk_set(ec_key)},
    ])
    clients = load_trusted_clients(path)
    assert clients.get(ISS).fhir_servers == ("https://ehr.example.org:443/fhir/R4",)  # type: ignore[union-attr]
    assert clients.get("https://other.example.org").fhir_servers == ()  # type: ignore[union-attr]
    assert clients.get("https://third.example.org").fhir_servers is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("https://ehr.example.org/fhir", "must be a list"),
        (["ehr.example.org/fhir"], "absolute http(s) URL"),
        (["https://user:pw@ehr.example.org/fhir"], "credentials"),
        (["https://ehr.example.org/fhir?tenant=1"], "query"),
        ([42], "must be a URL string"),
    ],
)
def test_bad_fhir_servers_entries_are_reported(
    tmp_path: Path, ec_key: KeyPair, value: Any, fragment: str
) -> None:
    path = write_trusted_clients(tmp_path, [{"iss": ISS, "jwks": jwk_set(ec_key),
                                             "fhir_servers": value}])
    error = load_error(path)
    assert "clients[0].fhir_servers" in str(error) and fragment in str(error)
