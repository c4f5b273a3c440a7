"""Authentication of the CDS client: verify the signed JWT of every call (CDS Hooks 2.0).

`Authenticator.verify(authorization, audience)` returns the caller's `ClientIdentity` or
raises `AuthError`. The checks, in order (the first failure wins):

1. ``Authorization: Bearer <JWT>`` is present and the token is a compact JWS.
2. Header: ``alg`` is an asymmetric algorithm from `ACCEPTED_ALGORITHMS` (ES384 and RS384
   are the ones CDS Hooks recommends; ``none`` and every HMAC ``HS*`` are refused, so the
   classic "HMAC-sign with the public key" attack never reaches a key); ``typ``, when
   present, is ``JWT``; ``kid`` is required; a ``crit`` header is refused.
3. ``iss`` is on the trusted-clients allow-list (exact match). A ``jku`` header must be on
   that client's jku allow-list; a jku that is not listed is never fetched.
4. The key: the pre-shared JWK Set of the client first; else the JWK Set at the header's
   ``jku`` (or, without a jku header, at the client's allow-listed jku URLs). Fetched sets
   are cached for ``CDS_JWKS_CACHE_SECONDS``; an unknown kid causes one refetch, at most
   once per `jwks_min_refetch_seconds` per URL, so random kids cannot hammer the client.
   The key's type and curve must fit ``alg`` (no ES256 token verified with a P-384 key).
5. Signature (PyJWT, with the algorithm fixed to the header alg already checked above).
6. Claims: ``aud`` (string or list) names the URL invoked (a trailing slash is ignored).
   The caller passes the URL(s) it may be invoked at, built from configuration
   (``CDS_PUBLIC_BASE_URL`` plus the path), never from request headers;
   ``exp`` required and not past (``CDS_JWT_LEEWAY_SECONDS`` of clock skew allowed);
   ``iat`` required, not in the future beyond the leeway and not older than
   ``CDS_JWT_MAX_AGE_SECONDS`` (plus leeway); ``nbf`` honoured if present; ``jti`` required.
7. Replay: a (iss, jti) pair is accepted once while its token could still be valid. The
   cache is in memory (one process), bounded; when full of live entries it refuses new
   tokens rather than forget one that could be replayed.

Error messages name the failed check and, at most, the iss and kid of the token; they never
repeat the token or its other contents. Time comes from an injectable clock (`now`), JWKS
fetches go through an injectable httpx transport, so tests need neither sleeps nor network.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import anyio
import httpx
import jwt
from jwt.exceptions import InvalidSignatureError, PyJWTError

from .errors import AuthError
from .settings import Settings
from .trusted_clients import (
    ACCEPTED_ALGORITHMS,
    RECOMMENDED_ALGORITHMS,
    PublicJWK,
    TrustedClient,
    TrustedClients,
    parse_jwk_set,
    trusted_clients_from_settings,
)

__all__ = [
    "ACCEPTED_ALGORITHMS",
    "Authenticator",
    "ClientIdentity",
    "auth_disabled_warning",
]

log = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 16 * 1024
"""Longer bearer tokens are refused before any decoding."""

MAX_JWKS_BYTES = 256 * 1024
"""Largest JWK Set document read from a jku."""

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_KNOWN_JWA = ACCEPTED_ALGORITHMS | _HMAC_ALGORITHMS | {"ES256K", "EdDSA", "Ed25519", "Ed448"}
_RECOMMENDED = " or ".join(RECOMMENDED_ALGORITHMS)


@dataclass(frozen=True)
class ClientIdentity:
    """Who called: the verified claims the rest of the service may rely on."""

    iss: str
    kid: str
    jti: str
    alg: str
    sub: str | None = None
    tenant: str | None = None
    """Opaque id of the healthcare organisation, when the client sends one."""


def auth_disabled_warning() -> str:
    """Text to log loudly at start-up when CDS_AUTH=off."""
    return (
        "CDS_AUTH=off: CDS client authentication is DISABLED. Any caller that can reach this "
        "process can invoke every CDS service and read the cards it returns, which are built "
        "from patient data. Use this only on a developer machine bound to 127.0.0.1; never "
        "expose it to a network. CDS Hooks 2.0 expects a service to authenticate its clients "
        "with signed JWTs: set CDS_AUTH=on and CDS_TRUSTED_CLIENTS=<file>."
    )


class Authenticator:
    """Verifies CDS client JWTs against the trusted-clients allow-list.

    One instance per process: it holds the JWKS cache, the replay cache and an httpx client;
    close it with `aclose()` (or use it as an async context manager).
    """

    def __init__(
        self,
        settings: Settings,
        clients: TrustedClients,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], float] = time.time,
        jwks_timeout_seconds: float = 5.0,
        jwks_min_refetch_seconds: float = 10.0,
        replay_cache_size: int = 200_000,
    ) -> None:
        self._clients = clients
        self._now = now
        self._leeway = float(settings.jwt_leeway_seconds)
        self._max_age = float(settings.jwt_max_age_seconds)
        self._jwks = _JWKSCache(
            transport=transport,
            now=now,
            ttl=float(settings.jwks_cache_seconds),
            min_refetch=jwks_min_refetch_seconds,
            timeout=jwks_timeout_seconds,
        )
        self._replays = _ReplayCache(replay_cache_size)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], float] = time.time,
    ) -> Authenticator:
        """Load the allow-list named by CDS_TRUSTED_CLIENTS (ConfigError if unusable)."""
        return cls(settings, trusted_clients_from_settings(settings), transport=transport, now=now)

    async def aclose(self) -> None:
        await self._jwks.aclose()

    async def __aenter__(self) -> Authenticator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def verify(
        self, authorization: str | None, audience: str | Collection[str]
    ) -> ClientIdentity:
        """Verify the Authorization header of a call to `audience`: the exact URL invoked, or
        the URLs it is known by (one per configured public base URL)."""
        token = _bearer_token(authorization)
        header = _checked_header(token)
        alg: str = header["alg"]
        kid: str = header["kid"]
        jku: str | None = header.get("jku")

        iss = _unverified_issuer(token)
        client = self._clients.get(iss)
        if client is None:
            raise AuthError(f"JWT iss {_show(iss)} is not a trusted CDS client")
        if jku is not None and not client.allows_jku(jku):
            listed = "has no jku allow-list" if not client.jku else "does not list it"
            raise AuthError(
                f"JWT jku header {_show(jku, 200)} is not on the jku allow-list of iss "
                f"{_show(iss)} (the trusted-clients entry {listed}); the key set was not "
                "fetched. If this client publishes its keys at that URL, add it to the "
                "client's 'jku' list in the CDS_TRUSTED_CLIENTS file"
            )

        key = await self._resolve_key(client, kid, jku)
        if not key.accepts(alg):
            raise AuthError(
                f"key kid {_show(kid)} of iss {_show(iss)} cannot verify alg {alg} "
                f"(it is a {key.kty} key for {', '.join(sorted(key.algorithms))})"
            )
        claims = _verified_claims(token, key, alg, iss, kid)
        identity = self._check_claims(claims, audience, iss=iss, kid=kid, alg=alg)
        return identity

    # --- steps ------------------------------------------------------------------------------

    async def _resolve_key(self, client: TrustedClient, kid: str, jku: str | None) -> PublicJWK:
        preshared = client.keys.get(kid)
        if preshared is not None:
            return preshared
        urls = (jku,) if jku is not None else client.jku
        failure: str | None = None
        for url in urls:
            try:
                key = await self._jwks.get_key(url, kid, iss=client.iss)
            except _FetchFailed as exc:
                failure = str(exc)
                continue
            if key is not None:
                return key
        if failure is not None:
            raise AuthError(
                f"the JWK Set of iss {_show(client.iss)} could not be fetched ({failure}); "
                f"key kid {_show(kid)} cannot be verified"
            )
        checked = "pre-shared keys" + (", JWK Set from jku" if urls else "")
        raise AuthError(
            f"unknown key: no key kid {_show(kid)} for iss {_show(client.iss)} (checked: {checked})"
        )

    def _check_claims(
        self,
        claims: Mapping[str, Any],
        audience: str | Collection[str],
        *,
        iss: str,
        kid: str,
        alg: str,
    ) -> ClientIdentity:
        now = self._now()
        leeway = self._leeway

        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not audiences:
            raise AuthError("JWT aud is missing; it must be the URL of the endpoint invoked")
        wanted = {a.rstrip("/") for a in ((audience,) if isinstance(audience, str) else audience)}
        if not any(isinstance(a, str) and a.rstrip("/") in wanted for a in audiences):
            raise AuthError("JWT aud does not match the URL of the endpoint invoked")

        exp = _number_claim(claims, "exp")
        if now >= exp + leeway:
            raise AuthError("JWT has expired (exp is in the past)")
        iat = _number_claim(claims, "iat")
        if iat > now + leeway:
            raise AuthError("JWT iat is in the future; check the client's clock")
        if iat < now - self._max_age - leeway:
            raise AuthError(
                f"JWT is too old: iat is more than {int(self._max_age)} s in the past; "
                "a CDS client signs a fresh JWT for every call"
            )
        if "nbf" in claims and _number_claim(claims, "nbf") > now + leeway:
            raise AuthError("JWT is not valid yet (nbf is in the future)")

        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AuthError("JWT jti is missing; a unique jti is required against replay")
        sub = _optional_string_claim(claims, "sub")
        tenant = _optional_string_claim(claims, "tenant")

        remember_until = min(exp, iat + self._max_age) + leeway
        digest = hashlib.sha256(f"{iss}\x00{jti}".encode()).digest()
        outcome = self._replays.add(digest, remember_until, now)
        if outcome == "replay":
            raise AuthError(f"JWT replayed: this jti was already used by iss {_show(iss)}")
        if outcome == "full":
            log.error("JWT replay cache is full; refusing new tokens until entries expire")
            raise AuthError("too many JWTs in flight: the replay cache is full; retry shortly")
        return ClientIdentity(iss=iss, kid=kid, jti=jti, alg=alg, sub=sub, tenant=tenant)


# --- token parsing ----------------------------------------------------------------------------


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise AuthError("missing Authorization header; expected 'Authorization: Bearer <JWT>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError("Authorization header must use the Bearer scheme ('Bearer <JWT>')")
    token = token.strip()
    if not token:
        raise AuthError("Authorization header carries no token after 'Bearer'")
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError(f"bearer token longer than {MAX_TOKEN_CHARS} characters")
    if not _COMPACT_JWS.fullmatch(token):
        raise AuthError("bearer token is not a signed JWT (compact JWS: header.payload.signature)")
    return token


def _checked_header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except PyJWTError:
        raise AuthError("malformed JWT header") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise AuthError("JWT header has no alg")
    if alg.lower() == "none":
        raise AuthError(
            "JWT alg 'none' refused: an unsigned JWT cannot identify a CDS client "
            f"(sign it with {_RECOMMENDED})"
        )
    if alg.upper().startswith("HS"):
        shown = alg if alg in _HMAC_ALGORITHMS else "HS*"
        raise AuthError(
            f"JWT alg {shown} refused: CDS Hooks forbids symmetric (HMAC) algorithms "
            f"(sign with {_RECOMMENDED})"
        )
    if alg not in ACCEPTED_ALGORITHMS:
        shown = f" {alg}" if alg in _KNOWN_JWA else ""
        raise AuthError(
            f"JWT alg{shown} is not accepted; accepted: {', '.join(sorted(ACCEPTED_ALGORITHMS))}"
        )
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        raise AuthError("JWT header typ must be 'JWT'")
    if "crit" in header:
        raise AuthError("JWT header 'crit' lists extensions this service does not support")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AuthError("JWT header kid is missing; CDS Hooks requires it to select the key")
    jku = header.get("jku")
    if jku is not None and not isinstance(jku, str):
        raise AuthError("JWT header jku must be a URL string")
    return header


def _unverified_issuer(token: str) -> str:
    """The iss claim, read before verification only to choose the client and its keys."""
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except PyJWTError:
        raise AuthError("malformed JWT payload") from None
    iss = payload.get("iss")
    if not isinstance(iss, str) or not iss:
        raise AuthError("JWT iss is missing; it must name the CDS client")
    return iss


def _verified_claims(token: str, key: PublicJWK, alg: str, iss: str, kid: str) -> dict[str, Any]:
    """Check the signature; the claims are checked by the caller with the injected clock."""
    try:
        return jwt.decode(
            token,
            key=key.key,
            algorithms=[alg],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
                "enforce_minimum_key_length": True,
            },
        )
    except InvalidSignatureError:
        raise AuthError(
            f"JWT signature verification failed (iss {_show(iss)}, kid {_show(kid)})"
        ) from None
    except PyJWTError:
        raise AuthError(f"JWT could not be verified (iss {_show(iss)}, kid {_show(kid)})") from None


def _number_claim(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if value is None:
        raise AuthError(f"JWT {name} is missing; CDS Hooks requires it")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthError(f"JWT {name} must be a number of seconds since the epoch")
    return float(value)


def _optional_string_claim(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise AuthError(f"JWT {name} must be a string")
    return value


def _show(value: object, limit: int = 80) -> str:
    """A short, printable rendering of an iss or kid for a message."""
    text = "".join(ch if ch.isprintable() else "?" for ch in repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- caches -----------------------------------------------------------------------------------


class _ReplayCache:
    """Remembers token digests until their expiry; bounded, thread-safe."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("replay cache size must be at least 1")
        self._max = max_entries
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()

    def add(self, digest: bytes, expires_at: float, now: float) -> Literal["ok", "replay", "full"]:
        with self._lock:
            self._purge(now)
            if digest in self._expiry:
                return "replay"
            if len(self._expiry) >= self._max:
                return "full"
            self._expiry[digest] = expires_at
            heapq.heappush(self._heap, (expires_at, digest))
            return "ok"

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            expires_at, digest = heapq.heappop(self._heap)
            if self._expiry.get(digest) == expires_at:
                del self._expiry[digest]


