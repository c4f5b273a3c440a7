"""FHIRClient: the small async FHIR read/search client that fills missing prefetch keys.

It speaks to one FHIR server (the request's `fhirServer`) with one bearer token (the request's
`fhirAuthorization.access_token`) and keeps that token there:

- every URL it requests, the first query and every Bundle `next` link, must be on the base
  URL's origin (scheme, host, port) and under its path; a `next` link elsewhere raises
  FHIRClientError before any request is made, so the token never leaves for another host;
- redirects are never followed (httpx `follow_redirects=False`): a 3xx answer is an error.
  A FHIR API has no reason to redirect a read or a search, and following one, even to the same
  origin, would add a path by which a token could be steered;
- a plain-http base URL is refused unless `allow_http=True` (the `allow_http_fhir` setting,
  for tests on 127.0.0.1): the token would travel unencrypted;
- the base URL must pass the request's `EgressPolicy` (egress.py: an allow-list, or public
  addresses only, checked again per resolved address at connect time) before the client is
  even built, so a refused server is never contacted;
- a query or `next` link with a "." or ".." path segment is refused (it would turn a read of
  one resource into a search of all, or a GET of the base).

Every byte read is bounded: a response body may not pass `max_response_bytes` and all bodies
read by one client (one hook request) may not pass `max_total_bytes`, both counted *after*
decompression while streaming: the body is read as raw chunks and inflated here in bounded
steps (gzip and deflate; any other Content-Encoding is refused), so neither a huge body nor a
small gzip that inflates to gigabytes is ever held. The whole exchange (connect, headers,
body) is bounded by `call_timeout`.

Every failure (timeout, unreachable or refused server, 401/403, 3xx, 4xx/5xx, a body over a
bound, not JSON or not a FHIR resource, a `next` chain that loops or runs past `max_pages`)
raises FHIRClientError naming the query, never the token.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import zlib
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote

import httpx
import orjson

from cds_service.egress import EgressPolicy, EgressRefused, guarded_transport
from cds_service.errors import FHIRClientError
from cds_service.logs import truncate

__all__ = ["FHIR_JSON", "FHIRClient", "FHIRClientError"]

FHIR_JSON = "application/fhir+json"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 6750 b64token: what may stand after "Bearer " in an Authorization header.
_ABSOLUTE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One certificate-verifying TLS context per process.

    httpx.AsyncClient() builds a fresh context and loads the CA bundle each time: ~25 ms on
    this machine, once per hook call that has to fetch (bench/README.md, fetch path).
    """
    return httpx.create_ssl_context(trust_env=False)  # what AsyncClient() would build


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme))


