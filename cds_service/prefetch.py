"""Prefetch resolution: every template key ends up with its data, an explicit "no data", or a 412.

CDS Hooks 2.0 semantics, per key of the service's prefetch templates:

- present with a value               → used as sent;
- present with null                  → "no data" (None); not fetched again;
- absent, or an OperationOutcome     → fetched from `fhirServer` with the bearer token of
  (or a Bundle holding only error      `fhirAuthorization` (no Authorization header when the
  OperationOutcomes, or not a FHIR     request has no fhirAuthorization: an open server), all
  resource at all)                     such keys concurrently, each call bounded by
                                       `fhir_call_timeout_seconds`, all of them by
                                       `prefetch_timeout_seconds`, Bundle next links followed
                                       up to `fhir_max_pages`.

A Bundle whose entries are only information/warning OperationOutcomes is an empty search
result, not a failure: some servers report "no matches" that way.

A key that cannot be had (its tokens cannot be filled from the context, no fhirServer, a
plain-http fhirServer without `allow_http_fhir`, a refused token, a timeout, a server error)
raises PrefetchUnavailable (412) when it is required, naming the key and the reason but never
the token; a key that is not required is set to None and the reason goes to `issues`.

Templates are sent as written: the service never rewrites a query (for example a bare-id
`patient=123` stays as it is; the EHR's server must understand what our discovery advertises).
Keys the client sent that are not in our templates are ignored.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx

from cds_service.egress import EgressPolicy
from cds_service.errors import FHIRClientError, PrefetchUnavailable
from cds_service.fhir_client import FHIRClient
from cds_service.fhir_ids import is_fhir_id, is_reference
from cds_service.fhir_input import iter_resources
from cds_service.settings import Settings

__all__ = [
    "USER_TOKENS",
    "PrefetchResult",
    "is_failed_prefetch",
    "render_template",
    "resolve_prefetch",
    "user_tokens",
    "validate_template",
]

USER_TOKENS: Mapping[str, str] = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
"""The user identifier tokens of CDS Hooks 2.0, each with the resource type of context.userId
it is filled from."""

_TOKEN = re.compile(r"\{\{(.*?)\}\}")
_CONTEXT_FIELD = re.compile(r"context\.([A-Za-z_][A-Za-z0-9_]*)")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]+")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_DISALLOWED_DATE_PREFIX = re.compile(r"(ne|sa|eb|ap)\d")
_ALLOWED_RESULT_PARAMS = frozenset({"_count", "_sort", "_id"})
# Characters left as they are when a token value is put into a query; everything else, in
# particular & # ? = + % / and spaces, is percent-encoded so a value cannot add parameters.
_SAFE_IN_QUERY = "-._~:|,"


@dataclass(slots=True)
class PrefetchResult:
    """What the request's prefetch keys resolved to."""

    data: dict[str, Any] = field(default_factory=dict)
    """Template key → resource or Bundle; None means "no data" (sent as null, or not required
    and unavailable)."""

    fetched: list[str] = field(default_factory=list)
    """Keys that were fetched from fhirServer, in template order."""

    issues: list[str] = field(default_factory=list)
    """Notes for the response or the audit record (no PHI, no token)."""

    referenced: list[dict[str, Any]] = field(default_factory=list)
    """Medication resources read from fhirServer because a medication record referenced them
    (`medicationReference`) and neither the prefetch nor a fetch brought them along."""


_MEDICATION_RECORDS = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
MAX_REFERENCED_READS = 50
# Only the medication keys can hold a medicationReference or the Medication it points at (a
# client may have added Medications to those bundles); scanning the rest costs ~1 ms/500.
_TEMPLATE_TYPE = re.compile(
    r"(MedicationRequest|MedicationStatement|MedicationAdministration|Medication)\b"
)


def missing_medication_references(values: Iterable[Any]) -> list[str]:
    """Relative `Medication/id` references of medication records that no resource answers.

    Prefetch templates cannot ask for them (no patient-scoped Medication search, and
    `_include` is outside the recommended query subset), yet EHRs often code the drug only on
    the Medication; without it the exposure would read as unknown.
    """
    present: set[str] = set()
    wanted: set[str] = set()
    for resource in (r for v in values for r in iter_resources(v)):
        rtype = resource.get("resourceType")
        if rtype == "Medication" and isinstance(resource.get("id"), str):
            present.add(f"Medication/{resource['id']}")
        elif rtype in _MEDICATION_RECORDS:
            ref = resource.get("medicationReference")
            target = ref.get("reference") if isinstance(ref, dict) else None
            if is_reference(target, "Medication"):
                wanted.add(target)
    return sorted(wanted - present)[:MAX_REFERENCED_READS]


