"""The CDS Hooks request envelope: parsed once with orjson, checked at the top level only.

Only what the service decides on is checked strictly (hook, hookInstance, context,
fhirServer, fhirAuthorization, the shape of prefetch); the prefetch content itself is left to
the tolerant FHIR input layer, because real clients send messy resources and a 4xx for a
messy resource would lose the whole decision.

Strict, because these reach logs, templates and URLs: hookInstance is 1 to
`MAX_HOOK_INSTANCE_CHARS` printable ASCII characters (it is the log correlation id);
context.patientId and context.encounterId are FHIR ids and context.userId is `Type/id`
(fhir_ids: never "." or ".."); everything but the prefetch values nests at most
`MAX_JSON_DEPTH` levels (prefetch resources are walked without recursion by fhir_input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import RequestError
from .fhir_ids import is_fhir_id, is_reference

ORDER_TYPES = ("MedicationRequest", "ServiceRequest")
MAX_HOOK_INSTANCE_CHARS = 128
"""A hookInstance is a UUID (36 characters); longer ones are refused, not logged."""
MAX_JSON_DEPTH = 64
"""Nesting levels allowed in the request outside the prefetch values (a draft order in a
Bundle is about 12 levels deep)."""


@dataclass(frozen=True, slots=True)
class HookRequest:
    hook: str
    hook_instance: str
    context: dict[str, Any]
    patient_id: str
    fhir_server: str | None
    fhir_authorization: dict[str, Any] | None
    prefetch: dict[str, Any]
    """Keys as sent: a value, None (= no data, do not refetch), or absent (= fetch it)."""
    draft_orders: list[dict[str, Any]] = field(default_factory=list)
    """Order resources from context.draftOrders (MedicationRequest, ServiceRequest)."""
    draft_support: list[dict[str, Any]] = field(default_factory=list)
    """Other resources sent beside the orders (e.g. a Medication they reference)."""
    selections: tuple[str, ...] = ()
    issues: tuple[str, ...] = ()


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"the request body is not valid JSON ({exc.msg})") from None


def check_depth(value: Any, limit: int, where: str, *, skip_values_of: str | None = None) -> None:
    """RequestError when `value` nests deeper than `limit` (iterative, no recursion); with
    `skip_values_of`, the values of that top-level key are not descended into."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise RequestError(f"{where} nests deeper than {limit} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(child, dict | list) and not (depth == 1 and key == skip_values_of):
                    stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))


def _hook_instance(data: dict[str, Any]) -> str:
    value = data.get("hookInstance")
    if not isinstance(value, str) or not value.strip():
        raise RequestError("hookInstance is required and must be a non-empty string")
    if len(value) > MAX_HOOK_INSTANCE_CHARS or not all(" " < ch <= "~" for ch in value):
        raise RequestError(
            f"hookInstance must be a UUID: at most {MAX_HOOK_INSTANCE_CHARS} printable ASCII "
            "characters without spaces"
        )
    return value


def _context_ids(context: dict[str, Any]) -> None:
    """The context ids that can reach a template or a URL must be FHIR ids."""
    for key in ("patientId", "encounterId"):
        if key in context and not is_fhir_id(context[key]):
            raise RequestError(
                f"context.{key} must be a FHIR id (1-64 of A-Z a-z 0-9 - and ., not '.' or '..')"
            )
    user = context.get("userId")
    if user is not None and not is_reference(user):
        raise RequestError(
            "context.userId must be a relative reference Type/id with a FHIR id "
            "(e.g. Practitioner/123)"
        )


def _string(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{where}{key} is required and must be a non-empty string")
    return value


def _resources_of(value: Any, issues: list[str]) -> list[dict[str, Any]]:
    """Resources from a Bundle (with or without type), a list, or a single resource."""
    if value is None:
        return []
    if isinstance(value, list):
        out: list[dict[str, Any]] = []
        for item in value:
            out.extend(_resources_of(item, issues))
        return out
    if not isinstance(value, dict):
        issues.append("context.draftOrders: ignored a value that is not a resource")
        return []
    if value.get("resourceType") == "Bundle" or ("entry" in value and "resourceType" not in value):
        entries = value.get("entry") or []
        if isinstance(entries, dict):
            entries = [entries]
        res: list[dict[str, Any]] = []
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                res.extend(_resources_of(entry["resource"], issues))
        return res
    if isinstance(value.get("resourceType"), str):
        return [value]
    issues.append("context.draftOrders: ignored an object without resourceType")
    return []


def _selections(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str) and v)


def parse_envelope(data: Any) -> HookRequest:
    """Check the top level of a parsed request body; RequestError (400) with the reason."""
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    hook = _string(data, "hook", "")
    hook_instance = _hook_instance(data)
    check_depth(data, MAX_JSON_DEPTH, "the request", skip_values_of="prefetch")
    context = data.get("context")
    if not isinstance(context, dict):
        raise RequestError("context is required and must be an object")
    patient_id = _string(context, "patientId", "context.")
    _context_ids(context)

    fhir_server = data.get("fhirServer")
    if fhir_server is not None and (not isinstance(fhir_server, str) or not fhir_server):
        raise RequestError("fhirServer must be a URL string")
    auth = data.get("fhirAuthorization")
    if auth is not None:
        if not isinstance(auth, dict):
            raise RequestError("fhirAuthorization must be an object")
        token = auth.get("access_token")
        if not isinstance(token, str) or not token:
            raise RequestError("fhirAuthorization.access_token is required")
        token_type = auth.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise RequestError("fhirAuthorization.token_type must be Bearer")
        if fhir_server is None:
            raise RequestError("fhirAuthorization was sent without fhirServer")
    prefetch = data.get("prefetch", {})
    if prefetch is None:
        prefetch = {}
    if not isinstance(prefetch, dict):
        raise RequestError("prefetch must be an object")

    issues: list[str] = []
    drafts = _resources_of(context.get("draftOrders"), issues)
    orders = [r for r in drafts if r.get("resourceType") in ORDER_TYPES]
    support = [r for r in drafts if r.get("resourceType") not in ORDER_TYPES]
    return HookRequest(
        hook=hook,
        hook_instance=hook_instance,
        context=context,
        patient_id=patient_id,
        fhir_server=fhir_server,
        fhir_authorization=auth,
        prefetch=prefetch,
        draft_orders=orders,
        draft_support=support,
        selections=_selections(context.get("selections")),
        issues=tuple(issues),
    )


def reference_of(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def split_orders(
    request: HookRequest,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(orders under decision, other draft orders as context) for the request's hook.

    order-select decides on context.selections only; the other draft orders are context.
    order-sign decides on every draft order. patient-view decides on none.
    """
    if request.hook == "order-select":
        chosen = set(request.selections)
        under = [o for o in request.draft_orders if reference_of(o) in chosen]
        rest = [o for o in request.draft_orders if reference_of(o) not in chosen]
        return under, rest
    if request.hook == "order-sign":
        return list(request.draft_orders), []
    return [], list(request.draft_orders)