class FHIRClient:
    """Reads and searches on one FHIR server, presenting one bearer token (or none).

    `max_pages` is how many Bundle `next` links one search may follow (so a search reads at
    most `max_pages + 1` pages); a longer chain is an error, not a silent truncation.
    Use as `async with FHIRClient(...) as client:`, or call `aclose()`.
    """

    def __init__(
        self,
        base_url: str,
        access_token: str | None,
        *,
        call_timeout: float,
        max_pages: int,
        allow_http: bool = False,
        egress: EgressPolicy | None = None,
        max_response_bytes: int = 8 * 1024 * 1024,
        max_total_bytes: int = 16 * 1024 * 1024,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        try:
            base = httpx.URL(base_url.rstrip("/"))
        except (httpx.InvalidURL, TypeError) as exc:
            raise FHIRClientError("fhirServer is not a valid URL") from exc
        if base.scheme not in _DEFAULT_PORTS or not base.host:
            raise FHIRClientError("fhirServer must be an absolute http(s) URL")
        if base.scheme == "http" and not allow_http:
            raise FHIRClientError(
                "fhirServer uses plain http; refusing to send FHIR requests without TLS "
                "(CDS_ALLOW_HTTP_FHIR=true allows it for local testing)"
            )
        if base.query or base.fragment or base.userinfo:
            raise FHIRClientError("fhirServer must not carry a query, fragment or credentials")
        if access_token is not None and not _BEARER_TOKEN.fullmatch(access_token):
            raise FHIRClientError("fhirAuthorization.access_token is not a valid bearer token")
        if max_pages < 0:
            raise ValueError("max_pages must be >= 0")
        policy = egress or EgressPolicy(None)
        refusal = policy.refusal(base_url)
        if refusal is not None:
            raise FHIRClientError(refusal)
        self.base_url = base
        self._base_path = base.path.rstrip("/")
        self._token = access_token
        self._timeout = call_timeout
        self._max_pages = max_pages
        self._max_response = max_response_bytes
        self._max_total = max_total_bytes
        self.bytes_read = 0
        """Body bytes (after decompression) read so far, over all calls of this client."""
        if transport is None:
            if policy.checks_addresses:
                transport = guarded_transport(_ssl_context(), allow_loopback=policy.allow_loopback)
            else:
                transport = httpx.AsyncHTTPTransport(verify=_ssl_context(), trust_env=False)
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(call_timeout),
            follow_redirects=False,
            trust_env=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def url_for(self, path_or_query: str) -> httpx.URL:
        """The absolute URL of a relative query (`Observation?patient=1`), or of an absolute one
        after checking that it lies under the base URL; FHIRClientError otherwise."""
        absolute = _ABSOLUTE_URL.match(path_or_query) is not None
        raw_path = path_or_query.partition("?")[0].partition("#")[0]
        if any(unquote(part) in (".", "..") for part in raw_path.split("/")):
            raise FHIRClientError(
                f"refusing to request {truncate(path_or_query, 120)!r}: a '.' or '..' path "
                "segment would "
                "change which resource is read"
            )
        try:
            url = httpx.URL(
                path_or_query if absolute else f"{self.base_url}/{path_or_query.lstrip('/')}"
            )
        except httpx.InvalidURL as exc:
            raise FHIRClientError(
                f"invalid FHIR URL in query {truncate(path_or_query, 120)!r}"
            ) from exc
        path = url.path.rstrip("/")
        under_base = path == self._base_path or path.startswith(f"{self._base_path}/")
        dot_segment = any(part in (".", "..") for part in path.split("/"))
        if _origin(url) != _origin(self.base_url) or not under_base or dot_segment or url.userinfo:
            raise FHIRClientError(
                f"refusing to request {truncate(path_or_query, 120)!r}: it is not under the "
                "fhirServer URL, "
                "and the access token is only ever sent there"
            )
        return url

    async def get(self, path_or_query: str) -> dict[str, Any]:
        """GET one FHIR resource (a read, or one page of a search) as a dict."""
        return await self._get(self.url_for(path_or_query), path_or_query)

    async def search_all(self, query: str) -> list[dict[str, Any]]:
        """Run a search and return the resources of every page (following `next` links)."""
        bundle = await self.fetch(query)
        if bundle.get("resourceType") != "Bundle":
            raise FHIRClientError(f"FHIR search {query!r} did not return a Bundle")
        return [
            e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)
        ]

    async def fetch(self, query: str) -> dict[str, Any]:
        """GET `query`; a searchset Bundle is returned whole: one Bundle holding the entries of
        every page, `total` kept, links dropped. Any other resource is returned as read."""
        first = await self.get(query)
        if first.get("resourceType") != "Bundle" or first.get("type") != "searchset":
            return first
        entries = list(_entries(first, query))
        seen = {str(self.url_for(query))}
        page = first
        followed = 0
        while (next_url := _next_link(page, query)) is not None:
            url = self.url_for(next_url)
            if str(url) in seen:
                raise FHIRClientError(f"FHIR search {query!r}: Bundle next links loop")
            if followed >= self._max_pages:
                raise FHIRClientError(
                    f"FHIR search {query!r} has more than {self._max_pages + 1} pages"
                )
            seen.add(str(url))
            followed += 1
            page = await self._get(url, query)
            if page.get("resourceType") != "Bundle":
                raise FHIRClientError(f"FHIR search {query!r}: a next page is not a Bundle")
            entries.extend(_entries(page, query))
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if isinstance(first.get("total"), int):
            bundle["total"] = first["total"]
        if entries:
            bundle["entry"] = entries
        return bundle

    async def _get(self, url: httpx.URL, query: str) -> dict[str, Any]:
        headers = {"Accept": FHIR_JSON, "Accept-Encoding": "gzip, deflate"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._http.stream("GET", url, headers=headers) as response,
            ):
                _check_status(response.status_code, query)
                body = await self._read_body(response, query)
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise FHIRClientError(
                f"FHIR request {query!r} timed out after {self._timeout:g}s"
            ) from exc
        except httpx.HTTPError as exc:
            if isinstance(exc.__cause__, EgressRefused):
                raise FHIRClientError(
                    f"{exc.__cause__}; it was not contacted and the access token was not used"
                ) from exc
            raise FHIRClientError(
                f"FHIR request {query!r} failed: {type(exc).__name__} (server unreachable?)"
            ) from exc
        return _parse(body, query)

    async def _read_body(self, response: httpx.Response, query: str) -> bytes:
        """The decoded body, refused as soon as it passes the per-call or per-request bound."""
        decoder = _Decoder.for_encoding(response.headers.get("content-encoding"), query)
        limit = self._max_response
        declared = response.headers.get("content-length")
        if decoder.identity and declared is not None and declared.isdigit():
            if int(declared) > limit:
                raise self._too_large(query)
            if self.bytes_read + int(declared) > self._max_total:
                raise self._request_too_large(query)
        chunks: list[bytes] = []
        size = 0
        async for raw in response.aiter_raw():
            for piece in decoder.feed(raw, limit - size):
                size += len(piece)
                self.bytes_read += len(piece)
                if size > limit:
                    raise self._too_large(query)
                if self.bytes_read > self._max_total:
                    raise self._request_too_large(query)
                chunks.append(piece)
        decoder.finish(query)
        return b"".join(chunks)

    def _too_large(self, query: str) -> FHIRClientError:
        return FHIRClientError(
            f"FHIR response to {query!r} is larger than {self._max_response} bytes "
            "(CDS_FHIR_MAX_RESPONSE_BYTES); it was not read further"
        )

    def _request_too_large(self, query: str) -> FHIRClientError:
        return FHIRClientError(
            f"FHIR responses of this request passed {self._max_total} bytes in all "
            f"(CDS_FHIR_MAX_TOTAL_BYTES) while reading {query!r}"
        )


