"""Build the service and an in-process HTTP client for tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from cds_service.api import create_app
from cds_service.settings import Settings

TEST_BASE_URL = "http://testserver"
"""Where TestClient sends requests; configured as the public base URL (the JWT audience)."""


def make_settings(tmp_path: Path, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "auth": "off",
        "public_base_url": [TEST_BASE_URL],
    }
    values.update(over)
    return Settings(**values)


class TestClient:
    """A synchronous in-process client over httpx.ASGITransport (each call on a fresh loop).

    Starlette's own TestClient now warns about httpx; this keeps the tests on plain httpx.
    """

    __test__ = False

    def __init__(self, app: FastAPI, base_url: str = "http://testserver") -> None:
        self.app = app
        self.base_url = base_url

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as client:
            content = kwargs.get("content")
            if content is not None and not isinstance(content, bytes | str):
                chunks = list(content)

                async def stream() -> Any:
                    for chunk in chunks:
                        yield chunk

                kwargs["content"] = stream()
            return await client.request(method, url, **kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return asyncio.run(self._send(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


def make_client(tmp_path: Path, **over: Any) -> TestClient:
    return TestClient(create_app(make_settings(tmp_path, **over)))


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
