"""The CDS clients this service trusts, and the public keys they sign their JWTs with.

CDS Hooks 2.0 (Trusting CDS Clients) says a service SHOULD keep an allow-list of `iss` and
`jku` URLs, and that when a JWT carries no `jku` the client's JWK Set is exchanged out of
band. This module loads that allow-list from the file named by `CDS_TRUSTED_CLIENTS`
(`.yaml`, `.yml` or `.json`) and validates every public key in it at start-up.

File shape (see examples/trusted-clients.yaml for a commented copy)::

    clients:
      - iss: https://ehr.example.org          # required; compared exactly with the JWT iss
        name: Example EHR (production)         # optional label for logs and audit
        jku:                                   # optional allow-list of JWK Set URLs
          - https://ehr.example.org/.well-known/jwks.json
        jwks_file: ehr-jwks.json               # optional pre-shared JWK Set, relative to this file
        # jwks: {keys: [...]}                  # ... or the pre-shared JWK Set inline
        fhir_servers:                          # optional allow-list of fhirServer base URLs
          - https://ehr.example.org/fhir/R4

Rules checked when the file is loaded (every problem is reported at once, each naming the
file and the key path, e.g. ``trusted-clients.yaml: clients[1].jku[0]: ...``):

- the top level is a mapping with one key, ``clients``: a non-empty list;
- each client has a unique, non-empty ``iss`` and no keys other than the six above;
- each client has a pre-shared JWK Set (``jwks`` or ``jwks_file``, not both) or at least
  one ``jku`` URL, otherwise no JWT from it could ever be verified;
- a ``jku`` is an absolute ``https`` URL without a fragment (plain ``http`` only for a
  loopback host, for local testing);
- a JWK is a public EC (P-256, P-384, P-521) or RSA (at least 2048 bits) signing key with
  a unique ``kid``; private key material and symmetric (``oct``) keys are refused, because
  CDS Hooks forbids symmetric algorithms and a private key must never leave the client;
- ``fhir_servers``, when given, is a list of absolute http(s) base URLs (no credentials,
  query or fragment): the only ``fhirServer`` values this client's calls may make the
  service contact (egress.py). An empty list means "never fetch for this client". Without the
  key, only public addresses are contacted.

A JWK Set fetched from a ``jku`` at run time goes through the same key checks
(`parse_jwk_set`); there, an unusable key is skipped instead of failing start-up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from .egress import normalise_base_url
from .errors import ConfigError
from .settings import Settings, base_url_problem

ACCEPTED_ALGORITHMS: frozenset[str] = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
"""Asymmetric JWS algorithms a client may sign with. CDS Hooks recommends ES384 and RS384;
the other SHA-2 variants of the same families are accepted for interoperability. `none` and
every HMAC (HS*) algorithm are refused by construction."""

RECOMMENDED_ALGORITHMS: tuple[str, ...] = ("ES384", "RS384")

_EC_CURVE_ALGORITHM: Mapping[str, str] = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_RSA_ALGORITHMS: frozenset[str] = frozenset(a for a in ACCEPTED_ALGORITHMS if a[:2] in {"RS", "PS"})
_RSA_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")
_MIN_RSA_BITS = 2048
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_CLIENT_KEYS = ("iss", "name", "jku", "jwks_file", "jwks", "fhir_servers")


@dataclass(frozen=True)
class PublicJWK:
    """One validated public signing key of a client, parsed once."""

    kid: str
    kty: Literal["EC", "RSA"]
    key: EllipticCurvePublicKey | RSAPublicKey
    crv: str | None = None
    """EC curve name (P-256, P-384, P-521); None for RSA."""
    alg: str | None = None
    """The algorithm the JWK itself declares, if any; then it is the only one accepted."""

    @property
    def algorithms(self) -> frozenset[str]:
        """The JWS algorithms this key may verify."""
        if self.alg is not None:
            return frozenset({self.alg})
        if self.kty == "EC":
            return frozenset({_EC_CURVE_ALGORITHM[self.crv or ""]})
        return _RSA_ALGORITHMS

    def accepts(self, alg: str) -> bool:
        return alg in self.algorithms


@dataclass(frozen=True)
class TrustedClient:
    """One trusted CDS client: its issuer URL, allow-listed jku URLs and pre-shared keys."""

    iss: str
    jku: tuple[str, ...] = ()
    keys: Mapping[str, PublicJWK] = field(default_factory=lambda: MappingProxyType({}))
    """Pre-shared (out-of-band) public keys by kid."""
    name: str | None = None
    fhir_servers: tuple[str, ...] | None = None
    """Normalised fhirServer base URLs this client's calls may reach; None = no list (public
    addresses only, see egress.py)."""

    def allows_jku(self, url: str) -> bool:
        """Exact match against the allow-list; a jku not listed here is never fetched."""
        return url in self.jku


@dataclass(frozen=True)
class TrustedClients:
    """The allow-list, indexed by iss."""

    clients: tuple[TrustedClient, ...]
    source: Path | None = None
    _by_iss: Mapping[str, TrustedClient] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_iss: dict[str, TrustedClient] = {}
        for client in self.clients:
            if client.iss in by_iss:
                raise ValueError(f"duplicate trusted client iss {client.iss!r}")
            by_iss[client.iss] = client
        object.__setattr__(self, "_by_iss", MappingProxyType(by_iss))

    def get(self, iss: str) -> TrustedClient | None:
        """The client whose iss equals `iss` exactly, or None."""
        return self._by_iss.get(iss)

    def __len__(self) -> int:
        return len(self.clients)

    def __iter__(self) -> Iterator[TrustedClient]:
        return iter(self.clients)


def parse_jwk(data: object) -> PublicJWK:
    """Validate one JWK as a public EC/RSA signing key; ValueError says what is wrong."""
    if not isinstance(data, Mapping):
        raise ValueError("a JWK must be a JSON object")
    kid = data.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError("'kid' is required (a non-empty string): JWTs name their key by kid")
    kty = data.get("kty")
    if kty == "oct":
        raise ValueError(
            "symmetric key (kty 'oct') refused: CDS Hooks forbids symmetric algorithms; "
            "share the client's public EC or RSA key instead"
        )
    if kty not in ("EC", "RSA"):
        raise ValueError(f"kty must be 'EC' or 'RSA', got {_show(kty)}")
    private = [m for m in (("d",) if kty == "EC" else _RSA_PRIVATE_MEMBERS) if m in data]
    if private:
        raise ValueError(
            f"contains private key material ({', '.join(private)}); remove it: only the "
            "client's public key may be shared with the service"
        )
    use = data.get("use")
    if use is not None and use != "sig":
        raise ValueError(f"'use' must be 'sig' for a JWT signing key, got {_show(use)}")
    key_ops = data.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise ValueError("'key_ops' does not include 'verify'")
    alg = data.get("alg")
    if alg is not None and alg not in ACCEPTED_ALGORITHMS:
        raise ValueError(
            f"alg {_show(alg)} is not accepted; use one of {', '.join(sorted(ACCEPTED_ALGORITHMS))}"
        )
    jwk = dict(data)
    if kty == "EC":
        crv = data.get("crv")
        if not isinstance(crv, str) or crv not in _EC_CURVE_ALGORITHM:
            raise ValueError(f"crv must be one of P-256, P-384, P-521, got {_show(crv)}")
        if alg is not None and alg != _EC_CURVE_ALGORITHM[crv]:
            raise ValueError(f"alg {alg} does not match curve {crv}")
        try:
            ec_key = ECAlgorithm.from_jwk(jwk)
        except (InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"not a valid EC public key: {exc}") from None
        if not isinstance(ec_key, EllipticCurvePublicKey):
            raise ValueError("not an EC public key")
        return PublicJWK(kid=kid, kty="EC", key=ec_key, crv=crv, alg=alg)
    if alg is not None and alg not in _RSA_ALGORITHMS:
        raise ValueError(f"alg {alg} is not an RSA algorithm")
    try:
        rsa_key = RSAAlgorithm.from_jwk(jwk)
    except (InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a valid RSA public key: {exc}") from None
    if not isinstance(rsa_key, RSAPublicKey):
        raise ValueError("not an RSA public key")
    if rsa_key.key_size < _MIN_RSA_BITS:
        raise ValueError(
            f"RSA key is {rsa_key.key_size} bits; at least {_MIN_RSA_BITS} bits are required"
        )
    return PublicJWK(kid=kid, kty="RSA", key=rsa_key, alg=alg)


def parse_jwk_set(data: object) -> tuple[dict[str, PublicJWK], list[str]]:
    """Validate a JWK Set: the usable keys by kid, and one line per key that was not usable.

    A kid that appears more than once is ambiguous and none of its keys is kept. A document
    that is not a JWK Set at all raises ValueError.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
        raise ValueError("a JWK Set must be an object with a 'keys' list")
    keys: dict[str, PublicJWK] = {}
    problems: list[str] = []
    duplicated: set[str] = set()
    for index, item in enumerate(data["keys"]):
        try:
            key = parse_jwk(item)
        except ValueError as exc:
            problems.append(f"keys[{index}]: {exc}")
            continue
        if key.kid in keys or key.kid in duplicated:
            problems.append(f"keys[{index}]: kid {_show(key.kid)} appears more than once")
            duplicated.add(key.kid)
            keys.pop(key.kid, None)
            continue
        keys[key.kid] = key
    return keys, problems