# --- templates --------------------------------------------------------------------------------


def user_tokens(context: Mapping[str, Any]) -> dict[str, str]:
    """The user identifier tokens fillable from context.userId (e.g. "Practitioner/123" gives
    {"userPractitionerId": "123"}); empty when userId is missing or not Type/id."""
    user = context.get("userId")
    if not isinstance(user, str) or user.count("/") != 1:
        return {}
    resource_type, ident = user.split("/")
    return {
        token: ident
        for token, rtype in USER_TOKENS.items()
        if rtype == resource_type and is_fhir_id(ident)
    }


def _primitive_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str) and str(value) != "":
        return str(value)
    return None


def render_template(
    template: str, context: Mapping[str, Any], user_ids: Mapping[str, str] | None = None
) -> str | None:
    """The query with every prefetch token filled, or None when a token cannot be filled.

    `{{context.x}}` takes the root-level context field x, which must hold a primitive value
    (string, number, boolean); `{{userPractitionerId}}` and its kin come from `user_ids`
    (default: derived from context.userId). Any other token, a missing or non-primitive field,
    or a user token that does not match the user's type makes the template unfillable. So does
    a value that is not a FHIR id (fhir_ids.is_fhir_id: never "." or "..") for a token that
    names an id (`context.<x>Id`, the user tokens): ids are checked here, not only where the
    request is read, because a template is where they become a URL. Other values are
    percent-encoded so they cannot change the query's structure, and "." or ".." is refused
    for them too.
    """
    users = user_tokens(context) if user_ids is None else user_ids
    unfilled = False

    def fill(match: re.Match[str]) -> str:
        nonlocal unfilled
        name = match.group(1).strip()
        value: Any = None
        is_id = name in USER_TOKENS
        if field_match := _CONTEXT_FIELD.fullmatch(name):
            field_name = field_match.group(1)
            value = context.get(field_name)
            is_id = field_name.endswith("Id") and field_name != "userId"
        elif name in USER_TOKENS:
            value = users.get(name)
        text = _primitive_text(value)
        if text in (".", "..") or (is_id and not is_fhir_id(value)):
            text = None
        if text is None:
            unfilled = True
            return ""
        return quote(text, safe=_SAFE_IN_QUERY)

    rendered = _TOKEN.sub(fill, template)
    return None if unfilled or "{{" in rendered or "}}" in rendered else rendered


def validate_template(template: str, *, context_fields: Collection[str] | None = None) -> list[str]:
    """Problems with a prefetch template under CDS Hooks 2.0 and our query subset; [] if none.

    Tokens: `{{context.<root field>}}` or a user identifier token only (with `context_fields`,
    the hook's primitive context fields, the field must be one of them). Queries: relative,
    an instance read `Type/id` or a type-level search `Type?...` whose parameters carry no
    modifier (in particular not `:in`: it makes the EHR expand a value set it may not know),
    no chaining, no `_include`/`_revinclude`/`_has` or other result parameters beyond
    `_count`, `_sort` and `_id`, and date prefixes only among eq, lt, gt, ge, le.
    """
    problems: list[str] = []
    for match in _TOKEN.finditer(template):
        name = match.group(1).strip()
        if name in USER_TOKENS:
            continue
        if field_match := _CONTEXT_FIELD.fullmatch(name):
            if context_fields is not None and field_match.group(1) not in context_fields:
                problems.append(
                    f"token {{{{{name}}}}}: {field_match.group(1)!r} is not a primitive "
                    "root-level field of this hook's context"
                )
        elif name.startswith("context."):
            problems.append(
                f"token {{{{{name}}}}}: only root-level context fields with a primitive value "
                "may be used (context.<field>)"
            )
        else:
            problems.append(
                f"token {{{{{name}}}}} is not allowed: use context.<field>, "
                + ", ".join(USER_TOKENS)
            )
    query = _TOKEN.sub("x", template)
    if "{{" in query or "}}" in query:
        problems.append("unbalanced {{ }} token delimiters")
    problems.extend(_query_problems(query))
    return problems


