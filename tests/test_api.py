"""CDS Hooks 2.0 conformance of the HTTP API, in process (FHIR server mocked with pytest-httpx).

Each test is tagged with the requirement ids it covers (tests/conformance/requirements.csv);
the run ends with a coverage table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pytest_httpx import HTTPXMock

from cds_service.prefetch import validate_template
from cds_service.wire import CDSResponse
from tests.support.app import (
    TestClient,
    assert_no_null_or_empty,
    assert_operation_outcome,
    make_client,
)
from tests.support.patients import (
    draft_order,
    hook_request,
    patient,
    prefetch_for,
    t315i,
    t315i_record,
)

SELECT = "/cds-services/phall-order-select"
SIGN = "/cds-services/phall-order-sign"
VIEW = "/cds-services/phall-patient-view"
FHIR = "https://ehr.example.org/fhir"


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return make_client(tmp_path)


def templates(client: TestClient, service_id: str) -> dict[str, str]:
    services = client.get("/cds-services").json()["services"]
    found: dict[str, str] = next(s for s in services if s["id"] == service_id)["prefetch"]
    return found


# -- discovery -------------------------------------------------------------------------------


@pytest.mark.req("1", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13")
def test_discovery_lists_three_services(client: TestClient) -> None:
    r = client.get("/cds-services")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    services = r.json()["services"]
    assert {s["hook"] for s in services} == {"patient-view", "order-select", "order-sign"}
    for s in services:
        assert s["id"] and s["title"] and s["description"] and s["usageRequirements"]
        assert isinstance(s["prefetch"], dict)
    assert_no_null_or_empty(r.json())


@pytest.mark.req("29", "35", "36", "55", "56", "57", "58", "59")
def test_prefetch_templates_follow_the_token_rules(client: TestClient) -> None:
    for s in client.get("/cds-services").json()["services"]:
        assert s["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        for key, query in s["prefetch"].items():
            assert validate_template(query) == [], (key, query)
            assert ":in" not in query and "_include" not in query


def test_templates_are_derived_from_what_the_rules_read(client: TestClient) -> None:
    t = templates(client, "phall-order-select")
    # T315I, BCR::ABL1 and CSF facts are Observations; exposures are medication resources.
    assert t["observations"] == "Observation?patient={{context.patientId}}"
    assert "medicationRequests" in t and "conditions" in t


# -- service calls ---------------------------------------------------------------------------


@pytest.mark.req("1", "3", "16", "74", "80", "83", "87", "88", "90", "105", "107")
def test_t315i_with_dasatinib_gives_a_critical_card(client: TestClient) -> None:
    order = draft_order("dasatinib")
    body = hook_request(
        "order-select",
        prefetch=prefetch_for(t315i_record(), templates(client, "phall-order-select")),
        orders=[order],
    )
    r = client.post(SELECT, json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()
    assert_no_null_or_empty(data)
    CDSResponse.model_validate(data)
    critical = [c for c in data["cards"] if c["indicator"] == "critical"]
    assert len(critical) == 1
    card = critical[0]
    assert "T315I" in card["summary"] and len(card["summary"]) < 140
    assert card["uuid"] and card["source"]["label"]
    assert "ponatinib" in card["detail"].lower()
    assert data["cards"][0]["indicator"] == "critical"  # critical first


@pytest.mark.req("74", "77")
def test_no_guidance_is_200_with_empty_cards(client: TestClient) -> None:
    body = hook_request(
        "patient-view", prefetch=prefetch_for([patient()], templates(client, "phall-patient-view"))
    )
    r = client.post(VIEW, json=body)
    assert r.status_code == 200
    assert r.json() == {"cards": []}


def test_resources_about_another_patient_are_not_evidence(client: TestClient) -> None:
    record = [*t315i_record("pt-1")[:3], t315i("someone-else")]
    body = hook_request(
        "order-select",
        prefetch=prefetch_for(record, templates(client, "phall-order-select")),
        orders=[draft_order("dasatinib")],
    )
    cards = client.post(SELECT, json=body).json()["cards"]
    assert not [c for c in cards if c["indicator"] == "critical"]


def test_order_select_ignores_unselected_drafts(client: TestClient) -> None:
    orders = [draft_order("imatinib", "d-ima"), draft_order("dasatinib", "d-das")]
    prefetch = prefetch_for(t315i_record(), templates(client, "phall-order-select"))
    selected_none = hook_request("order-select", prefetch=prefetch, orders=orders, selections=[])
    cards = client.post(SELECT, json=selected_none).json()["cards"]
    assert not [c for c in cards if c["indicator"] == "critical"]
    signed = hook_request("order-sign", prefetch=prefetch, orders=orders)
    cards = client.post(SIGN, json=signed).json()["cards"]
    # both orders are ineffective with T315I, but one rule gives one card per decision
    assert len([c for c in cards if c["indicator"] == "critical"]) == 1


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.req("14", "76")
def test_unknown_service_is_404(client: TestClient) -> None:
    body = hook_request("order-select", prefetch={})
    assert_operation_outcome(client.post("/cds-services/nope", json=body), 404)


def test_hook_mismatch_is_400(client: TestClient) -> None:
    body = hook_request("patient-view", prefetch={})
    oo = assert_operation_outcome(client.post(SELECT, json=body), 400)
    assert "order-select" in oo["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"hookInstance": "x", "context": {"patientId": "p"}}',
     b'{"hook": "order-select", "context": {"patientId": "p"}}',
     b'{"hook": "order-select", "hookInstance": "x"}'],
)
def test_bad_bodies_are_400(client: TestClient, raw: bytes) -> None:
    assert_operation_outcome(
        client.post(SELECT, content=raw, headers={"content-type": "application/json"}), 400
    )


def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    client = make_client(tmp_path, max_body_bytes=1000)
    big = orjson.dumps(hook_request("order-select", prefetch={"x": "y" * 2000}))
    assert_operation_outcome(client.post(SELECT, content=big), 413)

    def chunks() -> Any:  # no content-length: refused while streaming
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    assert_operation_outcome(client.post(SELECT, content=chunks()), 413)


def test_default_limit_admits_a_5000_entry_record(client: TestClient) -> None:
    def vital(i: int) -> dict[str, Any]:
        return {
            "resourceType": "Observation", "id": f"hr-{i}", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs", "display": "Vital Signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
                     "text": "Heart rate"},
            "subject": {"reference": "Patient/pt-1"},
            "effectiveDateTime": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T08:00:00Z",
            "valueQuantity": {"value": 60 + i % 40, "unit": "beats/minute",
                              "system": "http://unitsofmeasure.org", "code": "/min"},
            "note": [{"text": "routine observation " + "x" * 600}],
        }

    many = [patient(), *[vital(i) for i in range(5000)]]
    body = orjson.dumps(
        hook_request("patient-view", prefetch=prefetch_for(many, templates(client, "phall-patient-view")))
    )
    assert len(body) > 5_500_000
    assert client.post(VIEW, content=body).status_code == 200


def test_unknown_route_and_method_are_operation_outcomes(client: TestClient) -> None:
    assert_operation_outcome(client.get("/nowhere"), 404)
    assert_operation_outcome(client.delete("/cds-services"), 405)


# -- prefetch through the service ------------------------------------------------------------


@pytest.mark.req("28", "34", "52", "60", "61")
def test_absent_prefetch_is_fetched_with_the_bearer_token(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    record = t315i_record()
    tmpl = templates(client, "phall-order-select")
    given = prefetch_for(record, tmpl)
    given.pop("observations")  # absent: fetch it
    given["conditions"] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "exception"}]}  # an OperationOutcome: fetch it too
    from tests.support.patients import searchset

    httpx_mock.add_response(
        url=f"{FHIR}/Observation?patient=pt-1",
        json=searchset([r for r in record if r["resourceType"] == "Observation"]),
        match_headers={"Authorization": "Bearer tok-123"},
    )
    httpx_mock.add_response(
        url=f"{FHIR}/Condition?patient=pt-1",
        json=searchset([r for r in record if r["resourceType"] == "Condition"]),
        match_headers={"Authorization": "Bearer tok-123"},
    )
    body = hook_request("order-select", prefetch=given, orders=[draft_order("dasatinib")],
                        fhir_server=FHIR, token="tok-123")
    r = client.post(SELECT, json=body)
    assert r.status_code == 200, r.text
    assert [c for c in r.json()["cards"] if c["indicator"] == "critical"]


@pytest.mark.req("52")
def test_null_prefetch_means_no_data_and_is_not_refetched(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    tmpl = templates(client, "phall-order-select")
    given: dict[str, Any] = {key: None for key in tmpl}
    body = hook_request("order-select", prefetch=given, orders=[draft_order("dasatinib")],
                        fhir_server=FHIR, token="tok")
    r = client.post(SELECT, json=body)
    assert r.status_code == 200
    assert httpx_mock.get_requests() == []


@pytest.mark.req("54")
def test_missing_prefetch_without_fhir_server_is_412(client: TestClient) -> None:
    body = hook_request("order-select", prefetch=None, orders=[draft_order("dasatinib")])
    assert_operation_outcome(client.post(SELECT, json=body), 412)


@pytest.mark.req("54")
def test_fhir_server_failure_is_412_not_empty_cards(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=500, is_reusable=True, is_optional=True)
    body = hook_request("order-select", prefetch=None, orders=[draft_order("dasatinib")],
                        fhir_server=FHIR, token="tok")
    oo = assert_operation_outcome(client.post(SELECT, json=body), 412)
    assert "tok" not in orjson.dumps(oo).decode().replace("token", "")


def test_plain_http_fhir_server_is_refused(client: TestClient, httpx_mock: HTTPXMock) -> None:
    body = hook_request("order-select", prefetch=None, orders=[draft_order("dasatinib")],
                        fhir_server="http://ehr.example.org/fhir", token="tok")
    assert_operation_outcome(client.post(SELECT, json=body), 412)
    assert httpx_mock.get_requests() == []


# -- feedback --------------------------------------------------------------------------------


def _issue_card(client: TestClient) -> dict[str, Any]:
    body = hook_request(
        "order-select",
        prefetch=prefetch_for(t315i_record(), templates(client, "phall-order-select")),
        orders=[draft_order("dasatinib")],
    )
    card: dict[str, Any] = client.post(SELECT, json=body).json()["cards"][0]
    return card


@pytest.mark.req("148")
def test_feedback_overridden_sandbox_shape_is_stored_once(client: TestClient) -> None:
    card = _issue_card(client)
    fb = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                        "overrideReason": {"reason": {"code": "patient-refused"}, "userComment": "x"},
                        "outcomeTimestamp": "2026-11-22T10:00:00Z"}]}
    for _ in range(2):
        r = client.post(SELECT + "/feedback", json=fb)
        assert r.status_code == 200, r.text
    store = client.app.state.service.store  # type: ignore[attr-defined]
    rows = store.feedback_rows(card["uuid"])
    assert len(rows) == 1 and rows[0]["rule_id"] and rows[0]["override_code"] == "patient-refused"


@pytest.mark.req("148")
def test_feedback_accepted_needs_accepted_suggestions(client: TestClient) -> None:
    fb = {"feedback": [{"card": "c-1", "outcome": "accepted",
                        "outcomeTimestamp": "2026-11-22T10:00:00Z"}]}
    oo = assert_operation_outcome(client.post(SELECT + "/feedback", json=fb), 400)
    assert any("acceptedSuggestions" in i["diagnostics"] for i in oo["issue"])
    fb["feedback"][0]["acceptedSuggestions"] = [{"id": "s-1"}]
    assert client.post(SELECT + "/feedback", json=fb).status_code == 200


def test_feedback_errors(client: TestClient) -> None:
    assert_operation_outcome(client.post("/cds-services/nope/feedback", json={"feedback": []}), 404)
    assert_operation_outcome(client.post(SELECT + "/feedback", content=b"{"), 400)
    assert_operation_outcome(client.post(SELECT + "/feedback", json={"feedback": []}), 400)
    assert_operation_outcome(
        client.post(SELECT + "/feedback", json={"feedback": [{"card": "c", "outcome": "maybe",
                                                               "outcomeTimestamp": "t"}]}), 400)


# -- CORS ------------------------------------------------------------------------------------


@pytest.mark.req("208")
@pytest.mark.parametrize("path", ["/cds-services", SELECT, SELECT + "/feedback"])
def test_cors_preflight(tmp_path: Path, path: str) -> None:
    client = make_client(tmp_path, cors_origins=["https://ehr.example.org"])
    ok = client.options(path, headers={"Origin": "https://ehr.example.org",
                                       "Access-Control-Request-Method": "POST",
                                       "Access-Control-Request-Headers": "authorization,content-type"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://ehr.example.org"
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    bad = client.options(path, headers={"Origin": "https://evil.example.com",
                                        "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in bad.headers


def test_order_coded_only_on_a_referenced_medication_is_resolved_from_the_fhir_server(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    """EHRs often send medicationReference; the Medication is read with the bearer token."""
    order = draft_order("dasatinib")
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/med-das"}
    medication = {"resourceType": "Medication", "id": "med-das",
                  "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                       "code": "475342"}]}}
    httpx_mock.add_response(url=f"{FHIR}/Medication/med-das", json=medication,
                            match_headers={"Authorization": "Bearer tok-9"})
    body = hook_request(
        "order-select",
        prefetch=prefetch_for(t315i_record(), templates(client, "phall-order-select")),
        orders=[order], fhir_server=FHIR, token="tok-9",
    )
    cards = client.post(SELECT, json=body).json()["cards"]
    assert [c for c in cards if c["indicator"] == "critical"]


def test_referenced_medication_sent_beside_the_order_is_not_refetched(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    order = draft_order("dasatinib")
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/med-das"}
    body = hook_request(
        "order-select",
        prefetch=prefetch_for(t315i_record(), templates(client, "phall-order-select")),
        orders=[order], fhir_server=FHIR, token="tok-9",
    )
    body["context"]["draftOrders"]["entry"].append({"resource": {
        "resourceType": "Medication", "id": "med-das", "code": {"text": "Sprycel 50 mg tablet"}}})
    cards = client.post(SELECT, json=body).json()["cards"]
    assert [c for c in cards if c["indicator"] == "critical"]
    assert httpx_mock.get_requests() == []


def test_a_custom_rules_dir_brings_its_own_value_sets(tmp_path: Path) -> None:
    """CDS_RULES_DIR with its own value sets: extraction matches with those, not the bundled."""
    import shutil

    from cds_service.paths import bundled_dir

    rules = tmp_path / "rules"
    shutil.copytree(bundled_dir("rules"), rules)
    drugs = rules / "valuesets" / "drugs.yaml"
    text = drugs.read_text(encoding="utf-8")
    assert "sprycel" in text.lower()
    drugs.write_text(text.replace("sprycel", "sprycel, dasaloc-local").replace(
        "Sprycel", "Sprycel, dasaloc-local"), encoding="utf-8")
    client = make_client(tmp_path, rules_dir=rules)
    order = {**draft_order("dasatinib"), "medicationCodeableConcept": {"text": "DASALOC-LOCAL 70 mg"}}
    body = hook_request(
        "order-select",
        prefetch=prefetch_for(t315i_record(), templates(client, "phall-order-select")),
        orders=[order],
    )
    cards = client.post(SELECT, json=body).json()["cards"]
    assert [c for c in cards if c["indicator"] == "critical"]
    # the bundled terminology does not know the local name
    default = make_client(tmp_path / "b")
    cards = default.post(SELECT, json=body).json()["cards"]
    assert not [c for c in cards if c["indicator"] == "critical"]


def test_sandbox_shaped_order_select_is_answered(client: TestClient) -> None:
    """What the official sandbox sends: draftOrders Bundle without type, a MedicationRequest
    with no intent and no medication yet, category as an object, STU3 doseQuantity,
    extension objects and unknown fields — answered 200, never a 4xx."""
    draft = {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                 "code": "outpatient"}]},
        "dosageInstruction": [{"doseQuantity": {"value": 100, "unit": "mg"},
                               "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
        "extension": {"url": "http://example.org/sandbox", "valueBoolean": True},
        "subject": {"reference": "Patient/pt-1"},
        "sandboxOnlyField": "x",
    }
    body = hook_request("order-select",
                        prefetch=prefetch_for(t315i_record(), templates(client, "phall-order-select")),
                        orders=[draft])
    del body["context"]["draftOrders"]["type"]
    r = client.post(SELECT, json=body)
    assert r.status_code == 200, r.text
    assert not [c for c in r.json()["cards"] if c["indicator"] == "critical"]  # no drug yet
    # the drug is then picked: same request, now with dasatinib as text only
    draft["medicationCodeableConcept"] = {"text": "Sprycel 100 mg tablet"}
    r = client.post(SELECT, json=body)
    assert [c for c in r.json()["cards"] if c["indicator"] == "critical"]


def test_an_unrecognised_order_code_is_logged_never_silent(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    order = {
        "resourceType": "MedicationRequest",
        "id": "draft-x",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/pt-1"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "9999999"}]
        },
    }
    body = hook_request(
        "order-select",
        prefetch=prefetch_for(t315i_record(), templates(client, "phall-order-select")),
        orders=[order],
    )
    with caplog.at_level("WARNING", logger="cds_service"):
        r = client.post(SELECT, json=body)
    assert r.status_code == 200
    assert any(
        rec.getMessage()
        == "unrecognised order code http://www.nlm.nih.gov/research/umls/rxnorm|9999999"
        for rec in caplog.records
    )
