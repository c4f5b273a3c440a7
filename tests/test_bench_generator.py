"""The benchmark's generator makes records and requests of the asked size and shape; its
driver's command line answers --help. No timing here: timing lives in bench/run.py."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.generate import (
    HOOKS,
    PATIENT_ID,
    SELECTED_DRUG,
    generate_record,
    hook_request,
    templates_from_discovery,
)
from bench.measure import Body

REPO = Path(__file__).resolve().parent.parent

# Templates as a discovery document would carry them (the bench reads them from the service).
DISCOVERY: dict[str, Any] = {
    "services": [
        {
            "hook": hook,
            "id": f"svc-{hook}",
            "prefetch": {
                "patient": "Patient/{{context.patientId}}",
                "conditions": "Condition?patient={{context.patientId}}",
                "observations": "Observation?patient={{context.patientId}}",
                "medicationRequests": "MedicationRequest?patient={{context.patientId}}",
                "medicationStatements": "MedicationStatement?patient={{context.patientId}}",
                "medicationAdministrations": "MedicationAdministration?patient={{context.patientId}}",
                "procedures": "Procedure?patient={{context.patientId}}",
            },
        }
        for hook in HOOKS
    ]
}
TEMPLATES = templates_from_discovery(DISCOVERY)


@pytest.mark.parametrize("entries", [50, 500, 5000])
def test_record_has_the_asked_size_unique_ids_and_one_patient(entries: int) -> None:
    record = generate_record(entries)
    assert len(record) == entries
    keys = [f"{r['resourceType']}/{r['id']}" for r in record]
    assert len(set(keys)) == entries
    assert [r for r in record if r["resourceType"] == "Patient"] == [record[0]]
    for r in record[1:]:
        assert r["subject"]["reference"] == f"Patient/{PATIENT_ID}", keys


def test_record_holds_the_ph_all_story_and_realistic_bulk() -> None:
    record = generate_record(500)
    types = Counter(r["resourceType"] for r in record)
    for rtype in (
        "Condition",
        "Observation",
        "MedicationRequest",
        "MedicationStatement",
        "MedicationAdministration",
        "Procedure",
    ):
        assert types[rtype] >= 2, rtype
    assert types["Observation"] > 0.6 * len(record)  # vitals and labs are most of a chart
    codes = {
        c.get("code")
        for r in record
        for field in ("code", "medicationCodeableConcept")
        for c in (r.get(field) or {}).get("coding", [])
    }
    # B-ALL, BCR::ABL1 p190, variant, CSF blasts, imatinib, dasatinib, blinatumomab
    assert {"91857003", "52132-8", "69548-6", "35068-6", "282388", "475342", "1597258"} <= codes
    variant = next(r for r in record if r["id"] == "variant-t315i")
    assert any(c["valueCodeableConcept"].get("text") == "p.Thr315Ile" for c in variant["component"])


def test_record_is_deterministic_and_refuses_a_size_without_room_for_the_core() -> None:
    assert generate_record(500, seed=3) == generate_record(500, seed=3)
    assert generate_record(500, seed=3) != generate_record(500, seed=4)
    with pytest.raises(ValueError):
        generate_record(10)


def test_body_size_is_about_a_kilobyte_per_entry() -> None:
    body = orjson.dumps(
        hook_request("order-select", generate_record(500), TEMPLATES["order-select"])
    )
    assert 400_000 < len(body) < 800_000


@pytest.mark.parametrize("hook", HOOKS)
def test_request_prefetches_every_template_key_with_the_record(hook: str) -> None:
    record = generate_record(50)
    request = hook_request(hook, record, TEMPLATES[hook])
    assert request["hook"] == hook
    assert request["context"]["patientId"] == PATIENT_ID
    prefetch = request["prefetch"]
    assert set(prefetch) == set(TEMPLATES[hook])
    assert prefetch["patient"]["resourceType"] == "Patient"
    sent = sum(len(v["entry"]) for k, v in prefetch.items() if k != "patient") + 1
    assert sent == len(record)
    observations = prefetch["observations"]
    assert observations["type"] == "searchset"
    assert {e["resource"]["resourceType"] for e in observations["entry"]} == {"Observation"}


def test_order_hooks_carry_the_selected_tki_and_patient_view_no_orders() -> None:
    record = generate_record(50)
    select = hook_request("order-select", record, TEMPLATES["order-select"])["context"]
    orders = [e["resource"] for e in select["draftOrders"]["entry"]]
    assert select["selections"] == [f"MedicationRequest/draft-{SELECTED_DRUG}"]
    assert orders[0]["status"] == "draft"
    assert orders[0]["medicationCodeableConcept"]["coding"][0]["code"] == "475342"
    sign = hook_request("order-sign", record, TEMPLATES["order-sign"])["context"]
    assert len(sign["draftOrders"]["entry"]) == 2 and "selections" not in sign
    view = hook_request("patient-view", record, TEMPLATES["patient-view"])["context"]
    assert "draftOrders" not in view


def test_fetch_path_request_has_no_prefetch_and_hands_over_the_token() -> None:
    request = hook_request(
        "order-select", generate_record(50), None, fhir_server="http://127.0.0.1:1", token="tok"
    )
    assert "prefetch" not in request
    assert request["fhirServer"] == "http://127.0.0.1:1"
    assert request["fhirAuthorization"]["access_token"] == "tok"


def test_body_gets_a_fresh_hook_instance_on_every_send() -> None:
    body = Body.of(hook_request("order-sign", generate_record(50), TEMPLATES["order-sign"]))
    first, second = b"".join(body.parts()), b"".join(body.parts())
    assert len(first) == len(second) == body.length
    a, b = orjson.loads(first), orjson.loads(second)
    assert a["hookInstance"] != b["hookInstance"]
    a.pop("hookInstance"), b.pop("hookInstance")
    assert a == b


def test_run_help_works() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout and "--soak" in result.stdout
