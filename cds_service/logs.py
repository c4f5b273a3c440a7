"""Structured JSON logging with the hookInstance as correlation id; never bodies or tokens.

Every line is bounded: the message and each string field are cut at a fixed length, lists and
mappings at a fixed number of items and nesting levels, so no value from outside (a 4 MB
hookInstance, a long header echoed by the HTTP server) can make a log line large.

The correlation id lives in a context variable. Its scope is one HTTP request: the API layer
opens it (`correlation_scope`) around everything that runs for the request, error handlers
included, and the service fills it (`set_correlation_id`) as soon as it has read the
hookInstance, so every later line of that request, refusals included, carries it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

MAX_MESSAGE_CHARS = 1024
"""The message of a line (after %-formatting) is cut here."""

MAX_FIELD_CHARS = 256
"""Any one string value (a field, a list item, a key) is cut here."""

MAX_ITEMS = 64
"""Lists and mappings keep this many items; the rest are counted, not written."""

MAX_DEPTH = 4
"""Nesting kept inside one field; deeper values are written as a short text."""

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def truncate(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """`text` cut to at most about `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text)} chars]"


def bounded(value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of `value` with every string, list and mapping bounded."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return truncate(value)
    if depth >= MAX_DEPTH:
        return truncate(repr(value), 64)
    if isinstance(value, Mapping):
        out = {
            truncate(str(k)): bounded(v, depth + 1)
            for k, v in _first(iter(value.items()), MAX_ITEMS)
        }
        if len(value) > MAX_ITEMS:
            out["..."] = f"{len(value) - MAX_ITEMS} more"
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = [bounded(v, depth + 1) for v in _first(iter(value), MAX_ITEMS)]
        if len(value) > MAX_ITEMS:
            items.append(f"...{len(value) - MAX_ITEMS} more")
        return items
    return truncate(str(value))


def _first(items: Iterator[Any], n: int) -> Iterator[Any]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item


def set_correlation_id(value: str | None) -> None:
    """Tag the rest of the current request's log lines with `value` (the hookInstance)."""
    correlation_id.set(value)


@contextmanager
def correlation_scope() -> Iterator[None]:
    """One request's correlation scope: starts empty, restored on exit."""
    token = correlation_id.set(None)
    try:
        yield
    finally:
        correlation_id.reset(token)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, hookInstance, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": truncate(record.getMessage(), MAX_MESSAGE_CHARS),
        }
        cid = correlation_id.get()
        if cid:
            out["hookInstance"] = truncate(cid)
        extra = 0
        for key, value in record.__dict__.items():
            if key in _RESERVED or key.startswith("_") or key in out:
                continue
            extra += 1
            if extra > MAX_ITEMS:
                out["..."] = "more fields left out"
                break
            out[truncate(key, 64)] = bounded(value)
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Route the service's and uvicorn's loggers to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger("cds_service")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.propagate = False
    # Access logs carry query strings; ours carry none, but keep them off: we log our own line.
    logging.getLogger("uvicorn.access").disabled = True