def load_trusted_clients(path: Path | None) -> TrustedClients:
    """Load and validate the trusted-clients file; ConfigError lists every problem found.

    `path` None (CDS_TRUSTED_CLIENTS unset) is itself a ConfigError that says what to set.
    """
    if path is None:
        raise ConfigError(
            "CDS_TRUSTED_CLIENTS is not set: with CDS_AUTH=on the service needs the file "
            "listing the CDS clients it trusts (see examples/trusted-clients.yaml); "
            "CDS_AUTH=off is for local use only"
        )
    document = _read_document(path)
    problems: list[str] = []
    clients = _parse_document(document, path.parent, problems)
    if problems:
        raise _config_error(path, problems)
    return TrustedClients(clients=tuple(clients), source=path)


def trusted_clients_from_settings(settings: Settings) -> TrustedClients:
    """The allow-list named by settings.trusted_clients (CDS_TRUSTED_CLIENTS)."""
    return load_trusted_clients(settings.trusted_clients)


# --- reading ----------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (a silent override hides mistakes)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        seen.add(key)
    return dict(loader.construct_mapping(node, deep=True))


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _json_unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _read_document(path: Path) -> object:
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise _config_error(path, ["unknown file type: name the file *.yaml, *.yml or *.json"])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _config_error(path, ["file not found; check CDS_TRUSTED_CLIENTS"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _config_error(path, [f"cannot be read: {exc}"]) from None
    if suffix == ".json":
        try:
            return json.loads(text, object_pairs_hook=_json_unique_object)
        except ValueError as exc:
            raise _config_error(path, [f"invalid JSON: {exc}"]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _config_error(path, [f"invalid YAML: {_one_line(str(exc))}"]) from None


def _read_jwks_file(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"JWK Set file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"JWK Set file {path} cannot be read: {exc}") from None
    try:
        return json.loads(text, object_pairs_hook=_json_unique_object)
    except ValueError as exc:
        raise ValueError(f"JWK Set file {path} is not valid JSON: {exc}") from None


# --- validation -------------------------------------------------------------------------------


def _parse_document(document: object, base: Path, problems: list[str]) -> list[TrustedClient]:
    if not isinstance(document, Mapping):
        problems.append("the top level must be a mapping with a 'clients' list")
        return []
    for key in document:
        if key != "clients":
            problems.append(f"{_show(key)}: unknown top-level key; the only key is 'clients'")
    entries = document.get("clients")
    if not isinstance(entries, list) or not entries:
        problems.append(
            "clients: must be a non-empty list of trusted clients (iss plus jwks, jwks_file "
            "or jku); with an empty list no CDS client could call the service"
        )
        return []
    clients: list[TrustedClient] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        path = f"clients[{index}]"
        client_problems: list[str] = []
        client = _parse_client(entry, path, base, client_problems)
        problems.extend(client_problems)
        if client is None or client_problems:
            continue
        if client.iss in seen:
            problems.append(
                f"{path}.iss: {_show(client.iss)} is already listed at clients[{seen[client.iss]}];"
                " merge the two entries"
            )
            continue
        seen[client.iss] = index
        clients.append(client)
    return clients


def _parse_client(
    entry: object, path: str, base: Path, problems: list[str]
) -> TrustedClient | None:
    if not isinstance(entry, Mapping):
        problems.append(f"{path}: must be a mapping with at least 'iss'")
        return None
    for key in entry:
        if key not in _CLIENT_KEYS:
            problems.append(
                f"{path}.{key}: unknown key; allowed keys are {', '.join(_CLIENT_KEYS)}"
            )
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss.strip():
        problems.append(f"{path}.iss: required, the exact issuer string the client puts in 'iss'")
        iss = ""
    elif iss != iss.strip():
        problems.append(f"{path}.iss: has leading or trailing spaces; iss is compared exactly")
    name = entry.get("name")
    if name is not None and not isinstance(name, str):
        problems.append(f"{path}.name: must be a string")
        name = None
    jku = _parse_jku_list(entry.get("jku"), f"{path}.jku", problems)
    fhir_servers = _parse_fhir_servers(
        entry.get("fhir_servers", ...), f"{path}.fhir_servers", problems
    )
    keys = _parse_preshared(entry, path, base, problems)
    if keys is None and not jku:
        problems.append(
            f"{path}: no way to verify this client's JWTs; add a pre-shared JWK Set "
            "('jwks' or 'jwks_file') or at least one allow-listed 'jku' URL"
        )
    return TrustedClient(
        iss=iss, jku=jku, keys=MappingProxyType(keys or {}), name=name, fhir_servers=fhir_servers
    )


def _parse_fhir_servers(value: object, path: str, problems: list[str]) -> tuple[str, ...] | None:
    if value is ...:
        return None
    if not isinstance(value, list):
        problems.append(f"{path}: must be a list of FHIR server base URLs ([] = never fetch)")
        return None
    urls: list[str] = []
    for index, item in enumerate(value):
        problem = "must be a URL string" if not isinstance(item, str) else base_url_problem(item)
        if problem is not None:
            problems.append(f"{path}[{index}]: {_show(item)} {problem}")
            continue
        normal = normalise_base_url(str(item))
        if normal not in urls:
            urls.append(normal)
    return tuple(urls)


def _parse_jku_list(value: object, path: str, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    items: Sequence[object]
    if isinstance(value, str):
        items, paths = [value], [path]
    elif isinstance(value, list):
        items, paths = value, [f"{path}[{i}]" for i in range(len(value))]
    else:
        problems.append(f"{path}: must be a URL or a list of URLs")
        return ()
    urls: list[str] = []
    for item, item_path in zip(items, paths, strict=True):
        problem = _url_problem(item)
        if problem is not None:
            problems.append(f"{item_path}: {problem}")
        elif isinstance(item, str) and item not in urls:
            urls.append(item)
    return tuple(urls)


def _url_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a URL string"
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return f"{_show(value)} is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return f"{_show(value)} must be an absolute https URL"
    if parts.scheme == "http" and host not in _LOOPBACK_HOSTS:
        return f"{_show(value)} must use https (plain http is allowed only for a loopback host)"
    if parts.username is not None or parts.password is not None:
        return f"{_show(value)} must not carry credentials"
    if parts.fragment:
        return f"{_show(value)} must not have a #fragment"
    return None


def _parse_preshared(
    entry: Mapping[Any, Any], path: str, base: Path, problems: list[str]
) -> dict[str, PublicJWK] | None:
    inline, file_name = entry.get("jwks"), entry.get("jwks_file")
    if inline is not None and file_name is not None:
        problems.append(f"{path}: give either 'jwks' or 'jwks_file', not both")
        return None
    if inline is None and file_name is None:
        return None
    where = f"{path}.jwks"
    if file_name is not None:
        where = f"{path}.jwks_file"
        if not isinstance(file_name, str) or not file_name:
            problems.append(f"{where}: must be a file path (relative to the trusted-clients file)")
            return None
        try:
            inline = _read_jwks_file(base / Path(file_name).expanduser())
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            return None
    try:
        keys, key_problems = parse_jwk_set(inline)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None
    problems.extend(f"{where}: {p}" for p in key_problems)
    if not keys and not key_problems:
        problems.append(f"{where}: the JWK Set has no keys")
    return keys


# --- messages ---------------------------------------------------------------------------------


def _config_error(path: Path, problems: list[str]) -> ConfigError:
    header = f"trusted clients file {path}: {len(problems)} problem(s)"
    lines = [f"{path.name}: {p}" for p in problems]
    return ConfigError("\n".join([header, *lines]), details=lines)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show(value: object, limit: int = 80) -> str:
    """A short, printable rendering of a value for an error message."""
    text = repr(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
