"""The service's pre-normalisation skip of unread Observations never changes a fact."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cds_service.facts.extract import extract_facts, unread_observation
from cds_service.facts.report import fact_json
from cds_service.fhir_input import build_record
from cds_service.terminology import default_terminology

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "fhir_fixtures").rglob("*.json"))
AS_OF = dt.date(2025, 6, 1)
TERM = default_terminology()


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_skipping_unread_observations_changes_no_fact(fixture: Path) -> None:
    bundle = json.loads(fixture.read_text(encoding="utf-8"))
    noise = [
        {"resourceType": "Observation", "id": f"hr-{i}", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
         "valueQuantity": {"value": 70, "unit": "/min"}}
        for i in range(20)
    ]
    full = build_record([bundle, *noise], None)
    skipped = build_record([bundle, *noise], None, skip=lambda r: unread_observation(TERM, r))
    assert len(skipped) < len(full)
    a = extract_facts(full, as_of=AS_OF)
    b = extract_facts(skipped, as_of=AS_OF)
    assert {n: fact_json(f) for n, f in a.values.items()} == {n: fact_json(f) for n, f in b.values.items()}
