"""Build the service and an in-process HTTP client for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cds_service.api import create_app
from cds_service.settings import Settings


def make_settings(tmp_path: Path, **over: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "auth": "off"}
    values.update(over)
    return Settings(**values)


def make_client(tmp_path: Path, **over: Any) -> TestClient:
    app = create_app(make_settings(tmp_path, **over))
    return TestClient(app, base_url="http://testserver", raise_server_exceptions=True)


def assert_operation_outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and all(i["diagnostics"] for i in body["issue"])
    return body


def assert_no_null_or_empty(value: Any, path: str = "$") -> None:
    """CDS Hooks req 3: no null or empty element, except the top-level cards array."""
    assert value is not None, f"{path} is null"
    if isinstance(value, str):
        assert value != "", f"{path} is an empty string"
    elif isinstance(value, list):
        assert value or path == "$.cards", f"{path} is an empty array"
        for i, v in enumerate(value):
            assert_no_null_or_empty(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        assert value or path != "$", f"{path} is an empty object"
        for k, v in value.items():
            assert_no_null_or_empty(v, f"{path}.{k}")
