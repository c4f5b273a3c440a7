"""The thin HTTP layer: raw bytes in, service call, JSON out; errors become OperationOutcomes.

Routes read the raw body (bounded, streamed) instead of letting FastAPI parse it into models:
the prefetch can be megabytes and is parsed once, with orjson, by the service.

What every request meets here, in order: the correlation scope (`_RequestScope`: every log
line of the request, its refusal line included, carries the hookInstance once the service
has read it; an unexpected error becomes a 500 OperationOutcome inside that scope); the
route, matched with or without a trailing slash, never redirected (a redirect would be
answered before authentication, with a Location built from the caller's Host header);
authentication against the audience(s) built from CDS_PUBLIC_BASE_URL and the path, never
from Host or X-Forwarded-* headers; then the body, read by `read_body` under a byte limit,
an overall time limit and an idle limit (server.py bounds the request head and the
connection before any of this runs).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import AuthError, CDSError, PayloadTooLarge, RequestError, RequestTimeout
from .logs import correlation_scope
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


async def read_body(
    request: Request,
    limit: int,
    *,
    timeout: float = 30.0,
    idle_timeout: float = 10.0,
) -> bytes:
    """The request body, refused with 413 once it passes `limit` bytes (never buffered whole),
    and with 408 when it is not complete within `timeout` seconds or pauses for more than
    `idle_timeout` seconds (a client trickling its body holds a connection and memory)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the {limit}-byte limit")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    chunks: list[bytes] = []
    size = 0
    stream = request.stream().__aiter__()
    while True:
        remaining = deadline - loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(min(idle_timeout, remaining)):
                chunk = await anext(stream)
        except StopAsyncIteration:
            break
        except TimeoutError:
            whole = deadline - loop.time() <= 0
            raise RequestTimeout(
                f"the request body was not received within {timeout:g} s (CDS_BODY_TIMEOUT_SECONDS)"
                if whole
                else f"the request body paused for more than {idle_timeout:g} s "
                "(CDS_BODY_IDLE_TIMEOUT_SECONDS)"
            ) from None
        except ClientDisconnect:
            raise RequestError(
                "the client closed the connection before the body was complete"
            ) from None
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def audiences(request: Request, settings: Settings) -> tuple[str, ...]:
    """The URLs this request's endpoint is known by: each configured public base URL plus the
    path. Only configuration and the request path are used, never Host or X-Forwarded-*."""
    path = request.scope["path"]  # uvicorn puts any root_path in front of it already
    return tuple(base.rstrip("/") + path for base in settings.public_base_url)


class _RequestScope:
    """Outermost middleware: one correlation scope per request, and unexpected errors turned
    into a 500 OperationOutcome inside it (so its log line carries the hookInstance too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with correlation_scope():
            try:
                await self.app(scope, receive, tracking_send)
            except Exception as exc:
                log.error("unexpected error", extra={"error": type(exc).__name__})
                if started:
                    raise
                response = _outcome_response(
                    500, operation_outcome("exception", "internal error; see the service log")
                )
                await response(scope, receive, send)


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
        redirect_slashes=False,
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

    app.add_middleware(_RequestScope)  # added last: outermost of our middleware

    @app.exception_handler(CDSError)
    async def _cds_error(_: Request, exc: CDSError) -> Response:
        if exc.status >= 500:
            log.error("request failed", extra={"error": type(exc).__name__, "status": exc.status})
        else:
            log.info("request refused", extra={"error": type(exc).__name__, "status": exc.status})
        headers: dict[str, str] = {}
        if isinstance(exc, AuthError):
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, PayloadTooLarge | RequestTimeout):
            headers["Connection"] = "close"  # the rest of the body is not read
        return _outcome_response(
            exc.status, operation_outcome(exc.issue_code, exc.message, exc.details), headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_ISSUE.get(exc.status_code, "processing")
        return _outcome_response(exc.status_code, operation_outcome(code, str(exc.detail)))

    async def authenticate(request: Request) -> Any:
        return await svc.authenticate(
            request.headers.get("authorization"), lambda: audiences(request, settings)
        )

    async def body_of(request: Request, limit: int = settings.max_body_bytes) -> bytes:
        return await read_body(
            request,
            limit,
            timeout=settings.body_timeout_seconds,
            idle_timeout=settings.body_idle_timeout_seconds,
        )

    # Plain Starlette routes: these endpoints read raw bytes, so FastAPI's parameter
    # resolution would only add per-request cost (measured by bench/).
    async def discovery(request: Request) -> Response:
        await authenticate(request)
        return JSONBytes(svc.discovery())

    async def call_service(request: Request) -> Response:
        caller = await authenticate(request)
        body = await body_of(request)
        return JSONBytes(await svc.handle(request.path_params["service_id"], body, caller))

    async def feedback(request: Request) -> Response:
        await authenticate(request)
        body = await body_of(
            request, min(settings.feedback_max_body_bytes, settings.max_body_bytes)
        )
        return JSONBytes(await svc.feedback(request.path_params["service_id"], body))

    async def health(_: Request) -> Response:
        return JSONBytes({"status": "ok", "rules": len(svc.ruleset.rules)})

    routes: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = [
        ("/cds-services", discovery, "GET"),
        ("/cds-services/{service_id}", call_service, "POST"),
        ("/cds-services/{service_id}/feedback", feedback, "POST"),
        ("/healthz", health, "GET"),
    ]
    for path, endpoint, method in routes:
        # A trailing slash is the same route (answered, authenticated), never a redirect.
        for variant in (path, path + "/"):
            app.router.add_route(variant, endpoint, methods=[method])

    return app
