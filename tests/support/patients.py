"""Synthetic patients in standard coded shapes, built in code for service-level tests.

Fictional people only. The codes are those EVIDENCE.md lists as verified (SNOMED 91857003,
LOINC 46434-7 / 69548-6 / 48018-6 / 48005-3, RxNorm 475342 / 282388).
"""

from __future__ import annotations

from typing import Any

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"

DRUGS = {"dasatinib": "475342", "imatinib": "282388", "blinatumomab": "1597258"}


def patient(pid: str = "pt-1") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": "Testperson", "given": ["Alex"]}],
        "gender": "female",
        "birthDate": "1970-01-01",
    }


def all_diagnosis(pid: str = "pt-1") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "dx-all",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {
            "coding": [{"system": SNOMED, "code": "91857003", "display": "Acute lymphoblastic leukemia"}],
            "text": "B-cell acute lymphoblastic leukemia",
        },
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": "2024-01-10",
    }


def bcr_abl1(pid: str = "pt-1", value: float = 12.0, oid: str = "bcr-1", when: str = "2024-01-12") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": "46434-7"}], "text": "BCR-ABL1/ABL1 ratio"},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "%"},
    }


def t315i(pid: str = "pt-1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "var-t315i",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "69548-6"}], "text": "Genetic variant assessment"},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2024-06-01",
        "valueCodeableConcept": {"text": "Present"},
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "48018-6"}], "text": "Gene studied"},
                "valueCodeableConcept": {
                    "coding": [{"system": "http://www.genenames.org", "code": "HGNC:76", "display": "ABL1"}]
                },
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "48005-3"}], "text": "Amino acid change"},
                "valueCodeableConcept": {"text": "p.Thr315Ile"},
            },
        ],
    }


def draft_order(drug: str, oid: str = "draft-1", pid: str = "pt-1") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": oid,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": DRUGS[drug], "display": drug}],
            "text": drug,
        },
        "subject": {"reference": f"Patient/{pid}"},
    }


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r} for r in resources],
    }


def t315i_record(pid: str = "pt-1") -> list[dict[str, Any]]:
    """A Ph+ B-ALL patient with ABL1 T315I recorded."""
    return [patient(pid), all_diagnosis(pid), bcr_abl1(pid), t315i(pid)]


def prefetch_for(resources: list[dict[str, Any]], templates: dict[str, str]) -> dict[str, Any]:
    """Fill every template key from `resources` as a client would: Patient read, searchsets."""
    out: dict[str, Any] = {}
    for key, query in templates.items():
        rtype = query.split("?", 1)[0].split("/", 1)[0]
        if "?" not in query:
            out[key] = next((r for r in resources if r["resourceType"] == rtype), None)
        else:
            out[key] = searchset([r for r in resources if r["resourceType"] == rtype])
    return out


def hook_request(
    hook: str,
    *,
    prefetch: dict[str, Any] | None,
    orders: list[dict[str, Any]] = (),  # type: ignore[assignment]
    selections: list[str] | None = None,
    pid: str = "pt-1",
    fhir_server: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/doc-1", "patientId": pid}
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": o} for o in orders]}
    if hook == "order-select":
        context["selections"] = selections if selections is not None else [
            f"{o['resourceType']}/{o['id']}" for o in orders
        ]
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": context,
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    if fhir_server:
        body["fhirServer"] = fhir_server
    if token:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "cds-service",
        }
    return body
