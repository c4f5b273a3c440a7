"""The thin HTTP layer: raw bytes in, service call, JSON out; errors become OperationOutcomes.

Routes read the raw body (bounded, streamed) instead of letting FastAPI parse it into models:
the prefetch can be megabytes and is parsed once, with orjson, by the service.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from .errors import AuthError, CDSError, PayloadTooLarge
from .service import CDSService
from .settings import Settings

log = logging.getLogger("cds_service.api")

_HTTP_ISSUE = {404: "not-found", 405: "not-supported", 400: "invalid"}


def operation_outcome(
    code: str, message: str, details: tuple[str, ...] = (), severity: str = "error"
) -> dict[str, Any]:
    issues = [{"severity": severity, "code": code, "diagnostics": message}]
    issues += [{"severity": severity, "code": code, "diagnostics": d} for d in details]
    return {"resourceType": "OperationOutcome", "issue": issues}


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _outcome_response(
    status: int, outcome: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(outcome),
        status_code=status,
        media_type="application/fhir+json",
        headers=headers,
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes `limit` bytes (never buffered whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _audience(request: Request, settings: Settings) -> str:
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/") + request.url.path
    return str(request.url.replace(query=""))


def create_app(settings: Settings | None = None, service: CDSService | None = None) -> FastAPI:
    """Build the app; loads the rule set now, so a bad rule set stops start-up with the reason."""
    settings = settings or Settings()
    svc = service or CDSService.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gc.collect()
        gc.freeze()  # start-up objects leave the GC's view: fewer, shorter pauses (p99 tail)
        # A request allocates ~10^5 acyclic objects (parsed JSON); the default threshold (700)
        # runs young collections hundreds of times per large request for nothing.
        gc.set_threshold(50_000, 20, 100)
        yield
        await svc.aclose()

    app = FastAPI(
        title="Ph+ ALL CDS Hooks service",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = svc
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            allow_private_network=settings.cors_allow_private_network,
            max_age=600,
        )

    @app.exception_handler(CDSError)
    async def _cds_error(_: Request, exc: CDSError) -> Response:
        if exc.status >= 500:
            log.error("request failed", extra={"error": type(exc).__name__, "status": exc.status})
        else:
            log.info("request refused", extra={"error": type(exc).__name__, "status": exc.status})
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        return _outcome_response(
            exc.status, operation_outcome(exc.issue_code, exc.message, exc.details), headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_ISSUE.get(exc.status_code, "processing")
        return _outcome_response(exc.status_code, operation_outcome(code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.error("unexpected error", extra={"error": type(exc).__name__})
        return _outcome_response(
            500, operation_outcome("exception", "internal error; see the service log")
        )

    # Plain Starlette routes: these endpoints read raw bytes, so FastAPI's parameter
    # resolution would only add per-request cost (measured by bench/).
    async def discovery(request: Request) -> Response:
        await svc.authenticate(request.headers.get("authorization"), _audience(request, settings))
        return JSONBytes(svc.discovery())

    async def call_service(request: Request) -> Response:
        await svc.authenticate(request.headers.get("authorization"), _audience(request, settings))
        body = await read_body(request, settings.max_body_bytes)
        return JSONBytes(await svc.handle(request.path_params["service_id"], body))

    async def feedback(request: Request) -> Response:
        await svc.authenticate(request.headers.get("authorization"), _audience(request, settings))
        body = await read_body(request, settings.max_body_bytes)
        return JSONBytes(svc.feedback(request.path_params["service_id"], body))

    async def health(_: Request) -> Response:
        return JSONBytes({"status": "ok", "rules": len(svc.ruleset.rules)})

    app.router.add_route("/cds-services", discovery, methods=["GET"])
    app.router.add_route("/cds-services/{service_id}", call_service, methods=["POST"])
    app.router.add_route("/cds-services/{service_id}/feedback", feedback, methods=["POST"])
    app.router.add_route("/healthz", health, methods=["GET"])

    return app
