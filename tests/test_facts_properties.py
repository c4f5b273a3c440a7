"""Properties: entry order, unrelated resources and other patients never change the facts;
extraction is pure; a 500-entry record extracts within the performance budget."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.facts.extract import extract_facts
from cds_service.facts.model import Facts
from cds_service.fhir_input import build_record

FIXTURES = sorted(
    (Path(__file__).resolve().parent.parent / "fhir_fixtures" / "facts").glob("*.json")
)
AS_OF = dt.date(2023, 6, 1)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def patient_id(doc: dict[str, Any]) -> str:
    return next(
        e["resource"]["id"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient"
    )


def snapshot(f: Facts) -> tuple[Any, ...]:
    return (dict(f.values), f.orders, f.context_orders)


def facts(doc: dict[str, Any]) -> Facts:
    return extract_facts(build_record([doc], patient_id(doc)), as_of=AS_OF)


UNRELATED_WORDS = [
    "asthma",
    "ankle sprain",
    "influenza vaccine",
    "vitamin D",
    "appendectomy",
    "headache",
    "sinusitis",
]


def unrelated(i: int, word: str, kind: str, pid: str) -> dict[str, Any]:
    subject = {"reference": f"Patient/{pid}"}
    code = {"coding": [{"system": "http://example.org/local", "code": f"U{i}"}], "text": word}
    if kind == "Condition":
        return {
            "resourceType": "Condition",
            "id": f"u{i}",
            "code": code,
            "subject": subject,
            "onsetDateTime": "2020",
        }
    if kind == "Observation":
        return {
            "resourceType": "Observation",
            "id": f"u{i}",
            "status": "final",
            "code": code,
            "subject": subject,
            "effectiveDateTime": "2021-01-01",
            "valueQuantity": {"value": i, "unit": "mg/dL"},
        }
    if kind == "MedicationRequest":
        return {
            "resourceType": "MedicationRequest",
            "id": f"u{i}",
            "status": "active",
            "intent": "order",
            "subject": subject,
            "medicationCodeableConcept": code,
        }
    return {
        "resourceType": "Procedure",
        "id": f"u{i}",
        "status": "completed",
        "code": code,
        "subject": subject,
    }


def other_patient_copy(resource: dict[str, Any], i: int) -> dict[str, Any]:
    r = copy.deepcopy(resource)
    r["id"] = f"other-{i}"
    for key in ("subject", "patient"):
        if key in r:
            r[key] = {"reference": "Patient/someone-else"}
    return r


@settings(max_examples=60, deadline=None)
@given(
    fixture=st.sampled_from(FIXTURES),
    seed=st.randoms(use_true_random=False),
    extra=st.lists(
        st.tuples(
            st.sampled_from(UNRELATED_WORDS),
            st.sampled_from(["Condition", "Observation", "MedicationRequest", "Procedure"]),
        ),
        max_size=8,
    ),
    copies=st.integers(min_value=0, max_value=4),
)
def test_order_noise_and_other_patients_do_not_change_facts(
    fixture: Path, seed: Any, extra: list[tuple[str, str]], copies: int
) -> None:
    doc = load(fixture)
    expected = snapshot(facts(doc))
    pid = patient_id(doc)
    entries = list(doc["entry"])
    clinical = [e["resource"] for e in entries if "subject" in e["resource"]]
    entries += [{"resource": unrelated(i, w, k, pid)} for i, (w, k) in enumerate(extra)]
    entries += [{"resource": other_patient_copy(r, i)} for i, r in enumerate(clinical[:copies])]
    seed.shuffle(entries)
    assert snapshot(facts({**doc, "entry": entries})) == expected


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_extraction_is_pure_and_repeatable(path: Path) -> None:
    doc = load(path)
    before = json.dumps(doc, sort_keys=True)
    rec = build_record([doc], patient_id(doc))
    first = extract_facts(rec, as_of=AS_OF)
    second = extract_facts(rec, as_of=AS_OF)
    assert snapshot(first) == snapshot(second)
    assert first.issues == second.issues
    assert json.dumps(doc, sort_keys=True) == before


def big_record(n: int = 500) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    docs = [load(p) for p in FIXTURES]
    i = 0
    while len(entries) < n:
        for doc in docs:
            for e in doc["entry"]:
                r = copy.deepcopy(e["resource"])
                if r["resourceType"] == "Patient":
                    continue
                r["id"] = f"{r['id']}-{i}"
                if "subject" in r:
                    r["subject"] = {"reference": "Patient/perf"}
                if r["resourceType"] == "Observation" and "valueQuantity" in r:
                    r["valueQuantity"] = {**r["valueQuantity"], "value": (i % 17) / 10}
                entries.append({"resource": r})
                i += 1
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "id": "perf"}}, *entries[:n]],
    }


def test_500_entries_extract_fast() -> None:
    doc = big_record()
    rec = build_record([doc], "perf")
    assert len(rec) == 501
    extract_facts(rec, as_of=AS_OF)  # warm the text caches as a server would be
    timings = []
    for _ in range(15):
        t0 = time.perf_counter()
        extract_facts(rec, as_of=AS_OF)
        timings.append(time.perf_counter() - t0)
    median = sorted(timings)[len(timings) // 2]
    # target on the reference machine: well under 5 ms; generous here so CI noise cannot flake it
    assert median < 0.025, f"median extraction {median * 1000:.1f} ms"


def realistic_record(n: int = 500) -> dict[str, Any]:
    """About 80% routine data (vitals, chemistry, other drugs and problems), 20% leukemia care."""
    clinical = big_record(n // 5)["entry"][1:]
    routine: list[dict[str, Any]] = []
    loinc = ["8867-4", "8480-6", "2345-7", "718-7", "2160-0", "6690-2", "777-3", "1742-6"]
    for i in range(n - len(clinical)):
        kind = i % 10
        subject = {"reference": "Patient/perf"}
        if kind < 7:
            r: dict[str, Any] = {
                "resourceType": "Observation",
                "id": f"lab{i}",
                "status": "final",
                "subject": subject,
                "code": {
                    "coding": [{"system": "http://loinc.org", "code": loinc[i % len(loinc)]}],
                    "text": f"routine {i % 8}",
                },
                "effectiveDateTime": f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}",
                "valueQuantity": {"value": i % 97, "unit": "mg/dL"},
            }
        elif kind < 9:
            r = {
                "resourceType": "MedicationRequest",
                "id": f"med{i}",
                "status": "active",
                "intent": "order",
                "subject": subject,
                "medicationCodeableConcept": {
                    "text": ["ondansetron 8 mg", "acyclovir 400 mg", "posaconazole 300 mg"][i % 3]
                },
            }
        else:
            r = {
                "resourceType": "Condition",
                "id": f"cond{i}",
                "subject": subject,
                "code": {"text": ["Nausea", "Neutropenic fever", "Mucositis"][i % 3]},
            }
        routine.append({"resource": r})
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "id": "perf"}}, *clinical, *routine],
    }


def test_500_entry_realistic_record_extracts_well_under_budget() -> None:
    rec = build_record([realistic_record()], "perf")
    assert len(rec) == 501
    extract_facts(rec, as_of=AS_OF)
    timings = []
    for _ in range(15):
        t0 = time.perf_counter()
        extract_facts(rec, as_of=AS_OF)
        timings.append(time.perf_counter() - t0)
    median = sorted(timings)[len(timings) // 2]
    # about 3 ms measured on the 2-core reference machine under load; room for a busy CI host
    assert median < 0.010, f"median extraction {median * 1000:.1f} ms"
