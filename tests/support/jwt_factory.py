"""Test helpers for CDS client JWTs: key pairs, JWK Sets, tokens (valid and crafted) and
trusted-clients files.

Typical use in an endpoint test::

    ehr = SigningClient("https://ehr.example.org", es384_keypair())
    path = write_trusted_clients(tmp_path, [ehr.trusted_entry()])
    headers = {"Authorization": ehr.bearer("http://testserver/cds-services")}

Tokens are assembled by hand (base64url header and payload, then the signature) so that a
test can put anything in the header, including an alg that does not match the key, `none`,
or an HMAC made with the client's public key as the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, get_default_algorithms


class _Omit(Enum):
    OMIT = "omit"


OMIT: Final = _Omit.OMIT
"""Use as a header or claim override value to leave that member out of the token."""

Overrides = Mapping[str, Any]

_EC_CURVES: Mapping[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}


@dataclass(frozen=True)
class KeyPair:
    """A client signing key: its private half signs, its public JWK goes in the JWK Set."""

    alg: str
    kid: str
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        public = self.private_key.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig", **extra}

    def private_jwk(self) -> dict[str, Any]:
        """The private JWK (only for tests proving that private keys are refused)."""
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            jwk = ECAlgorithm.to_jwk(self.private_key, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(self.private_key, as_dict=True)
        return {**jwk, "kid": self.kid}

    def jwks(self) -> dict[str, Any]:
        return jwk_set(self)

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def generate_keypair(alg: str = "ES384", kid: str | None = None, rsa_bits: int = 2048) -> KeyPair:
    """A fresh key pair for ES256/384/512 or RS*/PS* (RSA of `rsa_bits`)."""
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if alg in _EC_CURVES:
        private_key = ec.generate_private_key(_EC_CURVES[alg])
    elif alg[:2] in ("RS", "PS"):
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        raise ValueError(f"no key pair for alg {alg}")
    return KeyPair(
        alg=alg, kid=kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", private_key=private_key
    )


def es384_keypair(kid: str = "es384-key-1") -> KeyPair:
    return generate_keypair("ES384", kid)


def rs384_keypair(kid: str = "rs384-key-1") -> KeyPair:
    return generate_keypair("RS384", kid)


def jwk_set(*keypairs: KeyPair) -> dict[str, Any]:
    return {"keys": [kp.public_jwk() for kp in keypairs]}


def default_claims(iss: str, aud: str | list[str], now: float | None = None) -> dict[str, Any]:
    """The claims of a valid CDS Hooks client JWT, issued `now`, valid for 5 minutes."""
    issued = int(time.time() if now is None else now)
    return {
        "iss": iss,
        "aud": aud,
        "iat": issued,
        "exp": issued + 300,
        "jti": uuid.uuid4().hex,
    }


def _apply(base: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    result = dict(base)
    for name, value in overrides.items():
        if value is OMIT:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(obj: Mapping[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def encode_jws(header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes) -> str:
    return f"{_segment(header)}.{_segment(claims)}.{_b64(signature)}"


def signing_input(header: Mapping[str, Any], claims: Mapping[str, Any]) -> bytes:
    return f"{_segment(header)}.{_segment(claims)}".encode()


def mint_token(
    keypair: KeyPair,
    *,
    iss: str,
    aud: str | list[str],
    now: float | None = None,
    jku: str | None = None,
    claims: Overrides | None = None,
    header: Overrides | None = None,
    sign_with: str | None = None,
) -> str:
    """A JWT signed by `keypair`. `claims` / `header` override or (with OMIT) drop members;
    `sign_with` signs with another algorithm than the header's alg (default: keypair.alg)."""
    base_header: dict[str, Any] = {"alg": keypair.alg, "typ": "JWT", "kid": keypair.kid}
    if jku is not None:
        base_header["jku"] = jku
    final_header = _apply(base_header, header or {})
    final_claims = _apply(default_claims(iss, aud, now), claims or {})
    algorithm = get_default_algorithms()[sign_with or keypair.alg]
    signature = algorithm.sign(signing_input(final_header, final_claims), keypair.private_key)
    return encode_jws(final_header, final_claims, signature)


def mint_unsigned(
    *,
    iss: str,
    aud: str | list[str],
    kid: str = "any-kid",
    alg: str = "none",
    now: float | None = None,
    claims: Overrides | None = None,
) -> str:
    """An unsecured JWT (alg none, empty signature)."""
    final_header = {"alg": alg, "typ": "JWT", "kid": kid}
    return encode_jws(final_header, _apply(default_claims(iss, aud, now), claims or {}), b"")


def mint_hmac(
    secret: bytes,
    *,
    iss: str,
    aud: str | list[str],
    kid: str = "any-kid",
    alg: Literal["HS256", "HS384", "HS512"] = "HS256",
    now: float | None = None,
    claims: Overrides | None = None,
) -> str:
    """An HMAC-signed JWT; with `secret=keypair.public_pem()` it is the key-confusion attack."""
    final_header = {"alg": alg, "typ": "JWT", "kid": kid}
    final_claims = _apply(default_claims(iss, aud, now), claims or {})
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(secret, signing_input(final_header, final_claims), digest).digest()
    return encode_jws(final_header, final_claims, signature)


@dataclass(frozen=True)
class SigningClient:
    """A fake CDS client (EHR): an iss, a key pair and optionally the jku it advertises."""

    iss: str
    keypair: KeyPair = field(default_factory=es384_keypair)
    jku: str | None = None

    def token(
        self,
        aud: str | list[str],
        *,
        now: float | None = None,
        claims: Overrides | None = None,
        header: Overrides | None = None,
    ) -> str:
        return mint_token(
            self.keypair, iss=self.iss, aud=aud, now=now, jku=self.jku, claims=claims, header=header
        )

    def bearer(self, aud: str | list[str], **kwargs: Any) -> str:
        """The Authorization header value: 'Bearer <jwt>'."""
        return f"Bearer {self.token(aud, **kwargs)}"

    def trusted_entry(self, *, preshared: bool = True, **extra: Any) -> dict[str, Any]:
        """This client's entry for a trusted-clients file: pre-shared JWKS and/or its jku."""
        entry: dict[str, Any] = {"iss": self.iss}
        if self.jku is not None:
            entry["jku"] = [self.jku]
        if preshared:
            entry["jwks"] = self.keypair.jwks()
        entry.update(extra)
        return entry


def write_trusted_clients(
    directory: Path,
    entries: Iterable[Mapping[str, Any]],
    *,
    fmt: Literal["yaml", "json"] = "yaml",
    name: str = "trusted-clients",
) -> Path:
    """Write a trusted-clients file (for CDS_TRUSTED_CLIENTS) and return its path."""
    document = {"clients": [dict(e) for e in entries]}
    path = directory / f"{name}.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
