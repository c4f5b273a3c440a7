"""Rule-case fixtures as patients: relabelling and moving a timeline keep what a record says."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.case_patients import fhir_id, relabel, shift_date, shift_dates, split_drafts


@pytest.mark.parametrize(
    ("value", "days", "moved"),
    [
        ("2025-06-01", 10, "2025-06-11"),
        ("2024-02-28", 1, "2024-02-29"),
        ("2025-06-01T09:30:00-05:00", 365, "2026-06-01T09:30:00-05:00"),
        ("2025-03", 61, "2025-05"),
        ("2025-03", -31, "2025-02"),
        ("2019", 700, "2021"),
        ("not a date", 5, "not a date"),
        ("2025-02-30", 1, "2025-02-30"),
    ],
)
def test_shift_date_keeps_precision(value: str, days: int, moved: str) -> None:
    assert shift_date(value, days) == moved


def test_shift_dates_moves_date_elements_only() -> None:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "2024",
        "effectiveDateTime": "2024-01-10",
        "valueString": "2024-01-10",
        "effectivePeriod": {"start": "2024-01-10", "end": "2024-01"},
        "component": [{"valueDateTime": "2024-01-10"}],
    }
    (moved,) = shift_dates([obs], 31)
    assert moved["effectiveDateTime"] == "2024-02-10"
    assert moved["valueString"] == "2024-01-10" and moved["id"] == "2024"
    assert moved["effectivePeriod"] == {"start": "2024-02-10", "end": "2024-02"}
    assert moved["component"][0]["valueDateTime"] == "2024-02-10"
    assert obs["effectiveDateTime"] == "2024-01-10"  # a copy


def test_relabel_renames_ids_and_follows_references() -> None:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "pt-1"},
        {"resourceType": "Medication", "id": "m1"},
        {
            "resourceType": "MedicationRequest",
            "id": "rx-1",
            "status": "draft",
            "subject": {"reference": "Patient/pt-1"},
            "medicationReference": {"reference": "Medication/m1"},
            "basedOn": [{"reference": "https://ehr.example.org/fhir/MedicationRequest/rx-0"}],
            "contained": [{"resourceType": "Medication", "id": "c"}],
            "note": [{"text": "Patient/pt-1 is named in text only"}],
        },
    ]
    out = relabel(resources, "new-patient", "x7")
    assert [r["id"] for r in out] == ["new-patient", "x7-m1", "x7-rx-1"]
    rx = out[2]
    assert rx["subject"]["reference"] == "Patient/new-patient"
    assert rx["medicationReference"]["reference"] == "Medication/x7-m1"
    assert rx["basedOn"][0]["reference"].endswith("/rx-0")  # not one of ours: untouched
    assert rx["note"][0]["text"] == "Patient/pt-1 is named in text only"
    assert resources[0]["id"] == "pt-1"
    record, drafts = split_drafts(out)
    assert [r["id"] for r in drafts] == ["x7-rx-1"] and len(record) == 2


def test_fhir_id_keeps_to_the_grammar() -> None:
    assert fhir_id("demo-t315i imatinib/π") == "demo-t315i-imatinib"
    assert len(fhir_id("x" * 80)) == 64
    assert fhir_id("...") == "x"
