"""format_facts: works on every fixture, in both forms, and shows value, date and provenance."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cds_service.facts.catalogue import FACT_CATALOGUE
from cds_service.facts.extract import extract_facts
from cds_service.facts.model import Facts
from cds_service.facts.report import format_facts
from cds_service.fhir_input import build_record

ROOT = Path(__file__).resolve().parent.parent / "fhir_fixtures"
ALL = sorted(ROOT.rglob("*.json"))
S3 = ROOT / "facts" / "s3-t315i-extramedullary-course.json"


def facts_for(path: Path) -> Facts:
    return extract_facts(
        build_record([json.loads(path.read_text(encoding="utf-8"))], None),
        as_of=dt.date(2023, 6, 1),
    )


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(ROOT)))
def test_format_facts_on_every_fixture(path: Path) -> None:
    f = facts_for(path)
    pretty = format_facts(f, as_json=False)
    assert pretty.startswith("Known facts (")
    assert "Unknown (" in pretty
    doc = json.loads(format_facts(f, as_json=True))
    assert set(doc["facts"]) == set(FACT_CATALOGUE)
    for name, fact in doc["facts"].items():
        if fact["known"] and fact["value"] != "never":
            assert fact["provenance"], name


def test_pretty_lines_carry_value_date_and_provenance() -> None:
    pretty = format_facts(facts_for(S3), as_json=False)
    lines = pretty.splitlines()
    t315i = next(i for i, line in enumerate(lines) if line.strip().startswith("abl1.t315i"))
    assert "yes" in lines[t315i] and "(2017-02-15)" in lines[t315i]
    assert lines[t315i + 1].strip().startswith("← Observation/t315i  [hgvs]")
    das = next(line for line in lines if line.strip().startswith("exposure.dasatinib"))
    assert "past" in das and "2015-08-05 → 2017-02-20" in das and "T315I / resistance" in das
    unknown_block = pretty.split("Unknown (", 1)[1]
    assert "cns.involvement" in unknown_block
    assert "exposure.bosutinib" in pretty.split("No record of exposure", 1)[1]


def test_json_values_are_plain() -> None:
    doc = json.loads(format_facts(facts_for(S3), as_json=True))
    assert doc["facts"]["tki.any"]["value"] == ["asciminib", "dasatinib", "imatinib", "ponatinib"]
    assert doc["facts"]["bcr_abl1.latest"]["value"] == 1.2
    assert doc["facts"]["ph_status"]["date"] == "2016-01-05"
    assert doc["facts"]["cns.involvement"] == {
        "value": "unknown",
        "known": False,
        "date": None,
        "end": None,
        "detail": None,
        "provenance": [],
    }
