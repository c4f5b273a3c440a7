"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for timing servers, not for use.

Why not httpx: on this machine an httpx.AsyncClient POST costs ~0.8–1.2 ms of client time per
request (measured against the floor: 50 entries 1.22 ms with httpx vs 0.39 ms raw; 500 entries
4.05 vs 2.88 ms). Latency is timed at the client, so that cost lands on both sides of a
service / floor ratio and pulls it toward 1. This client writes a pre-built request (head plus
body parts, never re-encoded or copied) and reads the status line, headers and a
Content-Length or chunked body — nothing else: no redirects, no TLS, no compression, no
proxy. `run.py --client httpx` re-runs a suite with httpx for comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass


class HTTPClientError(Exception):
    """The connection failed or the server answered something this client cannot read."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


class RawConnection:
    """One keep-alive connection to host:port; reconnects after a failure."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=1 << 20
            )

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def head(self, method: str, path: str, length: int | None, extra: str = "") -> bytes:
        """The request line and headers; `extra` holds more header lines, each ending CRLF."""
        lines = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if length is not None:
            lines += f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        return (lines + extra + "\r\n").encode("latin-1")

    async def request(self, head: bytes, body: Sequence[bytes] = ()) -> Reply:
        """Send `head` then the body parts; return the reply. Raises HTTPClientError."""
        try:
            return await asyncio.wait_for(self._exchange(head, body), self.timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            await self.close()
            raise HTTPClientError(f"{type(exc).__name__}: {exc}") from None

    async def _exchange(self, head: bytes, body: Sequence[bytes]) -> Reply:
        await self.connect()
        assert self._reader is not None and self._writer is not None
        self._writer.write(head)
        for part in body:
            self._writer.write(part)
        await self._writer.drain()
        reader = self._reader
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("connection closed before the status line")
        status = int(status_line.split(b" ", 2)[1])
        length: int | None = None
        chunked = False
        close = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            data = await self._read_chunked(reader)
        elif length is not None:
            data = await reader.readexactly(length)
        else:
            data = await reader.read()
            close = True
        if close:
            await self.close()
        return Reply(status, data)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readline()).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
