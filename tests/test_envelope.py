"""The request envelope: what real clients send is accepted, what cannot be used is a 400."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.envelope import parse_envelope, parse_json, split_orders
from cds_service.errors import RequestError


def body(**over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "hook": "order-select",
        "hookInstance": "abc",
        "context": {"patientId": "p1", "userId": "Practitioner/1"},
    }
    b.update(over)
    return b


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([], "JSON object"),
        ({"hookInstance": "x", "context": {"patientId": "p"}}, "hook is required"),
        ({"hook": "order-select", "context": {"patientId": "p"}}, "hookInstance is required"),
        ({"hook": "order-select", "hookInstance": "x"}, "context is required"),
        ({"hook": "order-select", "hookInstance": "x", "context": {}}, "patientId"),
        (body(prefetch=[1]), "prefetch must be an object"),
        (body(fhirAuthorization={"access_token": "t", "token_type": "Bearer"}), "without fhirServer"),
        (body(fhirServer="https://x", fhirAuthorization={"token_type": "Bearer"}), "access_token"),
        (body(fhirServer="https://x", fhirAuthorization={"access_token": "t", "token_type": "MAC"}), "Bearer"),
    ],
)
def test_unusable_envelopes_are_400(data: Any, fragment: str) -> None:
    with pytest.raises(RequestError) as err:
        parse_envelope(data)
    assert fragment in err.value.message
    assert err.value.status == 400


def test_invalid_json_is_a_request_error() -> None:
    with pytest.raises(RequestError, match="not valid JSON"):
        parse_json(b"{not json")


def test_sandbox_shapes_are_accepted() -> None:
    """draftOrders Bundle without type, a MedicationRequest with no intent and no drug yet,
    category as an object, STU3 doseQuantity, extensions and unknown fields."""
    order = {
        "resourceType": "MedicationRequest",
        "id": "mr-1",
        "status": "draft",
        "category": {"coding": [{"code": "outpatient"}]},
        "dosageInstruction": [{"doseQuantity": {"value": 100, "unit": "mg"}}],
        "extension": {"url": "http://example.org/x", "valueString": "y"},
        "someVendorField": True,
    }
    req = parse_envelope(
        body(
            context={
                "patientId": "p1",
                "userId": "Practitioner/1",
                "selections": "MedicationRequest/mr-1",
                "draftOrders": {"entry": [{"resource": order}, {"resource": {"resourceType": "Medication", "id": "m"}}]},
            },
            prefetch=None,
            unknownTopLevel={"a": 1},
        )
    )
    assert [o["id"] for o in req.draft_orders] == ["mr-1"]
    assert [r["resourceType"] for r in req.draft_support] == ["Medication"]
    assert req.selections == ("MedicationRequest/mr-1",)
    assert req.prefetch == {}


def _orders(*ids: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "MedicationRequest", "id": i, "status": "draft"}} for i in ids
    ]}


def test_order_select_decides_on_selections_only() -> None:
    req = parse_envelope(body(context={"patientId": "p", "draftOrders": _orders("a", "b"),
                                       "selections": ["MedicationRequest/b"]}))
    under, rest = split_orders(req)
    assert [o["id"] for o in under] == ["b"]
    assert [o["id"] for o in rest] == ["a"]


def test_order_sign_decides_on_all_draft_orders() -> None:
    req = parse_envelope(body(hook="order-sign", context={"patientId": "p", "draftOrders": _orders("a", "b")}))
    under, rest = split_orders(req)
    assert [o["id"] for o in under] == ["a", "b"]
    assert rest == []


def test_patient_view_decides_on_no_order() -> None:
    req = parse_envelope(body(hook="patient-view"))
    assert split_orders(req) == ([], [])


# --- ids, hookInstance and depth (issue 15) --------------------------------------------------


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"patientId": "."}, "context.patientId must be a FHIR id"),
        ({"patientId": ".."}, "context.patientId must be a FHIR id"),
        ({"patientId": "a" * 65}, "context.patientId must be a FHIR id"),
        ({"patientId": "p/1"}, "context.patientId must be a FHIR id"),
        ({"patientId": "p1", "encounterId": ".."}, "context.encounterId"),
        ({"patientId": "p1", "encounterId": ["e1"]}, "context.encounterId"),
        ({"patientId": "p1", "userId": "Practitioner/."}, "context.userId"),
        ({"patientId": "p1", "userId": "practitioner/1"}, "context.userId"),
        ({"patientId": "p1", "userId": 5}, "context.userId"),
    ],
)
def test_context_ids_must_be_fhir_ids(context: dict[str, Any], fragment: str) -> None:
    with pytest.raises(RequestError) as err:
        parse_envelope(body(context=context))
    assert fragment in err.value.message


def test_ids_at_the_edge_of_the_grammar_are_accepted() -> None:
    ok = {"patientId": "a" * 64, "encounterId": "e.1-A", "userId": "PractitionerRole/..x"}
    assert parse_envelope(body(context=ok)).patient_id == "a" * 64


@pytest.mark.parametrize("value", ["x" * 129, "a b", "a\nb", "a\x7fb", "ü"])
def test_hook_instance_is_short_printable_ascii(value: str) -> None:
    with pytest.raises(RequestError, match="hookInstance must be a UUID"):
        parse_envelope(body(hookInstance=value))
    assert parse_envelope(body(hookInstance="x" * 128)).hook_instance == "x" * 128


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_outside_the_prefetch_values_is_bounded() -> None:
    from cds_service.envelope import MAX_JSON_DEPTH

    allowed = MAX_JSON_DEPTH - 2  # body (1) -> context (2) -> the lists (3 ...)
    parse_envelope(body(context={"patientId": "p1", "x": _nested(allowed)}))
    with pytest.raises(RequestError, match="nests deeper than"):
        parse_envelope(body(context={"patientId": "p1", "x": _nested(allowed + 1)}))
    with pytest.raises(RequestError, match="nests deeper than"):
        parse_envelope(body(extension={"a": _nested(500)}))
    # prefetch values are left to the iterative FHIR input layer
    parse_envelope(body(prefetch={"k": {"resourceType": "Bundle", "x": _nested(500)}}))