class _FetchFailed(Exception):
    """A JWK Set could not be fetched; the message is safe to show (no token content)."""


@dataclass
class _JWKSEntry:
    lock: anyio.Lock
    keys: Mapping[str, PublicJWK] | None = None
    fetched_at: float = -math.inf
    attempted_at: float = -math.inf
    last_error: str | None = None


class _JWKSCache:
    """JWK Sets fetched from allow-listed jku URLs, cached per URL.

    Only URLs taken from the allow-list reach this class, so the number of entries is bounded
    by the configuration. Redirects are not followed (they would leave the allow-list).
    """

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None,
        now: Callable[[], float],
        ttl: float,
        min_refetch: float,
        timeout: float,
    ) -> None:
        self._transport = transport
        self._now = now
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._timeout = timeout
        self._entries: dict[str, _JWKSEntry] = {}
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def get_key(self, url: str, kid: str, *, iss: str) -> PublicJWK | None:
        """The key `kid` from the set at `url`, fetching when stale or on an unknown kid."""
        entry = self._entries.get(url)
        if entry is None:
            entry = self._entries.setdefault(url, _JWKSEntry(lock=anyio.Lock()))
        async with entry.lock:
            now = self._now()
            fresh = entry.keys is not None and now - entry.fetched_at < self._ttl
            if fresh and entry.keys is not None and kid in entry.keys:
                return entry.keys[kid]
            recently_tried = now - entry.attempted_at < self._min_refetch
            if recently_tried:
                if fresh:
                    return None  # unknown kid, and the set was refreshed moments ago
                if entry.last_error is not None:
                    raise _FetchFailed(f"{entry.last_error}; not retried yet")
            entry.attempted_at = now
            try:
                keys = await self._fetch(url, iss)
            except _FetchFailed as exc:
                entry.last_error = str(exc)
                log.warning("JWK Set fetch failed for iss %s from %s: %s", iss, url, exc)
                if fresh:
                    return None  # keep the cached set; this kid is simply unknown
                entry.keys = None
                raise
            entry.keys, entry.fetched_at, entry.last_error = keys, now, None
            return keys.get(kid)

    async def _fetch(self, url: str, iss: str) -> Mapping[str, PublicJWK]:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport, timeout=self._timeout, follow_redirects=False
            )
        body = bytearray()
        try:
            async with self._client.stream(
                "GET", url, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise _FetchFailed(f"HTTP {response.status_code}")
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise _FetchFailed(f"JWK Set larger than {MAX_JWKS_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise _FetchFailed(f"{type(exc).__name__}") from None
        try:
            document = json.loads(bytes(body))
            keys, problems = parse_jwk_set(document)
        except ValueError:
            raise _FetchFailed("the response is not a JWK Set") from None
        if problems:
            log.info("JWK Set of iss %s: skipped unusable keys: %s", iss, "; ".join(problems))
        log.info("JWK Set of iss %s fetched from %s: %d key(s)", iss, url, len(keys))
        return keys
