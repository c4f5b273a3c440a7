"""The facts fixtures against their hand-written expectations (tests/facts_expectations.yaml),
each at two or more evaluation dates: the same record read at different times."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_service.facts.extract import extract_facts
from cds_service.facts.model import Fact
from cds_service.fhir_input import build_record

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fhir_fixtures" / "facts"
EXPECTATIONS: dict[str, dict[Any, dict[str, Any]]] = yaml.safe_load(
    (Path(__file__).parent / "facts_expectations.yaml").read_text(encoding="utf-8")
)
CASES = [
    (name, str(as_of), expected)
    for name, by_date in sorted(EXPECTATIONS.items())
    for as_of, expected in by_date.items()
]


def _shown(fact: Fact) -> Any:
    v = fact.value
    return sorted(v) if isinstance(v, frozenset) else v


@pytest.mark.parametrize(
    ("name", "as_of", "expected"), CASES, ids=[f"{n}@{d}" for n, d, _ in CASES]
)
def test_fixture_facts_at_date(name: str, as_of: str, expected: dict[str, Any]) -> None:
    doc = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    facts = extract_facts(build_record([doc], None), as_of=dt.date.fromisoformat(as_of))
    for key, want in expected.items():
        if key == "issues":
            for needle in want:
                assert any(needle in issue for issue in facts.issues), (needle, facts.issues)
            continue
        fact = facts.get(key)
        spec = want if isinstance(want, dict) else {"value": want}
        assert _shown(fact) == spec["value"], (key, fact)
        if "date" in spec:
            assert str(fact.date) == spec["date"], (key, fact)
        if "end" in spec:
            assert str(fact.end) == spec["end"], (key, fact)
        if "detail" in spec:
            assert spec["detail"] in (fact.detail or ""), (key, fact)
        if fact.known:
            assert fact.provenance, f"{key}: a known fact carries its provenance"


def test_every_wave2_fixture_has_expectations() -> None:
    for name in EXPECTATIONS:
        assert (FIXTURES / f"{name}.json").is_file(), name
    assert all(len(by_date) >= 2 for by_date in EXPECTATIONS.values())
