"""What this service knows about the public CDS Hooks sandbox (https://sandbox.cds-hooks.org).

* The *demo profile*: examples/sandbox/service.env (CDS_* settings: auth on, CORS for the
  sandbox origin, ...) and examples/sandbox/trusted-clients.yaml (the sandbox's iss, jku and
  its published public key). Both ship inside the wheel; `load_profile` reads them, so the
  files an integrator copies are the ones `cds-service demo` runs with.
* The launch URL the sandbox understands (`fhirServiceUrl`, `serviceDiscoveryURL`,
  `patientId`, `hook`, `screen`, `prescribedMedication`; the sandbox README, "Pre-configuration
  via URL parameters").
* The draft MedicationRequest its Rx View sends at order-select
  (src/reducers/medication-reducers.js, createFhirResource, for an R4 server), with the RxNorm
  codes and names its medication list (src/assets/medication-list.js) offers for the TKIs.
  Those codes are the sandbox's; this service does not match on them (no RxNorm product code
  is verified in our value sets), it recognises the drug by the name in the text.

Sources: github.com/cds-hooks/sandbox at commit 3b7e255 (2026-03-31).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml

from .errors import ConfigError
from .paths import bundled_dir

SANDBOX_URL = "https://sandbox.cds-hooks.org/"
SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
PROFILE_FOLDER = "sandbox"
ENV_FILE = "service.env"
TRUSTED_CLIENTS_FILE = "trusted-clients.yaml"
ORDER_ID = "request-123"
"""The id the sandbox gives its draft order (and so `context.selections`)."""
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

SANDBOX_MEDICATIONS: Mapping[str, tuple[str, str]] = {
    "imatinib": ("404589", "imatinib 400 MG Oral Tablet [Gleevec]"),
    "dasatinib": ("799830", "dasatinib 100 MG Oral Tablet [Sprycel]"),
    "nilotinib": ("1002300", "nilotinib 150 MG Oral Capsule [Tasigna]"),
    "bosutinib": ("1307635", "bosutinib 500 MG Oral Tablet [Bosulif]"),
    "ponatinib": ("1364362", "ponatinib 45 MG Oral Tablet [Iclusig]"),
}
"""TKI → (RxNorm code, name) as the sandbox's medication list has them. Asciminib is not in
that list: the sandbox cannot order it, so the demo orders it by name only."""

PUBLIC_KEY_WARNING = (
    "DEMO PROFILE: this service trusts the public CDS Hooks sandbox "
    f"({SANDBOX_ISS}). The sandbox's private signing key is PUBLISHED with its source code, "
    "so anyone can sign JWTs that pass as it. Demos on your own machine only: never use this "
    "profile with real patient data or on an address other than loopback."
)


@dataclass(frozen=True)
class Profile:
    """The demo profile as shipped: CDS_* settings and the trusted-clients document."""

    env: Mapping[str, str]
    trusted_clients: Mapping[str, Any]
    folder: Path

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.env.get("CDS_CORS_ORIGINS", "").split(",") if o)


def profile_dir() -> Path:
    return bundled_dir("examples") / PROFILE_FOLDER


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments ignored; no quoting, no expansion."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    out: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{path.name}:{number}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def load_profile(folder: Path | None = None) -> Profile:
    folder = folder or profile_dir()
    env = read_env_file(folder / ENV_FILE)
    try:
        document = yaml.safe_load((folder / TRUSTED_CLIENTS_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {folder / TRUSTED_CLIENTS_FILE}: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{folder / TRUSTED_CLIENTS_FILE} is not a trusted-clients document")
    return Profile(env=env, trusted_clients=document, folder=folder)


def origin_of(url: str) -> str:
    """The browser origin (scheme://host[:port]) of an absolute http(s) URL; ConfigError else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{url!r} is not an absolute http(s) URL of a CDS Hooks sandbox")
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}".lower()


def launch_url(
    *,
    sandbox_url: str = SANDBOX_URL,
    fhir_server: str,
    discovery_url: str,
    patient_id: str,
    hook: str = "patient-view",
    medication_code: str | None = None,
) -> str:
    """The sandbox URL that opens `patient_id` from `fhir_server` with our services loaded."""
    params = [
        ("fhirServiceUrl", fhir_server),
        ("serviceDiscoveryURL", discovery_url),
        ("patientId", patient_id),
    ]
    if hook == "order-select":
        params += [("hook", "order-select"), ("screen", "rx-view")]
        if medication_code is not None:
            params.append(("prescribedMedication", medication_code))
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params)
    return f"{sandbox_url.split('?', 1)[0]}?{query}"


def draft_order(ingredient: str, patient_id: str, today: dt.date) -> dict[str, Any]:
    """The draft MedicationRequest the sandbox's Rx View sends for `ingredient` (R4)."""
    concept: dict[str, Any]
    if ingredient in SANDBOX_MEDICATIONS:
        code, name = SANDBOX_MEDICATIONS[ingredient]
        concept = {"text": name, "coding": [{"display": name, "system": RXNORM, "code": code}]}
    else:
        concept = {"text": ingredient.replace("_", " ")}
    return {
        "resourceType": "MedicationRequest",
        "id": ORDER_ID,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": today.isoformat(),
        "medicationCodeableConcept": concept,
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": 1,
                            "system": "http://unitsofmeasure.org",
                            "code": "{pill}",
                        }
                    }
                ],
            }
        ],
    }
