"""A small scripted CDS client (the EHR's side of a call), as `cds-service demo` drives it.

It does what the CDS Hooks sandbox does in the browser: reads the discovery document, fills
each service's prefetch templates for the patient and runs them against the FHIR server
(following `next` links), then POSTs the hook request with a freshly signed client JWT
(ES384, `kid` in the header, `aud` = the URL called, a new `jti` every time) and `fhirServer`
so the service could fetch a key it lacks. The signing key is made per run and never leaves
the process; only its public JWK goes into the service's trusted-clients file.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

PATIENT_TOKEN = "{{context.patientId}}"
USER_TOKEN = "{{context.userId}}"
MAX_PAGES = 20
TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class ClientKey:
    """An ES384 signing key made for one run, and the identity it signs as."""

    iss: str
    kid: str
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, iss: str) -> ClientKey:
        return cls(iss, f"run-{uuid.uuid4().hex[:12]}", ec.generate_private_key(ec.SECP384R1()))

    def trusted_entry(self, name: str) -> dict[str, Any]:
        """This client's entry for a trusted-clients file (the public key only)."""
        public = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk = {**public, "kid": self.kid, "alg": "ES384", "use": "sig"}
        return {"iss": self.iss, "name": name, "jwks": {"keys": [jwk]}}

    def bearer(self, aud: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.iss,
            "aud": aud,
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
        }
        token = jwt.encode(
            claims, self.private_key, algorithm="ES384", headers={"kid": self.kid, "typ": "JWT"}
        )
        return f"Bearer {token}"


@dataclass(frozen=True)
class HookResult:
    status: int
    cards: list[dict[str, Any]]
    error: str | None = None
    """The OperationOutcome text (or transport error) when the call did not answer 200."""


class ScriptedClient:
    """Calls one CDS service base URL as a trusted client, with prefetch from a FHIR server."""

    def __init__(self, service_base: str, fhir_base: str, key: ClientKey) -> None:
        self.service_base = service_base.rstrip("/")
        self.fhir_base = fhir_base.rstrip("/")
        self.key = key
        self._http = httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False)
        self._discovery: dict[str, Any] | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ScriptedClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- discovery ---------------------------------------------------------------------------

    @property
    def discovery_url(self) -> str:
        return f"{self.service_base}/cds-services"

    def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            r = self._http.get(
                self.discovery_url, headers={"Authorization": self.key.bearer(self.discovery_url)}
            )
            r.raise_for_status()
            self._discovery = r.json()
        return self._discovery

    def service_for(self, hook: str) -> dict[str, Any]:
        for service in self.discovery().get("services", []):
            if service.get("hook") == hook:
                return dict(service)
        raise LookupError(f"the discovery document offers no {hook} service")

    # -- prefetch ----------------------------------------------------------------------------

    def prefetch(self, templates: Mapping[str, str], context: Mapping[str, str]) -> dict[str, Any]:
        """Each template filled with the context and run against the FHIR server; a key whose
        query fails is left out (the service then fetches it, as the spec says)."""
        out: dict[str, Any] = {}
        for key, template in templates.items():
            query = template.replace(PATIENT_TOKEN, context["patientId"])
            query = query.replace(USER_TOKEN, context.get("userId", ""))
            if "{{" in query:
                continue
            value = self._fetch(query)
            if value is not None:
                out[key] = value
        return out

    def _fetch(self, query: str) -> dict[str, Any] | None:
        url: str | None = f"{self.fhir_base}/{query}"
        if "?" not in query:
            r = self._http.get(url or "", headers={"Accept": "application/fhir+json"})
            return r.json() if r.status_code == 200 else None
        entries: list[Any] = []
        total: Any = None
        for _ in range(MAX_PAGES):
            if url is None:
                break
            r = self._http.get(url, headers={"Accept": "application/fhir+json"})
            if r.status_code != 200:
                return None
            page = r.json()
            total = page.get("total", total)
            entries.extend(page.get("entry") or [])
            url = next(
                (
                    link.get("url")
                    for link in page.get("link", [])
                    if link.get("relation") == "next"
                ),
                None,
            )
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        if total is not None:
            bundle["total"] = total
        return bundle

    # -- hooks -------------------------------------------------------------------------------

    def call(self, hook: str, context: dict[str, Any]) -> HookResult:
        service = self.service_for(hook)
        url = f"{self.service_base}/cds-services/{service['id']}"
        body: dict[str, Any] = {
            "hookInstance": str(uuid.uuid4()),
            "hook": hook,
            "fhirServer": self.fhir_base,
            "context": context,
        }
        prefetch = self.prefetch(service.get("prefetch") or {}, context)
        if prefetch:
            body["prefetch"] = prefetch
        try:
            r = self._http.post(url, json=body, headers={"Authorization": self.key.bearer(url)})
        except httpx.HTTPError as exc:
            return HookResult(0, [], f"{type(exc).__name__}: {exc}")
        if r.status_code != 200:
            return HookResult(r.status_code, [], _outcome_text(r))
        cards = r.json().get("cards")
        return HookResult(200, list(cards) if isinstance(cards, list) else [])


def _outcome_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    issues = data.get("issue") if isinstance(data, dict) else None
    if isinstance(issues, list) and issues:
        return "; ".join(str(i.get("diagnostics", "")) for i in issues if isinstance(i, dict))
    return str(data)[:300]
