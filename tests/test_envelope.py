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
