"""Prefetch: token rendering and validation (2.0 rules), and key resolution against pytest-httpx."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from cds_service.errors import PrefetchUnavailable
from cds_service.prefetch import (
    PrefetchResult,
    is_failed_prefetch,
    render_template,
    resolve_prefetch,
    user_tokens,
    validate_template,
)
from cds_service.settings import Settings

BASE = "https://ehr.example.org/fhir"
TOKEN = "prefetch-Token-123"
PATIENT = "pt-1"
CONTEXT: dict[str, Any] = {"patientId": PATIENT, "userId": "Practitioner/dr-7"}
TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "obs": "Observation?patient={{context.patientId}}",
}
OBSERVATIONS = [{"resourceType": "Observation", "id": f"o{i}", "status": "final"} for i in range(5)]
PATIENT_RESOURCE = {"resourceType": "Patient", "id": PATIENT}
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception", "diagnostics": "prefetch failed"}],
}


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "fhir_call_timeout_seconds": 1.0,
        "prefetch_timeout_seconds": 2.0,
        "fhir_max_pages": 5,
    }
    values.update(overrides)
    return Settings(**values)


def searchset(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def fake_fhir_server(httpx_mock: HTTPXMock, *, token: str | None, page_size: int = 100) -> None:
    """A FHIR server on BASE: Patient read and paged Observation search, token enforced."""

    def handle(request: httpx.Request) -> httpx.Response:
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return httpx.Response(401, json={"resourceType": "OperationOutcome", "issue": []})
        path = request.url.path.removeprefix("/fhir/")
        if path == f"Patient/{PATIENT}":
            return httpx.Response(200, json=PATIENT_RESOURCE)
        if path == "Observation" and request.url.params.get("patient") == PATIENT:
            offset = int(request.url.params.get("_offset", "0"))
            chunk = OBSERVATIONS[offset : offset + page_size]
            more = offset + page_size < len(OBSERVATIONS)
            next_url = f"{BASE}/Observation?patient={PATIENT}&_offset={offset + page_size}"
            return httpx.Response(200, json=searchset(chunk, next_url if more else None))
        return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})

    httpx_mock.add_callback(handle, is_reusable=True, is_optional=True)


def resolve(
    given: Mapping[str, Any],
    *,
    templates: Mapping[str, str] = TEMPLATES,
    context: Mapping[str, Any] = CONTEXT,
    fhir_server: str | None = BASE,
    fhir_authorization: Mapping[str, Any] | None = None,
    required: Collection[str] | None = None,
    **setting_overrides: Any,
) -> PrefetchResult:
    return asyncio.run(
        resolve_prefetch(
            templates,
            given,
            context,
            fhir_server=fhir_server,
            fhir_authorization=fhir_authorization,
            settings=settings(**setting_overrides),
            required=templates.keys() if required is None else required,
        )
    )


def auth(token: str = TOKEN) -> dict[str, Any]:
    return {"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": "x"}


def unavailable(given: Mapping[str, Any], **kwargs: Any) -> str:
    with pytest.raises(PrefetchUnavailable) as info:
        resolve(given, **kwargs)
    assert info.value.status == 412
    message = str(info.value)
    assert TOKEN not in message and "wrong-token" not in message
    return message


# --- the matrix: what the client sent × what server we have -----------------------------------

GIVEN_OBS = searchset(OBSERVATIONS[:2])
ONLY_OUTCOMES = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": OUTCOME}]}
STATES: dict[str, Any] = {
    "present": GIVEN_OBS,
    "null": None,
    "absent": ...,
    "operation-outcome": OUTCOME,
    "bundle-of-outcomes": ONLY_OUTCOMES,
    "paginated": ...,
}


@pytest.mark.req("28", "34", "52", "54", "60", "61")
@pytest.mark.parametrize("server", ["token", "open", "none"])
@pytest.mark.parametrize("state", list(STATES))
def test_prefetch_matrix(httpx_mock: HTTPXMock, state: str, server: str) -> None:
    fake_fhir_server(
        httpx_mock,
        token=TOKEN if server == "token" else None,
        page_size=2 if state == "paginated" else 100,
    )
    given: dict[str, Any] = {"patient": PATIENT_RESOURCE}
    if STATES[state] is not ...:
        given["obs"] = STATES[state]
    kwargs: dict[str, Any] = {
        "fhir_server": None if server == "none" else BASE,
        "fhir_authorization": auth() if server == "token" else None,
    }
    must_fetch = state in ("absent", "operation-outcome", "bundle-of-outcomes", "paginated")

    if must_fetch and server == "none":
        assert "obs: the request carries no fhirServer" in unavailable(given, **kwargs)
        assert httpx_mock.get_requests() == []
        return

    result = resolve(given, **kwargs)

    assert result.data["patient"] == PATIENT_RESOURCE
    requests = httpx_mock.get_requests()
    if not must_fetch:
        assert result.fetched == []
        assert requests == []
        assert result.data["obs"] == STATES[state]
        return
    assert result.fetched == ["obs"]
    assert result.data["obs"]["type"] == "searchset"
    assert [e["resource"]["id"] for e in result.data["obs"]["entry"]] == [
        "o0",
        "o1",
        "o2",
        "o3",
        "o4",
    ]
    assert len(requests) == (3 if state == "paginated" else 1)
    for request in requests:
        assert request.url.host == "ehr.example.org"
        if server == "token":
            assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        else:
            assert "Authorization" not in request.headers
    if state in ("operation-outcome", "bundle-of-outcomes"):
        assert any("OperationOutcome" in issue for issue in result.issues)


# --- resolution details -----------------------------------------------------------------------


@pytest.mark.req("54")
def test_fhir_authorization_without_fhir_server_is_412(httpx_mock: HTTPXMock) -> None:
    message = unavailable({}, fhir_server=None, fhir_authorization=auth())

    assert "patient: the request carries no fhirServer" in message
    assert httpx_mock.get_requests() == []


@pytest.mark.req("54", "61")
def test_wrong_token_is_412_naming_the_key(httpx_mock: HTTPXMock) -> None:
    fake_fhir_server(httpx_mock, token=TOKEN)

    message = unavailable({"patient": PATIENT_RESOURCE}, fhir_authorization=auth("wrong-token"))

    assert "obs:" in message and "HTTP 401" in message


@pytest.mark.req("54", "61")
def test_server_that_needs_a_token_but_got_none_is_412(httpx_mock: HTTPXMock) -> None:
    fake_fhir_server(httpx_mock, token=TOKEN)

    assert "HTTP 401" in unavailable({"patient": PATIENT_RESOURCE}, fhir_authorization=None)


@pytest.mark.req("54")
@pytest.mark.parametrize("status", [500, 503])
def test_server_error_is_412(httpx_mock: HTTPXMock, status: int) -> None:
    httpx_mock.add_response(status_code=status)

    assert f"obs: FHIR server answered HTTP {status}" in unavailable({"patient": PATIENT_RESOURCE})


@pytest.mark.req("54")
def test_server_answering_with_an_operation_outcome_is_412(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=OUTCOME)

    assert "obs: FHIR server answered" in unavailable({"patient": PATIENT_RESOURCE})


@pytest.mark.req("54")
def test_per_call_timeout_is_412(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("slow"))

    assert "timed out" in unavailable({"patient": PATIENT_RESOURCE})


@pytest.mark.req("54")
def test_overall_prefetch_time_limit_is_412(httpx_mock: HTTPXMock) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=searchset([]))

    httpx_mock.add_callback(slow, is_reusable=True)

    message = unavailable({}, fhir_call_timeout_seconds=10.0, prefetch_timeout_seconds=0.2)

    assert "within the 0.2s prefetch time limit" in message
    assert "patient:" in message and "obs:" in message


def test_missing_keys_are_fetched_concurrently(httpx_mock: HTTPXMock) -> None:
    arrived: list[str] = []
    both_in_flight = asyncio.Event()

    async def barrier(request: httpx.Request) -> httpx.Response:
        arrived.append(request.url.path)
        if len(arrived) == 2:
            both_in_flight.set()
        # Sequential fetching would leave the first request waiting here until its timeout.
        await asyncio.wait_for(both_in_flight.wait(), timeout=1.5)
        if request.url.path.endswith("Observation"):
            return httpx.Response(200, json=searchset([]))
        return httpx.Response(200, json=PATIENT_RESOURCE)

    httpx_mock.add_callback(barrier, is_reusable=True)

    result = resolve({}, fhir_call_timeout_seconds=3.0, prefetch_timeout_seconds=3.0)

    assert result.fetched == ["patient", "obs"]
    assert len(arrived) == 2


@pytest.mark.req("54")
def test_plain_http_fhir_server_needs_allow_http(httpx_mock: HTTPXMock) -> None:
    http_base = "http://127.0.0.1:9/fhir"
    message = unavailable({"patient": PATIENT_RESOURCE}, fhir_server=http_base)
    assert "plain http" in message
    assert httpx_mock.get_requests() == []

    httpx_mock.add_response(url=f"{http_base}/Observation?patient={PATIENT}", json=searchset([]))
    result = resolve(
        {"patient": PATIENT_RESOURCE},
        fhir_server=http_base,
        allow_http_fhir=True,
        allow_loopback_fhir=True,
    )
    assert result.fetched == ["obs"]


def test_unfillable_template_is_412_without_a_request(httpx_mock: HTTPXMock) -> None:
    templates = {"me": "PractitionerRole/{{userPractitionerRoleId}}"}

    message = unavailable({}, templates=templates)

    assert "me: its template tokens cannot be filled" in message
    assert httpx_mock.get_requests() == []


def test_token_type_other_than_bearer_is_refused(httpx_mock: HTTPXMock) -> None:
    message = unavailable({}, fhir_authorization={"access_token": TOKEN, "token_type": "MAC"})

    assert "token_type" in message
    assert httpx_mock.get_requests() == []


def test_authorization_without_access_token_is_refused(httpx_mock: HTTPXMock) -> None:
    assert "no access_token" in unavailable({}, fhir_authorization={"token_type": "Bearer"})
    assert httpx_mock.get_requests() == []


def test_a_key_not_required_that_fails_is_none_with_an_issue(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=500)

    result = resolve({"patient": PATIENT_RESOURCE}, required={"patient"})

    assert result.data == {"patient": PATIENT_RESOURCE, "obs": None}
    assert result.fetched == []
    assert result.issues == [
        "prefetch key 'obs' unavailable: FHIR server answered HTTP 500 to "
        f"'Observation?patient={PATIENT}'"
    ]


@pytest.mark.req("52")
def test_bundle_with_only_informational_outcomes_is_an_empty_result(httpx_mock: HTTPXMock) -> None:
    note = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational"}],
    }
    empty = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": note}]}

    result = resolve({"patient": PATIENT_RESOURCE, "obs": empty})

    assert result.data["obs"] == empty
    assert result.fetched == []
    assert httpx_mock.get_requests() == []


def test_query_is_sent_as_the_template_says(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=searchset([]))

    resolve({"patient": PATIENT_RESOURCE})

    (request,) = httpx_mock.get_requests()
    assert request.url.path == "/fhir/Observation"
    assert dict(request.url.params) == {"patient": PATIENT}


def test_keys_outside_the_templates_are_ignored(httpx_mock: HTTPXMock) -> None:
    result = resolve({"patient": PATIENT_RESOURCE, "obs": None, "extra": OUTCOME})

    assert list(result.data) == ["patient", "obs"]
    assert httpx_mock.get_requests() == []


@pytest.mark.req("52")
@pytest.mark.parametrize(
    ("value", "failed"),
    [
        (OUTCOME, True),
        (ONLY_OUTCOMES, True),
        (
            {
                "resourceType": "Bundle",
                "entry": [{"resource": OUTCOME}, {"resource": PATIENT_RESOURCE}],
            },
            False,
        ),
        (searchset([]), False),
        ({"resourceType": "Bundle", "type": "searchset"}, False),
        (PATIENT_RESOURCE, False),
        ("Patient/1", True),
        ([PATIENT_RESOURCE], True),
        ({"id": "no-type"}, True),
    ],
)
def test_is_failed_prefetch(value: Any, failed: bool) -> None:
    assert is_failed_prefetch(value) is failed


# --- rendering (CDS Hooks 2.0 prefetch tokens) -------------------------------------------------


@pytest.mark.req("35", "55", "59")
def test_context_tokens_are_filled() -> None:
    context = {"patientId": "123", "encounterId": "e-9", "userId": "Practitioner/1"}
    template = "Observation?patient={{context.patientId}}&encounter={{context.encounterId}}"

    assert render_template(template, context, None) == "Observation?patient=123&encounter=e-9"


@pytest.mark.req("55")
def test_template_without_tokens_is_unchanged() -> None:
    assert render_template("Observation?code=http://loinc.org|1-8", {}, None) == (
        "Observation?code=http://loinc.org|1-8"
    )


@pytest.mark.req("56")
@pytest.mark.parametrize(
    ("user_id", "token"),
    [
        ("Practitioner/abc", "userPractitionerId"),
        ("PractitionerRole/abc", "userPractitionerRoleId"),
        ("Patient/abc", "userPatientId"),
        ("RelatedPerson/abc", "userRelatedPersonId"),
    ],
)
def test_user_tokens_come_from_user_id(user_id: str, token: str) -> None:
    context = {"userId": user_id}

    assert user_tokens(context) == {token: "abc"}
    assert render_template(f"X?u={{{{{token}}}}}", context, None) == "X?u=abc"
    others = [t for t in ("userPractitionerId", "userPatientId") if t != token]
    assert render_template(f"X?u={{{{{others[0]}}}}}", context, None) is None


@pytest.mark.req("56")
def test_explicit_user_ids_are_used() -> None:
    assert render_template(
        "Practitioner/{{userPractitionerId}}", {}, {"userPractitionerId": "9"}
    ) == ("Practitioner/9")


@pytest.mark.req("56", "57", "59")
@pytest.mark.parametrize(
    "template",
    [
        "Patient/{{patientId}}",  # not a context path
        "Patient/{{Patient.id}}",  # 1.0-era FHIRPath token
        "X?p={{context.missing}}",
        "X?p={{context.draftOrders}}",  # not primitive
        "X?p={{context.selections}}",  # a list
        "X?p={{context.draftOrders.id}}",  # not root-level
        "X?p={{context.empty}}",
        "X?p={{context.nothing}}",
        "X?p={{userPractitionerId}}",  # the user has none of that type
    ],
)
def test_unfillable_tokens_give_none(template: str) -> None:
    context = {
        "patientId": "1",
        "userId": "Patient/1",
        "draftOrders": {"resourceType": "Bundle", "id": "b"},
        "selections": ["MedicationRequest/1"],
        "empty": "",
        "nothing": None,
    }
    assert render_template(template, context, None) is None


@pytest.mark.req("57")
@pytest.mark.parametrize(
    ("value", "text"), [(True, "true"), (False, "false"), (42, "42"), (1.5, "1.5")]
)
def test_primitive_values_render_as_fhir_search_text(value: Any, text: str) -> None:
    assert render_template("X?v={{context.v}}", {"v": value}, None) == f"X?v={text}"


def test_values_cannot_add_query_parameters() -> None:
    rendered = render_template(
        "Observation?code={{context.code}}", {"code": "1?_include=*&x=#/"}, None
    )

    assert rendered == "Observation?code=1%3F_include%3D%2A%26x%3D%23%2F"


@pytest.mark.parametrize(
    "value", [".", "..", "1?_include=*", "a/b", "", "x" * 65, "p t", "%2e", "Patient/1", True, 1.5]
)
def test_an_id_token_that_is_not_a_fhir_id_leaves_the_template_unfilled(value: object) -> None:
    context = {"patientId": value, "encounterId": value}
    templates = ["Patient/{{context.patientId}}", "Encounter/{{context.encounterId}}"]
    if isinstance(value, str):
        context["userId"] = f"Practitioner/{value}"
        templates.append("Practitioner/{{userPractitionerId}}")
    for template in templates:
        assert render_template(template, context) is None, (template, value)


@pytest.mark.parametrize("value", [".", ".."])
def test_a_dot_segment_is_refused_for_any_token(value: str) -> None:
    assert render_template("Observation/{{context.code}}", {"code": value}) is None


@pytest.mark.req("55")
def test_whitespace_inside_the_delimiters_is_tolerated() -> None:
    assert (
        render_template("Patient/{{ context.patientId }}", {"patientId": "7"}, None) == "Patient/7"
    )


# --- validation (discovery-time checks of our own templates) ----------------------------------


@pytest.mark.req("29", "35", "55", "56", "59")
@pytest.mark.parametrize(
    "template",
    [
        "Patient/{{context.patientId}}",
        "Observation?patient={{context.patientId}}&code=http://loinc.org|1-8&_sort=-date&_count=5",
        "Condition?patient={{context.patientId}}&clinical-status=active",
        "MedicationRequest?patient={{context.patientId}}&authoredon=ge2020-01-01",
        "Practitioner/{{userPractitionerId}}",
        "Encounter?_id={{context.encounterId}}",
    ],
)
def test_valid_templates_have_no_problems(template: str) -> None:
    assert validate_template(template, context_fields={"patientId", "userId", "encounterId"}) == []


@pytest.mark.req("56", "57", "58", "59")
@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("Patient/{{patientId}}", "is not allowed"),
        ("Patient/{{Patient.id}}", "is not allowed"),
        ("X?p={{context.draftOrders.id}}", "root-level"),
        ("X?p={{context.draftOrders}}", "not a primitive root-level field"),
        ("Observation?code:in=http://example.org/vs", ":in modifier"),
        ("Observation?code:not=1", "modifiers"),
        ("Observation?patient={{context.patientId}}&_include=Observation:patient", "_include"),
        ("Observation?_revinclude=Provenance:target", "_revinclude"),
        ("Observation?subject.name=x", "chained"),
        ("Observation?date=sa2020-01-01", "date prefix 'sa'"),
        ("Observation?_count=0", "_count must be a positive integer"),
        ("https://ehr.example.org/fhir/Patient/1", "relative"),
        ("/Patient/1", "relative"),
        ("Patient/{{context.patientId}}/Observation", "instance read"),
        ("Patient/1/_history", "instance read"),
        ("patient?x=1", "resource type"),
        ("Patient/{{context.patientId", "unbalanced"),
    ],
)
def test_template_problems_are_reported(template: str, problem: str) -> None:
    problems = validate_template(template, context_fields={"patientId", "userId"})

    assert any(problem in p for p in problems), problems


def test_missing_medication_references_lists_only_unanswered_relative_references() -> None:
    from cds_service.prefetch import missing_medication_references

    bundle = {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "MedicationRequest", "medicationReference": {"reference": "Medication/a"}}},
        {"resource": {"resourceType": "MedicationStatement", "medicationReference": {"reference": "Medication/b"}}},
        {"resource": {"resourceType": "MedicationAdministration", "medicationReference": {"reference": "#contained"}}},
        {"resource": {"resourceType": "MedicationRequest", "medicationReference": {"reference": "https://other.example.org/Medication/c"}}},
        {"resource": {"resourceType": "Medication", "id": "b"}},
    ]}
    assert missing_medication_references([bundle, None]) == ["Medication/a"]
