"""Service settings, read from CDS_* environment variables (documented in README.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "phall-cds"


class Settings(BaseSettings):
    """Every knob of the service. Defaults are the embedded, safe ones."""

    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore", frozen=True)

    data_dir: Path = Field(default_factory=_default_data_dir)
    """Directory holding the SQLite store (feedback, audit)."""

    rules_dir: Path | None = None
    """Rule set directory; default: the rules bundled with the package."""

    cards_dir: Path | None = None
    """Card template directory; default: the templates bundled with the package."""

    auth: Literal["on", "off"] = "on"
    """Verify the client JWT on every endpoint. 'off' is for local use only."""

    trusted_clients: Path | None = None
    """YAML/JSON file listing trusted clients (iss, jku allow-list, pre-shared JWKS)."""

    public_base_url: str | None = None
    """Base URL clients use to reach us (behind a proxy); JWT aud is checked against it."""

    jwt_max_age_seconds: int = 300
    """Oldest acceptable iat."""

    jwt_leeway_seconds: int = 30
    """Clock skew tolerated for exp/iat."""

    jwks_cache_seconds: int = 3600
    """How long a JWKS fetched from a jku is cached."""

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated browser origins allowed by CORS ('*' allows any)."""

    cors_allow_private_network: bool = False
    """Answer Private Network Access preflights: a page on a public origin (the CDS Hooks
    sandbox) may call this service on a loopback or private address."""

    max_body_bytes: int = 16 * 1024 * 1024
    """Largest accepted request body; larger is refused with 413 without buffering it."""

    fhir_call_timeout_seconds: float = 2.0
    """Timeout of one FHIR HTTP call made to fill a missing prefetch key."""

    prefetch_timeout_seconds: float = 4.0
    """Overall time box for all FHIR fetches of one request."""

    fhir_max_pages: int = 20
    """How many Bundle next links are followed per prefetch query."""

    allow_http_fhir: bool = False
    """Test setting: allow a plain-http fhirServer (tokens would travel unencrypted)."""

    log_level: str = "INFO"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (used by tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
