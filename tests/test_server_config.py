"""server.py helpers: the loopback default of the public base URL, uvicorn options, limits."""

from __future__ import annotations

import resource

import pytest

from cds_service.server import (
    GuardedHttpToolsProtocol,
    configure,
    connection_limit,
    loopback_base_urls,
)
from cds_service.settings import Settings


@pytest.mark.parametrize(
    ("host", "scheme", "expected"),
    [
        ("127.0.0.1", "http", ["http://127.0.0.1:8080", "http://localhost:8080"]),
        ("127.0.0.2", "https", ["https://127.0.0.2:8080", "https://localhost:8080"]),
        ("localhost", "http", ["http://localhost:8080", "http://127.0.0.1:8080"]),
        ("::1", "http", ["http://[::1]:8080", "http://localhost:8080"]),
    ],
)
def test_a_loopback_bind_gives_its_own_base_urls(host: str, scheme: str, expected: list[str]) -> None:
    assert loopback_base_urls(host, 8080, scheme) == expected


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "cds.example.org", "192.168.1.2"])
def test_any_other_bind_has_no_default(host: str) -> None:
    assert loopback_base_urls(host, 8080, "http") is None


def test_uvicorn_options_come_from_settings() -> None:
    settings = Settings(keepalive_timeout_seconds=3, shutdown_timeout_seconds=7, max_headers=50)
    options = configure(settings)
    assert options["http"] is GuardedHttpToolsProtocol
    assert options["timeout_keep_alive"] == 3 and options["timeout_graceful_shutdown"] == 7
    assert options["ws"] == "none"
    assert GuardedHttpToolsProtocol.limits is not None
    assert GuardedHttpToolsProtocol.limits.max_headers == 50


def test_the_connection_limit_fits_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"soft": 200, "hard": 300}

    def setrlimit(_: int, value: tuple[int, int]) -> None:
        if value[0] > limits["hard"]:
            raise ValueError("not allowed")
        limits["soft"] = value[0]

    monkeypatch.setattr(resource, "getrlimit", lambda _: (limits["soft"], limits["hard"]))
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert connection_limit(1000) == 300 - 64  # soft raised to the hard limit, then fitted
    assert limits["soft"] == 300
    assert connection_limit(100) == 100


def test_comma_separated_list_settings() -> None:
    settings = Settings(public_base_url=" https://a.example.org , https://b.example.org/x ",
                        fhir_servers="https://f.example.org/fhir")
    assert settings.public_base_url == ["https://a.example.org", "https://b.example.org/x"]
    assert settings.fhir_servers == ["https://f.example.org/fhir"]
