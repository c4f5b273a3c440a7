"""The floor: the least any CDS service can do with a request — read it, parse it, answer.

A raw ASGI app that reads the whole body, parses it with orjson (the fastest JSON parser among
the project's dependencies) and answers `{"cards": []}`; no routing framework, no model
validation. It runs under exactly the uvicorn configuration `cds-service serve` uses (one
worker, default loop and HTTP implementation — uvloop and httptools when installed — access
log off, no log config), in its own process, so service and floor latencies compare like with
like. GET on any path answers `{"status": "ok"}` (readiness probe); a body that is not JSON
answers 400.

    python bench/floor.py --port 8099
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CARDS = b'{"cards":[]}'
HEALTH = b'{"status":"ok"}'
BAD = b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}'


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the body, parse it, answer no cards."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["method"] == "GET":
        await _answer(send, 200, HEALTH)
        return
    try:
        orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        await _answer(send, 400, BAD)
        return
    await _answer(send, 200, CARDS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the benchmark floor endpoint.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    import uvicorn

    # The same call as cds_service.cli.serve: uvicorn.run(app, host, port, log_config=None,
    # access_log=False) — defaults for loop, http and workers.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
