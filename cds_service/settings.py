"""Service settings, read from CDS_* environment variables (documented in README.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

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

    public_base_url: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated base URL(s) clients call us at; the JWT aud must be one of them plus
    the path invoked. Required with auth on (`cds-service serve` on a loopback address
    defaults it to that address); never derived from request headers."""

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

    fhir_servers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """With auth off: comma-separated allow-list of fhirServer base URLs (with auth on, the
    list is per client, in the trusted-clients file). Without a list, only public addresses
    are contacted (see egress.py)."""

    allow_loopback_fhir: bool = False
    """Test setting: without an allow-list, also contact a fhirServer on a loopback address."""

    fhir_max_response_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """Largest body of one FHIR response, counted after decompression, read while streaming."""

    fhir_max_total_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    """All FHIR response bodies of one hook call together (after decompression)."""

    feedback_max_items: int = Field(default=100, gt=0)
    """Most feedback items in one feedback request; more is refused with 413."""

    feedback_max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    """Largest feedback request body (100 items with comments fit in a few hundred KB); more
    is refused with 413 while streaming, before anything is parsed."""

    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    """Largest request head (request line and headers); more is refused with 431."""

    max_headers: int = Field(default=100, ge=8)
    """Most request header fields; more is refused with 431."""

    header_timeout_seconds: float = Field(default=10.0, gt=0)
    """Time a connection has to send a complete request head (from connect, or from the end of
    the previous response); then it is closed."""

    body_timeout_seconds: float = Field(default=30.0, gt=0)
    """Time a request has to send its whole body; then 408 and the connection is closed."""

    body_idle_timeout_seconds: float = Field(default=10.0, gt=0)
    """Longest pause between two pieces of a request body; then 408."""

    max_connections: int = Field(default=256, gt=0)
    """Open connections per worker; at the limit the oldest idle connection is closed to admit
    a new one, and a new connection is refused when none is idle."""

    keepalive_timeout_seconds: int = Field(default=5, gt=0)
    """Idle time after a response before a keep-alive connection is closed."""

    shutdown_timeout_seconds: int = Field(default=10, gt=0)
    """On SIGTERM, time given to requests in flight before they are cancelled."""

    log_level: str = "INFO"

    @field_validator("cors_origins", "public_base_url", "fhir_servers", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("public_base_url", "fhir_servers")
    @classmethod
    def _base_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            problem = base_url_problem(url)
            if problem is not None:
                raise ValueError(f"{url!r}: {problem}")
        return value


def base_url_problem(url: str) -> str | None:
    """Why `url` is not a usable absolute http(s) base URL, or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute http(s) URL, e.g. https://cds.example.org"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if parts.query or parts.fragment:
        return "must not carry a query or a #fragment"
    return None


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (used by tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