class _Decoder:
    """Content-Encoding decoding in bounded steps: never more output than asked for at once."""

    def __init__(self, inflater: Any | None, *, raw_fallback: bool = False) -> None:
        self._z = inflater
        self._raw_fallback = raw_fallback
        self._started = False

    @property
    def identity(self) -> bool:
        return self._z is None

    @classmethod
    def for_encoding(cls, header: str | None, query: str) -> _Decoder:
        codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if not codings:
            return cls(None)
        if len(codings) == 1 and codings[0] in ("gzip", "x-gzip"):
            return cls(zlib.decompressobj(16 + zlib.MAX_WBITS))
        if len(codings) == 1 and codings[0] == "deflate":
            return cls(zlib.decompressobj(zlib.MAX_WBITS), raw_fallback=True)
        raise FHIRClientError(
            f"FHIR server answered {query!r} with Content-Encoding {', '.join(codings)!r}; "
            "only gzip and deflate are accepted"
        )

    def feed(self, data: bytes, room: int) -> list[bytes]:
        """Decoded pieces of `data`; stops once more than `room` bytes have come out (the
        caller then refuses the body), so one step never inflates past the bound."""
        if self._z is None:
            return [data] if data else []
        pieces: list[bytes] = []
        try:
            while data:
                if not self._started and self._raw_fallback:
                    data = self._first_deflate_chunk(data)
                self._started = True
                out = self._z.decompress(data, max(room, 0) + 1)
                if out:
                    pieces.append(out)
                    room -= len(out)
                if room < 0 or self._z.eof:
                    break
                data = self._z.unconsumed_tail
        except zlib.error as exc:
            raise FHIRClientError("FHIR server sent a body that does not decompress") from exc
        return pieces

    def _first_deflate_chunk(self, data: bytes) -> bytes:
        zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        if not zlib_header:
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send
        return data

    def finish(self, query: str) -> None:
        if self._z is not None and self._started and not self._z.eof:
            raise FHIRClientError(f"FHIR server sent a truncated compressed body for {query!r}")


def _check_status(status: int, query: str) -> None:
    if status in (401, 403):
        raise FHIRClientError(f"FHIR server refused the access token for {query!r} (HTTP {status})")
    if 300 <= status < 400:
        raise FHIRClientError(
            f"FHIR server redirected {query!r} (HTTP {status}); redirects are not followed"
        )
    if status != 200:
        raise FHIRClientError(f"FHIR server answered HTTP {status} to {query!r}")


def _parse(content: bytes, query: str) -> dict[str, Any]:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise FHIRClientError(f"FHIR server sent a non-JSON body for {query!r}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise FHIRClientError(f"FHIR server sent something that is not a resource for {query!r}")
    return body


def _entries(bundle: dict[str, Any], query: str) -> list[dict[str, Any]]:
    entries = bundle.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise FHIRClientError(f"FHIR search {query!r} returned a malformed Bundle.entry")
    return entries


def _next_link(bundle: dict[str, Any], query: str) -> str | None:
    links = bundle.get("link", [])
    if not isinstance(links, list):
        raise FHIRClientError(f"FHIR search {query!r} returned a malformed Bundle.link")
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if not isinstance(url, str) or not url:
                raise FHIRClientError(f"FHIR search {query!r} returned an empty next link")
            return url
    return None
