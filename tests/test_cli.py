"""The cds-service command line: facts, evaluate, check and feedback-report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cds_service.cli import app

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "fhir_fixtures").rglob("*.json"))
runner = CliRunner()


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_facts_cli_works_on_every_fixture(fixture: Path) -> None:
    pretty = runner.invoke(app, ["facts", str(fixture), "--as-of", "2025-06-01"])
    assert pretty.exit_code == 0, pretty.output
    as_json = runner.invoke(app, ["facts", str(fixture), "--json", "--as-of", "2025-06-01"])
    assert as_json.exit_code == 0, as_json.output
    assert isinstance(json.loads(as_json.output), dict)


def test_facts_cli_shows_provenance() -> None:
    out = runner.invoke(app, ["facts", str(ROOT / "fhir_fixtures/rules/fires-t315i-imatinib.json"),
                              "--as-of", "2025-06-01"]).output
    assert "abl1.t315i" in out and "Observation/" in out


def test_evaluate_cli_prints_the_critical_card(tmp_path: Path) -> None:
    fixture = str(ROOT / "fhir_fixtures/rules/fires-t315i-imatinib.json")
    res = runner.invoke(app, ["evaluate", fixture, "--hook", "order-select", "--order", "dasatinib",
                              "--as-of", "2025-06-01"])
    assert res.exit_code == 0, res.output
    assert "[CRITICAL]" in res.output and "t315i-tki-ineffective" in res.output
    res = runner.invoke(app, ["evaluate", fixture, "--hook", "order-select", "--order", "dasatinib",
                              "--json", "--as-of", "2025-06-01"])
    assert json.loads(res.output)["cards"][0]["indicator"] == "critical"


def test_evaluate_cli_refuses_unknown_hook_and_missing_file(tmp_path: Path) -> None:
    fixture = str(ROOT / "fhir_fixtures/rules/fires-t315i-imatinib.json")
    assert runner.invoke(app, ["evaluate", fixture, "--hook", "order-dispatch"]).exit_code == 2
    assert runner.invoke(app, ["facts", str(tmp_path / "missing.json")]).exit_code == 2


def test_check_cli_passes_on_the_bundled_rule_set() -> None:
    res = runner.invoke(app, ["check"])
    assert res.exit_code == 0, res.output
    assert "t315i-tki-ineffective" in res.output


def test_check_cli_fails_on_a_broken_rule_set(tmp_path: Path) -> None:
    import shutil

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    path = rules / "t315i-tki-ineffective.yaml"
    path.write_text(path.read_text().replace("op: equals", "op: eqals"))
    res = runner.invoke(app, ["check", "--rules", str(rules)])
    assert res.exit_code != 0
    assert "t315i-tki-ineffective.yaml" in res.output and "eqals" in res.output


def test_feedback_report_runs_on_an_empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path))
    res = runner.invoke(app, ["feedback-report"])
    assert res.exit_code == 0, res.output
    assert res.output.split()[0] == "rule"
