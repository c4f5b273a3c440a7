"""Every JSON file under fhir_fixtures/ (recursively) is a valid FHIR R4 resource (R4B models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

FIXTURES = Path(__file__).resolve().parent.parent / "fhir_fixtures"
ALL_JSON = sorted(FIXTURES.rglob("*.json"))


def test_there_are_fixtures() -> None:
    assert len(list((FIXTURES / "facts").glob("*.json"))) >= 5


@pytest.mark.parametrize("path", ALL_JSON, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture_is_valid_r4(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    model = get_fhir_model_class(data["resourceType"])
    model.model_validate(data)
