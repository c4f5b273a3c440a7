"""The CDS client JWT matrix: what Authenticator.verify accepts, and everything it refuses."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from cds_service.auth import Authenticator, ClientIdentity, auth_disabled_warning
from cds_service.errors import AuthError
from cds_service.settings import load_settings
from cds_service.trusted_clients import load_trusted_clients
from tests.support.jwt_factory import (
    OMIT,
    KeyPair,
    SigningClient,
    encode_jws,
    es384_keypair,
    generate_keypair,
    jwk_set,
    mint_hmac,
    mint_token,
    mint_unsigned,
    rs384_keypair,
    write_trusted_clients,
)

pytestmark = pytest.mark.anyio

AUD = "https://cds.example.org/cds-services/phall-order-sign"
DISCOVERY = "https://cds.example.org/cds-services"
EHR = "https://ehr.example.org"
JKU = "https://ehr.example.org/.well-known/jwks.json"
T0 = 1_750_000_000.0
LEEWAY = 30
MAX_AGE = 300
CACHE_SECONDS = 600


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def es_key() -> KeyPair:
    return es384_keypair("es384-1")


@pytest.fixture(scope="module")
def rs_key() -> KeyPair:
    return rs384_keypair("rs384-1")


Factory = Callable[..., Authenticator]


@pytest.fixture
async def make_auth(tmp_path: Path, clock: Clock) -> AsyncIterator[Factory]:
    """Build an Authenticator from a real trusted-clients file; closed after the test."""
    made: list[Authenticator] = []

    def factory(entries: list[dict[str, Any]], **kwargs: Any) -> Authenticator:
        path = write_trusted_clients(tmp_path, entries)
        settings = load_settings(
            auth="on",
            trusted_clients=path,
            jwt_leeway_seconds=LEEWAY,
            jwt_max_age_seconds=MAX_AGE,
            jwks_cache_seconds=CACHE_SECONDS,
        )
        auth = Authenticator(settings, load_trusted_clients(path), now=clock, **kwargs)
        made.append(auth)
        return auth

    yield factory
    for auth in made:
        await auth.aclose()


async def refused(auth: Authenticator, authorization: str | None, aud: str = AUD) -> str:
    with pytest.raises(AuthError) as info:
        await auth.verify(authorization, aud)
    return info.value.message


def bearer(token: str) -> str:
    return f"Bearer {token}"


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.req(176, 177, 199, 205)
async def test_valid_es384_token_identifies_the_client(make_auth: Factory, es_key: KeyPair) -> None:
    ehr = SigningClient(EHR, es_key)
    auth = make_auth([ehr.trusted_entry()])
    token = ehr.token(AUD, now=T0, claims={"tenant": "org-7", "sub": "client-1", "jti": "j-1"})
    identity = await auth.verify(bearer(token), AUD)
    assert identity == ClientIdentity(
        iss=EHR, kid="es384-1", jti="j-1", alg="ES384", sub="client-1", tenant="org-7"
    )


@pytest.mark.req(176, 205)
async def test_valid_rs384_token(make_auth: Factory, rs_key: KeyPair) -> None:
    ehr = SigningClient(EHR, rs_key)
    auth = make_auth([ehr.trusted_entry()])
    identity = await auth.verify(ehr.bearer(AUD, now=T0), AUD)
    assert (identity.iss, identity.kid, identity.alg) == (EHR, "rs384-1", "RS384")
    assert identity.tenant is None and identity.sub is None


@pytest.mark.req(205)
@pytest.mark.parametrize("alg", ["ES256", "ES512", "PS384"])
async def test_other_asymmetric_algorithms_are_accepted(make_auth: Factory, alg: str) -> None:
    ehr = SigningClient(EHR, generate_keypair(alg, "k"))
    auth = make_auth([ehr.trusted_entry()])
    assert (await auth.verify(ehr.bearer(AUD, now=T0), AUD)).alg == alg


@pytest.mark.parametrize(
    ("token_aud", "called"),
    [
        (AUD + "/", AUD),
        (AUD, AUD + "/"),
        ([DISCOVERY, AUD], AUD),
        (DISCOVERY, DISCOVERY),
    ],
)
async def test_aud_forms_that_name_the_url_invoked(
    make_auth: Factory, es_key: KeyPair, token_aud: str | list[str], called: str
) -> None:
    ehr = SigningClient(EHR, es_key)
    auth = make_auth([ehr.trusted_entry()])
    assert (await auth.verify(ehr.bearer(token_aud, now=T0), called)).iss == EHR


async def test_bearer_scheme_is_case_insensitive_and_typ_optional(
    make_auth: Factory, es_key: KeyPair
) -> None:
    ehr = SigningClient(EHR, es_key)
    auth = make_auth([ehr.trusted_entry()])
    token = ehr.token(AUD, now=T0, header={"typ": OMIT})
    assert (await auth.verify(f"bearer  {token} ", AUD)).iss == EHR


async def test_clock_skew_within_leeway_is_tolerated(make_auth: Factory, es_key: KeyPair) -> None:
    ehr = SigningClient(EHR, es_key)
    auth = make_auth([ehr.trusted_entry()])
    just_expired = ehr.token(AUD, now=T0, claims={"exp": T0 - LEEWAY + 1, "iat": T0 - 100})
    slightly_future = ehr.token(AUD, now=T0, claims={"iat": T0 + LEEWAY - 1})
    oldest = ehr.token(AUD, now=T0, claims={"iat": T0 - MAX_AGE - LEEWAY + 1})
    for token in (just_expired, slightly_future, oldest):
        assert (await auth.verify(bearer(token), AUD)).iss == EHR


# --- refused: the Authorization header and token shape ----------------------------------------


@pytest.mark.req(176, 177)
@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        (None, "missing Authorization header"),
        ("", "missing Authorization header"),
        ("Basic dXNlcjpwYXNz", "must use the Bearer scheme"),
        ("Bearer", "carries no token"),
        ("Bearer abc.def", "not a signed JWT"),
        ("Bearer a.b.c.d.e", "not a signed JWT"),
        ("Bearer a b.c.d", "not a signed JWT"),
        ("Bearer " + "a" * 20_000 + ".b.c", "longer than"),
        ("Bearer e30.e30.", "JWT header has no alg"),
        ("Bearer bm90IGpzb24.e30.c2ln", "malformed JWT header"),
    ],
)
async def test_malformed_authorization_is_refused(
    make_auth: Factory, es_key: KeyPair, authorization: str | None, expected: str
) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    assert expected in await refused(auth, authorization)


async def test_payload_that_is_not_json_is_refused(make_auth: Factory, es_key: KeyPair) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    good = mint_token(es_key, iss=EHR, aud=AUD, now=T0)
    head, _, sig = good.split(".")
    assert "malformed JWT payload" in await refused(auth, bearer(f"{head}.bm90IGpzb24.{sig}"))


# --- refused: algorithms ----------------------------------------------------------------------


@pytest.mark.req(201)
@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none_is_refused(make_auth: Factory, es_key: KeyPair, alg: str) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    token = mint_unsigned(iss=EHR, aud=AUD, kid=es_key.kid, alg=alg, now=T0)
    assert "alg 'none' refused" in await refused(auth, bearer(token))


@pytest.mark.req(201)
async def test_alg_none_with_a_copied_signature_is_refused(
    make_auth: Factory, es_key: KeyPair
) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    signed = mint_token(es_key, iss=EHR, aud=AUD, now=T0)
    _, payload, signature = signed.split(".")
    header = encode_jws({"alg": "none", "typ": "JWT", "kid": es_key.kid}, {}, b"").split(".")[0]
    assert "alg 'none' refused" in await refused(auth, bearer(f"{header}.{payload}.{signature}"))


@pytest.mark.req(203)
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_algorithms_are_refused(make_auth: Factory, es_key: KeyPair, alg: Any) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    token = mint_hmac(secrets.token_bytes(32), iss=EHR, aud=AUD, kid=es_key.kid, alg=alg, now=T0)
    assert f"JWT alg {alg} refused: CDS Hooks forbids symmetric" in await refused(
        auth, bearer(token)
    )


@pytest.mark.req(203)
@pytest.mark.parametrize("secret_form", ["pem", "jwk-json"])
async def test_hmac_signed_with_the_public_key_is_refused(
    make_auth: Factory, rs_key: KeyPair, secret_form: str
) -> None:
    """The classic key-confusion attack: the public key (which anyone may hold) as HMAC secret."""
    auth = make_auth([SigningClient(EHR, rs_key).trusted_entry()])
    secret = (
        rs_key.public_pem()
        if secret_form == "pem"
        else json.dumps(rs_key.public_jwk(), separators=(",", ":")).encode()
    )
    token = mint_hmac(secret, iss=EHR, aud=AUD, kid=rs_key.kid, now=T0)
    assert "forbids symmetric (HMAC) algorithms" in await refused(auth, bearer(token))


@pytest.mark.req(205)
@pytest.mark.parametrize(
    ("alg", "expected"),
    [
        ("EdDSA", "JWT alg EdDSA is not accepted; accepted: ES256, ES384"),
        ("ES256K", "JWT alg ES256K is not accepted"),
        ("<script>x</script>", "JWT alg is not accepted"),
        ("hs256", "JWT alg HS* refused"),
    ],
)
async def test_other_algorithms_are_refused(
    make_auth: Factory, es_key: KeyPair, alg: str, expected: str
) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    token = mint_token(es_key, iss=EHR, aud=AUD, now=T0, header={"alg": alg}, sign_with="ES384")
    message = await refused(auth, bearer(token))
    assert expected in message
    assert "<script>" not in message


@pytest.mark.parametrize(
    ("header_alg", "sign_with", "expected"),
    [
        ("ES256", "ES384", "cannot verify alg ES256 (it is a EC key for ES384)"),
        ("RS384", "ES384", "cannot verify alg RS384"),
    ],
)
async def test_alg_must_fit_the_key(
    make_auth: Factory, es_key: KeyPair, header_alg: str, sign_with: str, expected: str
) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    token = mint_token(
        es_key, iss=EHR, aud=AUD, now=T0, header={"alg": header_alg}, sign_with=sign_with
    )
    assert expected in await refused(auth, bearer(token))


async def test_rsa_key_declared_rs384_refuses_ps384(make_auth: Factory, rs_key: KeyPair) -> None:
    auth = make_auth([SigningClient(EHR, rs_key).trusted_entry()])
    token = mint_token(rs_key, iss=EHR, aud=AUD, now=T0, header={"alg": "PS384"}, sign_with="PS384")
    assert "cannot verify alg PS384" in await refused(auth, bearer(token))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"kid": OMIT}, "JWT header kid is missing"),
        ({"kid": ""}, "JWT header kid is missing"),
        ({"kid": 7}, "malformed JWT header"),
        ({"typ": "at+jwt"}, "typ must be 'JWT'"),
        ({"crit": ["b64"], "b64": True}, "'crit' lists extensions"),
        ({"crit": ["exp"]}, "malformed JWT header"),
        ({"jku": 5}, "jku must be a URL string"),
    ],
)
async def test_header_problems(
    make_auth: Factory, es_key: KeyPair, header: dict[str, Any], expected: str
) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    token = mint_token(es_key, iss=EHR, aud=AUD, now=T0, header=header)
    assert expected in await refused(auth, bearer(token))


# --- refused: signature -----------------------------------------------------------------------


@pytest.mark.req(176)
async def test_signature_by_another_key_with_the_same_kid_is_refused(
    make_auth: Factory, es_key: KeyPair
) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    impostor = es384_keypair(es_key.kid)
    token = mint_token(impostor, iss=EHR, aud=AUD, now=T0)
    message = await refused(auth, bearer(token))
    assert message == f"JWT signature verification failed (iss '{EHR}', kid 'es384-1')"


@pytest.mark.req(176)
async def test_tampered_claims_are_refused(make_auth: Factory, rs_key: KeyPair) -> None:
    auth = make_auth([SigningClient(EHR, rs_key).trusted_entry()])
    genuine = mint_token(rs_key, iss=EHR, aud=DISCOVERY, now=T0)
    other = mint_token(rs_key, iss=EHR, aud=AUD, now=T0)
    head, _, signature = genuine.split(".")
    forged = f"{head}.{other.split('.')[1]}.{signature}"
    assert "signature verification failed" in await refused(auth, bearer(forged))


# --- refused: claims --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token_aud", "expected"),
    [
        ("https://cds.example.org/cds-services/other-service", "aud does not match"),
        (DISCOVERY, "aud does not match"),
        ("https://evil.example/cds-services/phall-order-sign", "aud does not match"),
        ([DISCOVERY], "aud does not match"),
        ([], "aud is missing"),
        (7, "aud is missing"),
    ],
)
async def test_wrong_aud_is_refused(
    make_auth: Factory, es_key: KeyPair, token_aud: Any, expected: str
) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    token = mint_token(es_key, iss=EHR, aud=token_aud, now=T0)
    assert expected in await refused(auth, bearer(token))


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"exp": T0 - LEEWAY}, "JWT has expired"),
        ({"exp": T0 - 3600, "iat": T0 - 3900}, "JWT has expired"),
        ({"iat": T0 + LEEWAY + 1}, "iat is in the future"),
        ({"iat": T0 - MAX_AGE - LEEWAY - 1}, "JWT is too old"),
        ({"nbf": T0 + LEEWAY + 1}, "nbf is in the future"),
        ({"exp": OMIT}, "JWT exp is missing"),
        ({"iat": OMIT}, "JWT iat is missing"),
        ({"jti": OMIT}, "JWT jti is missing"),
        ({"jti": ""}, "JWT jti is missing"),
        ({"jti": 12}, "JWT jti is missing"),
        ({"aud": OMIT}, "JWT aud is missing"),
        ({"exp": "tomorrow"}, "exp must be a number"),
        ({"iat": True}, "iat must be a number"),
        ({"tenant": {"id": 1}}, "tenant must be a string"),
        ({"sub": 5}, "sub must be a string"),
    ],
)
async def test_claim_problems(
    make_auth: Factory, es_key: KeyPair, claims: dict[str, Any], expected: str
) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    token = mint_token(es_key, iss=EHR, aud=AUD, now=T0, claims=claims)
    assert expected in await refused(auth, bearer(token))


@pytest.mark.req(195)
@pytest.mark.parametrize("iss", [OMIT, "", 42])
async def test_missing_iss_is_refused(make_auth: Factory, es_key: KeyPair, iss: Any) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    token = mint_token(es_key, iss=EHR, aud=AUD, now=T0, claims={"iss": iss})
    assert "JWT iss is missing" in await refused(auth, bearer(token))


# --- refused: replay --------------------------------------------------------------------------


@pytest.mark.req(176)
async def test_replayed_jti_is_refused(make_auth: Factory, es_key: KeyPair) -> None:
    ehr = SigningClient(EHR, es_key)
    auth = make_auth([ehr.trusted_entry()])
    token = ehr.bearer(AUD, now=T0)
    await auth.verify(token, AUD)
    assert f"JWT replayed: this jti was already used by iss '{EHR}'" in await refused(auth, token)
    reminted = ehr.bearer(DISCOVERY, now=T0, claims={"jti": token_jti(token)})
    assert "JWT replayed" in await refused(auth, reminted, DISCOVERY)


async def test_the_same_jti_from_two_clients_is_not_a_replay(
    make_auth: Factory, es_key: KeyPair, rs_key: KeyPair
) -> None:
    a, b = SigningClient(EHR, es_key), SigningClient("https://other-ehr.example", rs_key)
    auth = make_auth([a.trusted_entry(), b.trusted_entry()])
    await auth.verify(a.bearer(AUD, now=T0, claims={"jti": "same"}), AUD)
    assert (await auth.verify(b.bearer(AUD, now=T0, claims={"jti": "same"}), AUD)).jti == "same"


async def test_a_refused_token_does_not_use_up_its_jti(make_auth: Factory, es_key: KeyPair) -> None:
    ehr = SigningClient(EHR, es_key)
    auth = make_auth([ehr.trusted_entry()])
    wrong_aud = ehr.bearer(DISCOVERY, now=T0, claims={"jti": "j"})
    assert "aud does not match" in await refused(auth, wrong_aud)
    assert (await auth.verify(ehr.bearer(AUD, now=T0, claims={"jti": "j"}), AUD)).jti == "j"


async def test_full_replay_cache_refuses_until_entries_expire(
    make_auth: Factory, es_key: KeyPair, clock: Clock
) -> None:
    ehr = SigningClient(EHR, es_key)
    auth = make_auth([ehr.trusted_entry()], replay_cache_size=2)
    await auth.verify(ehr.bearer(AUD, now=T0), AUD)
    await auth.verify(ehr.bearer(AUD, now=T0), AUD)
    assert "replay cache is full" in await refused(auth, ehr.bearer(AUD, now=T0))
    clock.t = T0 + MAX_AGE + LEEWAY  # the first two can no longer be replayed: forgotten
    assert (await auth.verify(ehr.bearer(AUD, now=clock.t), AUD)).iss == EHR


# --- trust: iss, kid, jku ---------------------------------------------------------------------


@pytest.mark.req(195)
@pytest.mark.parametrize("iss", ["https://evil.example", EHR + "/", "HTTPS://EHR.EXAMPLE.ORG"])
async def test_untrusted_iss_is_refused(make_auth: Factory, es_key: KeyPair, iss: str) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    token = SigningClient(iss, es_key).bearer(AUD, now=T0)
    assert f"JWT iss {iss!r} is not a trusted CDS client" in await refused(auth, token)


@pytest.mark.req(199)
async def test_unknown_kid_without_jku_is_refused_without_fetching(
    make_auth: Factory, es_key: KeyPair, httpx_mock: HTTPXMock
) -> None:
    auth = make_auth([SigningClient(EHR, es_key).trusted_entry()])
    token = mint_token(es_key, iss=EHR, aud=AUD, now=T0, header={"kid": "rotated-2"})
    message = await refused(auth, bearer(token))
    assert (
        message == f"unknown key: no key kid 'rotated-2' for iss '{EHR}' (checked: pre-shared keys)"
    )
    assert httpx_mock.get_requests() == []


@pytest.mark.req(195)
@pytest.mark.parametrize("preshared", [True, False])
async def test_jku_not_on_the_allow_list_is_never_fetched(
    make_auth: Factory, es_key: KeyPair, httpx_mock: HTTPXMock, preshared: bool
) -> None:
    allowed = SigningClient(EHR, es_key, jku=JKU)
    auth = make_auth([allowed.trusted_entry(preshared=preshared)])
    attacker = SigningClient(EHR, es384_keypair("attacker"), jku="https://evil.example/jwks.json")
    message = await refused(auth, attacker.bearer(AUD, now=T0))
    assert message.startswith(
        f"JWT jku header 'https://evil.example/jwks.json' is not on the jku allow-list of iss "
        f"'{EHR}' (the trusted-clients entry does not list it); the key set was not fetched."
    )
    assert "add it to the client's 'jku' list" in message
    assert httpx_mock.get_requests() == []


@pytest.mark.req(195)
async def test_jku_of_another_trusted_client_is_refused(
    make_auth: Factory, es_key: KeyPair, rs_key: KeyPair, httpx_mock: HTTPXMock
) -> None:
    other_jku = "https://other-ehr.example/jwks"
    a = SigningClient(EHR, es_key, jku=JKU)
    b = SigningClient("https://other-ehr.example", rs_key, jku=other_jku)
    auth = make_auth([a.trusted_entry(preshared=False), b.trusted_entry(preshared=False)])
    token = mint_token(es_key, iss=EHR, aud=AUD, now=T0, jku=other_jku)
    assert "not on the jku allow-list" in await refused(auth, bearer(token))
    assert httpx_mock.get_requests() == []


@pytest.mark.req(195)
async def test_jku_is_fetched_once_and_cached(
    make_auth: Factory, es_key: KeyPair, httpx_mock: HTTPXMock, clock: Clock
) -> None:
    ehr = SigningClient(EHR, es_key, jku=JKU)
    auth = make_auth([ehr.trusted_entry(preshared=False)])
    httpx_mock.add_response(url=JKU, json=jwk_set(es_key))
    assert (await auth.verify(ehr.bearer(AUD, now=T0), AUD)).kid == es_key.kid
    assert (await auth.verify(ehr.bearer(AUD, now=T0), AUD)).kid == es_key.kid
    assert len(httpx_mock.get_requests()) == 1
    request = httpx_mock.get_requests()[0]
    assert request.method == "GET" and "authorization" not in request.headers

    clock.t = T0 + CACHE_SECONDS  # the cached set is now stale: fetched again
    httpx_mock.add_response(url=JKU, json=jwk_set(es_key))
    assert (await auth.verify(ehr.bearer(AUD, now=clock.t), AUD)).iss == EHR
    assert len(httpx_mock.get_requests()) == 2


@pytest.mark.req(199)
async def test_without_jku_header_the_allow_listed_jku_is_used(
    make_auth: Factory, rs_key: KeyPair, httpx_mock: HTTPXMock
) -> None:
    published = SigningClient(EHR, rs_key, jku=JKU)
    auth = make_auth([published.trusted_entry(preshared=False)])
    httpx_mock.add_response(url=JKU, json=jwk_set(rs_key))
    no_jku_header = SigningClient(EHR, rs_key)
    assert (await auth.verify(no_jku_header.bearer(AUD, now=T0), AUD)).kid == rs_key.kid
    assert [str(r.url) for r in httpx_mock.get_requests()] == [JKU]


async def test_preshared_key_is_used_before_fetching(
    make_auth: Factory, es_key: KeyPair, httpx_mock: HTTPXMock
) -> None:
    ehr = SigningClient(EHR, es_key, jku=JKU)
    auth = make_auth([ehr.trusted_entry(preshared=True)])
    assert (await auth.verify(ehr.bearer(AUD, now=T0), AUD)).iss == EHR
    assert httpx_mock.get_requests() == []


async def test_unknown_kid_refetches_once_and_is_rate_limited(
    make_auth: Factory, es_key: KeyPair, httpx_mock: HTTPXMock, clock: Clock
) -> None:
    auth = make_auth([SigningClient(EHR, es_key, jku=JKU).trusted_entry(preshared=False)])
    rotated = es384_keypair("es384-2")
    httpx_mock.add_response(url=JKU, json=jwk_set(es_key))
    httpx_mock.add_response(url=JKU, json=jwk_set(es_key, rotated))
    old = SigningClient(EHR, es_key, jku=JKU)
    new = SigningClient(EHR, rotated, jku=JKU)
    await auth.verify(old.bearer(AUD, now=T0), AUD)
    clock.t = T0 + 11  # past the refetch interval: a new kid triggers one refetch
    assert (await auth.verify(new.bearer(AUD, now=clock.t), AUD)).kid == "es384-2"
    assert len(httpx_mock.get_requests()) == 2

    probe = mint_token(es384_keypair("random"), iss=EHR, aud=AUD, now=clock.t, jku=JKU)
    message = await refused(auth, bearer(probe))  # refreshed moments ago: no new fetch
    assert "no key kid 'random'" in message
    assert len(httpx_mock.get_requests()) == 2

    clock.t += 11
    httpx_mock.add_response(url=JKU, json=jwk_set(es_key, rotated))
    probe = mint_token(es384_keypair("random"), iss=EHR, aud=AUD, now=clock.t, jku=JKU)
    assert "no key kid 'random'" in await refused(auth, bearer(probe))
    assert len(httpx_mock.get_requests()) == 3


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ({"status_code": 503}, "(HTTP 503)"),
        ({"status_code": 404, "json": {"keys": []}}, "(HTTP 404)"),
        ({"status_code": 302, "headers": {"Location": "https://evil.example/j"}}, "(HTTP 302)"),
        ({"text": "<html>down</html>"}, "(the response is not a JWK Set)"),
        ({"json": {"kty": "EC"}}, "(the response is not a JWK Set)"),
        ({"content": b"{" * (300 * 1024)}, "(JWK Set larger than 262144 bytes)"),
    ],
)
async def test_jwks_endpoint_failure_is_an_auth_error(
    make_auth: Factory,
    es_key: KeyPair,
    httpx_mock: HTTPXMock,
    response: dict[str, Any],
    expected: str,
) -> None:
    ehr = SigningClient(EHR, es_key, jku=JKU)
    auth = make_auth([ehr.trusted_entry(preshared=False)])
    httpx_mock.add_response(url=JKU, **response)
    message = await refused(auth, ehr.bearer(AUD, now=T0))
    assert message.startswith(f"the JWK Set of iss '{EHR}' could not be fetched")
    assert expected in message
    assert len(httpx_mock.get_requests()) == 1  # redirects are not followed


async def test_jwks_endpoint_down_then_back(
    make_auth: Factory, es_key: KeyPair, httpx_mock: HTTPXMock, clock: Clock
) -> None:
    ehr = SigningClient(EHR, es_key, jku=JKU)
    auth = make_auth([ehr.trusted_entry(preshared=False)])
    httpx_mock.add_exception(httpx.ConnectError("connection refused"), url=JKU)
    assert "could not be fetched (ConnectError)" in await refused(auth, ehr.bearer(AUD, now=T0))
    message = await refused(auth, ehr.bearer(AUD, now=T0))  # backing off: not retried yet
    assert "not retried yet" in message
    assert len(httpx_mock.get_requests()) == 1

    clock.t = T0 + 11
    httpx_mock.add_response(url=JKU, json=jwk_set(es_key))
    assert (await auth.verify(ehr.bearer(AUD, now=clock.t), AUD)).iss == EHR
    assert len(httpx_mock.get_requests()) == 2


async def test_injected_transport_is_used_for_jwks(
    make_auth: Factory, es_key: KeyPair, clock: Clock
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=jwk_set(es_key))

    ehr = SigningClient(EHR, es_key, jku=JKU)
    auth = make_auth([ehr.trusted_entry(preshared=False)], transport=httpx.MockTransport(handler))
    assert (await auth.verify(ehr.bearer(AUD, now=T0), AUD)).iss == EHR
    assert seen == [JKU]


# --- messages ---------------------------------------------------------------------------------


async def test_messages_never_repeat_the_token_or_its_private_claims(
    make_auth: Factory, es_key: KeyPair
) -> None:
    ehr = SigningClient(EHR, es_key)
    auth = make_auth([ehr.trusted_entry()])
    secret_claims = {"jti": "jti-SECRET-42", "tenant": "tenant-SECRET", "sub": "sub-SECRET"}
    good = ehr.token(AUD, now=T0, claims=secret_claims)
    cases = [
        ehr.token(DISCOVERY, now=T0, claims=secret_claims),
        ehr.token(AUD, now=T0, claims={**secret_claims, "exp": T0 - 3600, "iat": T0 - 3700}),
        mint_token(es384_keypair(es_key.kid), iss=EHR, aud=AUD, now=T0, claims=secret_claims),
        good,
    ]
    await auth.verify(bearer(good), AUD)  # so that the last case is a replay
    for token in cases:
        message = await refused(auth, bearer(token))
        assert token not in message and token.split(".")[1] not in message
        assert "SECRET" not in message


def test_auth_disabled_warning_is_loud_and_says_how_to_fix() -> None:
    text = auth_disabled_warning()
    assert "CDS_AUTH=off" in text and "DISABLED" in text
    assert "CDS_AUTH=on" in text and "CDS_TRUSTED_CLIENTS" in text


async def test_from_settings_loads_the_trusted_clients_file(
    tmp_path: Path, es_key: KeyPair
) -> None:
    ehr = SigningClient(EHR, es_key)
    path = write_trusted_clients(tmp_path, [ehr.trusted_entry()])
    async with Authenticator.from_settings(load_settings(trusted_clients=path)) as auth:
        assert (await auth.verify(ehr.bearer(AUD), AUD)).iss == EHR


def token_jti(authorization: str) -> str:
    payload = authorization.split()[1].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    jti: str = claims["jti"]
    return jti
