"""Prefetch against the real node test FHIR server on 127.0.0.1 (a fictional patient)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import pytest

from cds_service.errors import PrefetchUnavailable
from cds_service.prefetch import PrefetchResult, resolve_prefetch
from cds_service.settings import Settings
from tests.support.fhir_server import running_fhir_server

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token-Zx81"
PATIENT_ID = "e2e-pt-1"
OTHER_ID = "e2e-pt-2"
TEST_SYSTEM = "urn:example:phall-cds:e2e"  # fictional codes: the server only has to match them


def _ref(patient: str) -> dict[str, str]:
    return {"reference": f"Patient/{patient}"}


def _resources() -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": PATIENT_ID, "name": [{"family": "Fictional"}]},
        {"resourceType": "Patient", "id": OTHER_ID, "name": [{"family": "Other"}]},
    ]
    for i in range(7):
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"obs-{i}",
                "status": "final",
                "code": {"coding": [{"system": TEST_SYSTEM, "code": f"lab-{i % 2}"}]},
                "subject": _ref(PATIENT_ID),
                "effectiveDateTime": f"2024-0{i + 1}-15",
            }
        )
    resources.append(
        {
            "resourceType": "Observation",
            "id": "obs-other",
            "status": "final",
            "code": {"text": "other patient's result"},
            "subject": _ref(OTHER_ID),
        }
    )
    for i in range(2):
        resources.append(
            {
                "resourceType": "Condition",
                "id": f"cond-{i}",
                "code": {"text": f"fictional condition {i}"},
                "subject": _ref(PATIENT_ID),
            }
        )
    for i in range(3):
        resources.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"medrx-{i}",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": f"fictional drug {i}"},
                "subject": _ref(PATIENT_ID),
            }
        )
    return resources


TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}&_count=2",
    "labs": f"Observation?patient={{{{context.patientId}}}}&code={TEST_SYSTEM}|lab-1&_sort=-date",
    "conditions": "Condition?patient={{context.patientId}}",
    "medications": "MedicationRequest?subject={{context.patientId}}&status=active",
}
CONTEXT = {"patientId": PATIENT_ID, "userId": "Practitioner/e2e-dr"}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_fhir_server(_resources(), TOKEN, base_path="/fhir/r4") as base_url:
        yield base_url


def resolve(
    fhir_server: str | None,
    token: str | None,
    given: Mapping[str, Any] | None = None,
    *,
    required: Collection[str] = TEMPLATES.keys(),
    **overrides: Any,
) -> PrefetchResult:
    settings = Settings(allow_http_fhir=True, allow_loopback_fhir=True, **overrides)
    return asyncio.run(
        resolve_prefetch(
            TEMPLATES,
            given or {},
            CONTEXT,
            fhir_server=fhir_server,
            fhir_authorization=None
            if token is None
            else {"access_token": token, "token_type": "Bearer"},
            settings=settings,
            required=required,
        )
    )


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


@pytest.mark.req("34", "54", "60", "61")
def test_absent_keys_are_fetched_with_the_bearer_token(server: str) -> None:
    result = resolve(server, TOKEN)

    assert result.fetched == list(TEMPLATES)
    assert result.issues == []
    assert result.data["patient"]["id"] == PATIENT_ID
    # 7 observations, _count=2: four pages assembled into one searchset Bundle.
    assert sorted(ids(result.data["observations"])) == [f"obs-{i}" for i in range(7)]
    assert result.data["observations"]["total"] == 7
    assert ids(result.data["labs"]) == ["obs-5", "obs-3", "obs-1"]
    assert sorted(ids(result.data["conditions"])) == ["cond-0", "cond-1"]
    assert sorted(ids(result.data["medications"])) == ["medrx-0", "medrx-1", "medrx-2"]


@pytest.mark.req("28", "52")
def test_only_the_absent_or_failed_keys_are_fetched(server: str) -> None:
    given_conditions = {"resourceType": "Bundle", "type": "searchset"}
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    given = {
        "patient": {"resourceType": "Patient", "id": PATIENT_ID},
        "conditions": given_conditions,
        "medications": None,
        "observations": outcome,
    }

    result = resolve(server, TOKEN, given)

    assert result.fetched == ["observations", "labs"]
    assert result.data["conditions"] is given_conditions
    assert result.data["medications"] is None
    assert len(ids(result.data["observations"])) == 7


@pytest.mark.req("54", "61")
def test_wrong_token_is_prefetch_unavailable(server: str) -> None:
    with pytest.raises(PrefetchUnavailable) as info:
        resolve(server, "not-the-token")

    assert "HTTP 401" in str(info.value)
    assert "not-the-token" not in str(info.value)


@pytest.mark.req("54")
def test_more_pages_than_allowed_is_prefetch_unavailable(server: str) -> None:
    with pytest.raises(PrefetchUnavailable) as info:
        resolve(server, TOKEN, fhir_max_pages=2)

    assert "observations: FHIR search" in str(info.value)
    assert "more than 3 pages" in str(info.value)


@pytest.mark.req("54")
def test_stopped_server_is_prefetch_unavailable() -> None:
    with running_fhir_server(_resources(), TOKEN) as base_url:
        pass  # the server is stopped when the block ends

    with pytest.raises(PrefetchUnavailable) as info:
        resolve(base_url, TOKEN)

    assert "server unreachable" in str(info.value)


def test_open_server_is_fetched_without_a_token() -> None:
    with running_fhir_server(_resources(), None) as base_url:
        result = resolve(base_url, None, required=["patient"])

    assert result.fetched == list(TEMPLATES)
    assert result.data["patient"]["id"] == PATIENT_ID
