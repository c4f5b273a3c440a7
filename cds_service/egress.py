"""Which FHIR servers the service may contact, and a connector that enforces it per address.

A hook request names its own `fhirServer`, and the service would send the EHR's bearer token
there. So the URL is bound to configuration:

- **With an allow-list** (per trusted client: `fhir_servers` in the trusted-clients file; with
  auth off: `CDS_FHIR_SERVERS`), the fhirServer must be one of the listed base URLs (scheme,
  host and port compared case-insensitively, default ports filled in, trailing slashes
  ignored). The deployer vouches for the listed hosts, private addresses included.
- **Without a list**, only public hosts are contacted: the host must be a dotted DNS name or a
  public IP literal; names that only make sense inside a network (`localhost`, single labels,
  `.internal`, `.local`, `.localhost`, `.home.arpa`, cloud metadata names) and numeric hosts
  in non-canonical forms (`2852039166`, `0x7f.1`) are refused; and every address the name
  resolves to is checked at connect time by `GuardedBackend`: loopback (unless
  `CDS_ALLOW_LOOPBACK_FHIR`, a test setting), link-local (169.254.0.0/16, fe80::/10, where
  cloud metadata lives), private, shared (100.64.0.0/10), unspecified, multicast and reserved
  addresses, and IPv6 forms that embed one of those (IPv4-mapped, 6to4, Teredo, NAT64), are
  refused. The connection is made to the address that was checked, never to a second lookup
  of the name (no DNS-rebinding window); TLS still verifies the certificate for the name.

Redirects are never followed (fhir_client.py), so a listed or public server cannot bounce
the token elsewhere. A refusal names the cause and is raised before any byte is sent.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx

__all__ = [
    "EgressPolicy",
    "EgressRefused",
    "GuardedBackend",
    "address_problem",
    "guarded_transport",
    "normalise_base_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}
_INTERNAL_SUFFIXES = (".internal", ".local", ".localhost", ".localdomain", ".home.arpa", ".lan")
_METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "kubernetes"}
)
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "192.0.0.192", "100.100.100.200", "fd00:ec2::254")
)
_IETF_PROTOCOL = ipaddress.ip_network("192.0.0.0/24")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# A host made only of numbers (decimal, octal, hex) and dots: inet_aton would read it as an IPv4
# address ("2852039166" is 169.254.169.254); only canonical dotted quads are taken as IPs.
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?", re.IGNORECASE)


class EgressRefused(httpcore.ConnectError):
    """A connection the policy forbids; raised before the socket is opened."""


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    for net in _NAT64:
        if ip in net:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why the service must not connect to `ip` without an allow-list, or None if public."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        problem = address_problem(inner, allow_loopback=allow_loopback)
        return None if problem is None else f"{problem} (embedded in {ip})"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if ip.is_unspecified:
        return "the unspecified address (it reaches this machine)"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _IETF_PROTOCOL:
        return "a reserved address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "a private or reserved address"
    return None


def normalise_base_url(url: str) -> str:
    """scheme://host:port/path with scheme and host lower-cased, the port always written and
    trailing slashes dropped: the form allow-list entries and fhirServer are compared in.
    ValueError when `url` is not an absolute http(s) URL."""
    parts = urlsplit(url.strip())
    host = parts.hostname
    if parts.scheme.lower() not in _DEFAULT_PORTS or not host:
        raise ValueError("not an absolute http(s) URL")
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS[scheme]
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown.rstrip('.')}:{port}{parts.path.rstrip('/')}"


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _host_problem(host: str, *, allow_loopback: bool) -> str | None:
    """Refusals decidable from the host text alone (no allow-list)."""
    name = host.lower().rstrip(".")
    shown = _shown(host)
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None:
        problem = address_problem(ip, allow_loopback=allow_loopback)
        return None if problem is None else f"{ip} is {problem}"
    if _NUMERIC_HOST.fullmatch(name):
        return f"{shown} is a numeric host that is not a dotted-quad IPv4 address"
    if name == "localhost" or name.endswith(".localhost"):
        return None if allow_loopback else f"{shown} is a loopback name"
    if name in _METADATA_NAMES:
        return f"{shown} is a cloud metadata host"
    if "." not in name:
        return f"{shown} is not a fully qualified domain name"
    if name.endswith(_INTERNAL_SUFFIXES):
        return f"{shown} is an internal name"
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """The FHIR servers one request may reach (see the module docstring)."""

    allowed: tuple[str, ...] | None
    """Normalised base URLs; None = no allow-list (public addresses only)."""
    allow_loopback: bool = False
    where: str = "CDS_FHIR_SERVERS"
    """Where the allow-list is configured, for messages."""

    @classmethod
    def from_list(
        cls, urls: Iterable[str] | None, *, allow_loopback: bool = False, where: str
    ) -> EgressPolicy:
        if urls is None:
            return cls(None, allow_loopback, where)
        return cls(tuple(normalise_base_url(u) for u in urls), allow_loopback, where)

    @property
    def checks_addresses(self) -> bool:
        """True when connections must go through `GuardedBackend` (no allow-list)."""
        return self.allowed is None

    def refusal(self, base_url: str) -> str | None:
        """Why `base_url` (the request's fhirServer) must not be contacted, or None."""
        try:
            normal = normalise_base_url(base_url)
            host = urlsplit(base_url.strip()).hostname or ""
        except ValueError:
            return "fhirServer is not a valid absolute http(s) URL"
        if self.allowed is not None:
            if normal in self.allowed:
                return None
            return (
                f"fhirServer {_shown(normal)} is not on the FHIR server allow-list "
                f"({self.where}); "
                "it was not contacted and the access token was not used"
            )
        problem = _host_problem(host, allow_loopback=self.allow_loopback)
        if problem is None:
            return None
        return (
            f"fhirServer refused: {problem}; such hosts are contacted only when listed in "
            f"{self.where}. It was not contacted and the access token was not used"
        )


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses forbidden addresses, connects to the checked one."""

    def __init__(
        self,
        *,
        allow_loopback: bool = False,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allow_loopback = allow_loopback
        self._inner = inner or httpcore.AnyIOBackend()

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` resolves to (an IP literal resolves to itself)."""
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {_shown(host)}: {exc}") from None
        addresses: list[IPAddress] = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if ip not in addresses:
                addresses.append(ip)
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.resolve(host, port)
        for ip in addresses:
            problem = address_problem(ip, allow_loopback=self._allow_loopback)
            if problem is not None:
                raise EgressRefused(f"fhirServer host {_shown(host)} resolves to {ip}, {problem}")
        if not addresses:
            raise httpcore.ConnectError(f"{_shown(host)} resolves to no address")
        return await self._inner.connect_tcp(
            str(addresses[0]),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("unix sockets are never used for FHIR requests")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(
    ssl_context: ssl.SSLContext,
    *,
    allow_loopback: bool = False,
    backend: GuardedBackend | None = None,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through `GuardedBackend`.

    httpx has no public parameter for the network backend, so the transport's connection pool
    is replaced by an equivalent one that has it (tests/test_egress.py proves the guard is
    really in the path, so an httpx upgrade that changes this is caught).
    """
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=backend or GuardedBackend(allow_loopback=allow_loopback),
    )
    return transport