def _query_problems(query: str) -> list[str]:
    if re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:", query) or query.startswith("/"):
        return ["the query must be relative to fhirServer (e.g. Observation?patient=...)"]
    path, _, params = query.partition("?")
    segments = path.split("/")
    problems: list[str] = []
    if not _RESOURCE_TYPE.fullmatch(segments[0]):
        problems.append(f"{segments[0]!r} is not a FHIR resource type")
    if len(segments) > 2 or (len(segments) == 2 and (params or not segments[1])):
        problems.append("only an instance read (Type/id) or a type-level search (Type?...)")
    for name, value in parse_qsl(params, keep_blank_values=True):
        code, _, modifier = name.partition(":")
        if modifier == "in":
            problems.append(f"{name}: the :in modifier is not used (value sets stay with us)")
        elif modifier:
            problems.append(f"{name}: search modifiers are not used")
        if "." in code:
            problems.append(f"{name}: chained parameters are not used")
        elif not _PARAM_NAME.fullmatch(code):
            problems.append(f"{name!r} is not a search parameter name")
        elif code.startswith("_") and code not in _ALLOWED_RESULT_PARAMS:
            problems.append(f"{code}: only _count, _sort and _id are used")
        if code == "_count" and not (value.isdigit() and int(value) > 0):
            problems.append("_count must be a positive integer")
        if _DISALLOWED_DATE_PREFIX.match(value):
            problems.append(f"{name}: date prefix {value[:2]!r} (only eq, lt, gt, ge, le)")
    return problems


# --- resolution -------------------------------------------------------------------------------


def _outcome_is_error(resource: Mapping[str, Any]) -> bool:
    issues = resource.get("issue")
    if not isinstance(issues, list) or not issues:
        return True
    return any(
        not isinstance(i, dict) or i.get("severity") not in ("information", "warning")
        for i in issues
    )


def is_failed_prefetch(value: Any) -> bool:
    """True when a prefetch value is not data: an OperationOutcome, a Bundle whose entries are
    all OperationOutcomes with an error among them, or anything that is not a FHIR resource."""
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        return True
    if value["resourceType"] == "OperationOutcome":
        return True
    if value["resourceType"] != "Bundle":
        return False
    entries = value.get("entry")
    if not isinstance(entries, list) or not entries:
        return False
    resources = [e.get("resource") if isinstance(e, dict) else None for e in entries]
    outcomes = [
        r for r in resources if isinstance(r, dict) and r.get("resourceType") == "OperationOutcome"
    ]
    return len(outcomes) == len(resources) and any(_outcome_is_error(o) for o in outcomes)


