"""Properties: entry order, unrelated resources and other patients never change the facts;
extraction is pure; an uninterpretable variant never yields "no"; a later negative assessment
never leaves a status active. (Speed is measured by bench/, not by timed unit tests.)"""

from __future__ import annotations

import copy
import datetime as dt
import json
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


# -- time and interpretation properties ---------------------------------------------------------

LATER = "2099-01-01"
"""After every date in the fixtures."""

_GARBAGE = st.text(alphabet="acgtACGT0123456789_:.>()del ins dup?", min_size=0, max_size=24).filter(
    lambda s: "315" not in s and "944" not in s and "1001" not in s
)


def _uninterpretable_variant(
    pid: str, change: str, presence: str | None, loinc: str
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "prop-variant",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "69548-6"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": LATER,
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "48018-6"}]},
                "valueCodeableConcept": {
                    "coding": [{"system": "http://www.genenames.org", "code": "HGNC:76"}]
                },
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
                "valueString": change,
            },
        ],
    }
    if presence is not None:
        obs["valueCodeableConcept"] = {"coding": [{"system": "http://loinc.org", "code": presence}]}
    return obs


@settings(max_examples=80, deadline=None)
@given(
    fixture=st.sampled_from(FIXTURES),
    change=_GARBAGE,
    presence=st.sampled_from([None, "LA9633-4", "LA9634-2", "LA18198-4", "LA11884-6"]),
    loinc=st.sampled_from(["48004-6", "48005-3", "81290-9", "81252-9"]),
)
def test_an_uninterpretable_variant_never_yields_no(
    fixture: Path, change: str, presence: str | None, loinc: str
) -> None:
    doc = load(fixture)
    pid = patient_id(doc)
    entries = [*doc["entry"], {"resource": _uninterpretable_variant(pid, change, presence, loinc)}]
    f = facts({**doc, "entry": entries})
    assert f.get("abl1.t315i").value != "no"


def _negative_csf(pid: str, i: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"prop-csf-{i}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "35068-6"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": LATER,
        "valueQuantity": {"value": 0, "unit": "%"},
    }


def _negative_site(pid: str, site: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"prop-{site}",
        "status": "final",
        "code": {"text": f"{site} examination"},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": LATER,
        "valueString": {
            "testis": "No testicular involvement",
            "skin": "No skin involvement",
            "other": "No extramedullary disease",
        }[site],
    }


@settings(max_examples=60, deadline=None)
@given(fixture=st.sampled_from(FIXTURES), seed=st.randoms(use_true_random=False))
def test_a_later_negative_assessment_never_leaves_a_status_active(fixture: Path, seed: Any) -> None:
    doc = load(fixture)
    pid = patient_id(doc)
    entries = [*doc["entry"], {"resource": _negative_csf(pid, 1)}]
    entries += [{"resource": _negative_site(pid, s)} for s in ("testis", "skin", "other")]
    seed.shuffle(entries)
    f = facts({**doc, "entry": entries})
    assert f.get("cns.involvement").value in ("no", "cleared")
    assert f.get("extramedullary.involvement").value in ("no", "cleared")
    assert f.get("extramedullary.sites").value == frozenset()
