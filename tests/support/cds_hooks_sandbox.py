"""The public CDS Hooks sandbox as a CDS client: its iss, kid, jku and its PUBLISHED key pair.

The sandbox (github.com/cds-hooks/sandbox, commit 3b7e255) signs every call in the browser, so
its private key is public by design: keys/jwk-keypair.json holds the pair below, and
src/retrieve-data-helpers/jwt-generator.js builds the token that `sandbox_token` copies
(header alg ES384, typ JWT, kid, jku; claims iss, aud, exp = iat + 300, iat, jti). Tests use
it to prove that examples/sandbox/trusted-clients.yaml and `cds-service demo` accept exactly
what the real sandbox sends. Never trust this key outside a demo.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from jwt.algorithms import ECAlgorithm

from tests.support.jwt_factory import KeyPair, mint_token

ISS = "https://sandbox.cds-hooks.org"
ORIGIN = "https://sandbox.cds-hooks.org"
JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"

_PUBLISHED_KEY_PAIR: dict[str, str] = {
    "kty": "EC",
    "crv": "P-384",
    "x": "dw_JGR8nB2I6XveNxUOl2qk699ZPLM2nYI5STSdiEl9avAkrm3CkfYMbrrjr8laB",
    "y": "Sm3mLE-n1zYNla_aiE3cb3nZsL51RbC7ysw3q8aJLxGm-hx79RPMYpITDjp7kgzy",
    "d": "yOcYl9QzMKnBFUiPZKBijDV_lsEtn6oWFVOqtFyXbY_-V63WCBYYdxsLo9Pclr84",
}


def keypair() -> KeyPair:
    private = ECAlgorithm.from_jwk(_PUBLISHED_KEY_PAIR)
    return KeyPair(alg="ES384", kid=KID, private_key=private)  # type: ignore[arg-type]


def sandbox_token(aud: str, *, now: float | None = None, **claims: Any) -> str:
    """A JWT exactly as the sandbox's generateJWT(aud) makes it."""
    issued = round(time.time() if now is None else now)
    return mint_token(
        keypair(),
        iss=ISS,
        aud=aud,
        jku=JKU,
        claims={"iat": issued, "exp": issued + 300, "jti": str(uuid.uuid4()), **claims},
    )


def sandbox_bearer(aud: str, **kwargs: Any) -> str:
    return f"Bearer {sandbox_token(aud, **kwargs)}"