def _access_token(fhir_authorization: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(token, None), or (None, why the authorization cannot be used)."""
    if fhir_authorization is None:
        return None, None
    token = fhir_authorization.get("access_token")
    if not isinstance(token, str) or not token:
        return None, "fhirAuthorization has no access_token"
    token_type = fhir_authorization.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        return None, "fhirAuthorization.token_type is not Bearer"
    return token, None


async def _fetch_all(
    queries: Mapping[str, str],
    client: FHIRClient,
    overall_timeout: float,
) -> dict[str, dict[str, Any] | str]:
    """key → fetched resource, or the reason it could not be fetched."""

    async def one(query: str) -> dict[str, Any] | str:
        try:
            value = await client.fetch(query)
        except FHIRClientError as exc:
            return exc.message
        if is_failed_prefetch(value):
            return f"FHIR server answered {query!r} with an OperationOutcome"
        return value

    tasks = {key: asyncio.create_task(one(query)) for key, query in queries.items()}
    _, pending = await asyncio.wait(tasks.values(), timeout=overall_timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    late = f"not fetched within the {overall_timeout:g}s prefetch time limit"
    return {key: late if task in pending else task.result() for key, task in tasks.items()}


async def resolve_prefetch(
    templates: Mapping[str, str],
    given: Mapping[str, Any],
    context: Mapping[str, Any],
    *,
    fhir_server: str | None,
    fhir_authorization: Mapping[str, Any] | None,
    settings: Settings,
    required: Collection[str],
    transport: httpx.AsyncBaseTransport | None = None,
    also_referencing: Iterable[Any] = (),
    egress: EgressPolicy | None = None,
) -> PrefetchResult:
    """Resolve every template key (see the module docstring); PrefetchUnavailable when a
    required key cannot be had. Then read the Medications that medication records (from the
    prefetch, or `also_referencing`, e.g. the draft orders) reference but nobody sent.

    `egress` says which fhirServer may be contacted (egress.py; default: public addresses
    only, loopback too when `settings.allow_loopback_fhir`); a refused server makes every key
    to fetch unavailable with the reason, before any connection is made. All FHIR response
    bodies of the call are bounded by `settings.fhir_max_response_bytes` each and
    `settings.fhir_max_total_bytes` together."""
    result = PrefetchResult()
    missing: list[str] = []
    for key in templates:
        if key in given and given[key] is None:
            result.data[key] = None
        elif key in given and not is_failed_prefetch(given[key]):
            result.data[key] = given[key]
        else:
            if key in given:
                result.issues.append(
                    f"prefetch key {key!r}: the CDS client sent an OperationOutcome or "
                    "unusable data; fetching it from fhirServer"
                )
            missing.append(key)
    failures: dict[str, str] = {}
    queries: dict[str, str] = {}
    token, auth_problem = _access_token(fhir_authorization)
    user_ids = user_tokens(context)
    for key in missing:
        query = render_template(templates[key], context, user_ids)
        if query is None:
            failures[key] = "its template tokens cannot be filled from the hook context"
        elif not fhir_server:
            failures[key] = "the request carries no fhirServer to fetch it from"
        elif auth_problem is not None:
            failures[key] = auth_problem
        else:
            queries[key] = query
    _raise_if_required(failures, required)

    clients: list[FHIRClient] = []

    def client_or_reason() -> FHIRClient | str:
        if clients:
            return clients[0]
        if not fhir_server:
            return "the request carries no fhirServer"
        if auth_problem is not None:
            return auth_problem
        try:
            clients.append(
                FHIRClient(
                    fhir_server,
                    token,
                    call_timeout=settings.fhir_call_timeout_seconds,
                    max_pages=settings.fhir_max_pages,
                    allow_http=settings.allow_http_fhir,
                    egress=egress
                    or EgressPolicy(None, allow_loopback=settings.allow_loopback_fhir),
                    max_response_bytes=settings.fhir_max_response_bytes,
                    max_total_bytes=settings.fhir_max_total_bytes,
                    transport=transport,
                )
            )
        except FHIRClientError as exc:
            return exc.message
        return clients[0]

    started = time.monotonic()
    try:
        client = client_or_reason() if queries else None
        if isinstance(client, str):
            failures.update(dict.fromkeys(queries, client))
        elif client is not None:
            outcomes = await _fetch_all(queries, client, settings.prefetch_timeout_seconds)
            for key, outcome in outcomes.items():
                if isinstance(outcome, str):
                    failures[key] = outcome
                else:
                    result.data[key] = outcome
                    result.fetched.append(key)
        _raise_if_required(failures, required)
        scanned = [
            value
            for key, value in result.data.items()
            if _TEMPLATE_TYPE.match(templates[key]) is not None
        ]
        refs = missing_medication_references([*scanned, *also_referencing])
        remaining = settings.prefetch_timeout_seconds - (time.monotonic() - started)
        client = client_or_reason() if refs else None
        if isinstance(client, str) or (refs and remaining <= 0):
            result.issues.append(
                f"{len(refs)} referenced Medication resource(s) absent and not fetched"
            )
        elif client is not None:
            reads = await _fetch_all({r: r for r in refs}, client, remaining)
            for ref, outcome in reads.items():
                if isinstance(outcome, str):
                    result.issues.append(f"referenced {ref.split('/')[0]} unavailable: {outcome}")
                else:
                    result.referenced.append(outcome)
    finally:
        for c in clients:
            await c.aclose()

    for key in missing:
        if key in failures:
            result.data[key] = None
            result.issues.append(f"prefetch key {key!r} unavailable: {failures[key]}")
    result.fetched.sort(key=list(templates).index)
    result.data = {key: result.data[key] for key in templates}
    return result


def _raise_if_required(failures: Mapping[str, str], required: Collection[str]) -> None:
    lines = [f"{key}: {why}" for key, why in failures.items() if key in required]
    if lines:
        raise PrefetchUnavailable(
            f"required prefetch data unavailable ({'; '.join(lines)})", details=lines
        )
