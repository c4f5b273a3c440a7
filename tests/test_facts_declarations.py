"""A fact is one declaration: the checks that keep readers, reducers, value sets and the
catalogue from drifting apart (an emitted key with no reducer, a reducer with no reader, a
concept named in code that the value sets lack, an undeclared evidence value, a facts.yaml
with an error) — each fails loudly, never silently."""

from __future__ import annotations

import ast
import datetime as dt
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cds_service.cli import app
from cds_service.errors import RuleSetError
from cds_service.facts import catalogue
from cds_service.facts.catalogue import FACT_CATALOGUE, FACT_SOURCES, REDUCED_KEYS, declare
from cds_service.facts.concepts import CONCEPT_IDS, missing_concepts
from cds_service.facts.evidence import Context, Ev, UndeclaredEvidence
from cds_service.facts.extract import _READERS, EMITTED
from cds_service.facts.model import Provenance
from cds_service.facts.parameters import default_parameters, load_parameters
from cds_service.facts.reducers import YesOnly
from cds_service.fhir_input import build_record
from cds_service.ruleset.loader import load_ruleset
from cds_service.terminology import default_terminology

ROOT = Path(__file__).resolve().parent.parent
FACTS_PKG = ROOT / "cds_service" / "facts"


def test_every_evidence_key_has_a_reducer_and_a_reader() -> None:
    assert set(Ev) == REDUCED_KEYS == EMITTED


def _added_keys(module_file: Path) -> set[str]:
    """Ev members passed as the first argument of ctx.add(...) in a module."""
    keys: set[str] = set()
    for node in ast.walk(ast.parse(module_file.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add"
            and node.args
            and isinstance(node.args[0], ast.Attribute)
            and isinstance(node.args[0].value, ast.Name)
            and node.args[0].value.id == "Ev"
        ):
            keys.add(node.args[0].attr)
    return keys


@pytest.mark.parametrize("reader", _READERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_a_reader_declares_exactly_the_keys_it_emits(reader: object) -> None:
    file = Path(reader.__file__)  # type: ignore[attr-defined]
    declared = {k.name for k in reader.EMITS}  # type: ignore[attr-defined]
    used = _added_keys(file)
    # a reader may emit through a shared helper of another reader (emit_result, transplant_evidence)
    assert used <= declared, f"{file.name} emits {sorted(used - declared)} without declaring them"


def test_every_declared_fact_has_a_reducer_or_is_an_order_fact() -> None:
    for name, spec in FACT_CATALOGUE.items():
        assert spec.reducer is not None or name.startswith("order."), name
        assert spec.sources or name.startswith("order."), f"{name} reads no resource type"


def test_derived_facts_take_their_sources_from_what_they_need() -> None:
    assert set(FACT_SOURCES["frontline"]) >= {"Condition", "Procedure", "MedicationRequest"}
    assert set(FACT_SOURCES["cd19.timing"]) >= {"Observation", "Condition"}
    assert "DiagnosticReport" in FACT_SOURCES["ph_status"]


def test_declare_refuses_a_duplicate_or_an_undeclared_need() -> None:
    with pytest.raises(AssertionError, match="declared twice"):
        declare("relapse", "tri", "again", ("yes",), reducer=YesOnly(Ev.RELAPSE))
    with pytest.raises(AssertionError, match="not declared before it"):
        declare("x.new", "tri", "x", ("yes",), reducer=YesOnly(Ev.RELAPSE, needs=("no.such",)))
    assert "x.new" not in catalogue.FACT_CATALOGUE


def test_undeclared_evidence_is_a_programming_error() -> None:
    ctx = Context(
        default_terminology(), build_record([], None), dt.date(2024, 1, 1), default_parameters()
    )
    with pytest.raises(UndeclaredEvidence):
        ctx.add(Ev.CNS, "maybe", None, Provenance("Observation/x", "m", "text"))


def test_no_concept_id_literal_in_the_readers() -> None:
    """Readers name concepts through facts.concepts, so the value-set check sees them all."""
    offenders: list[str] = []
    for file in sorted(FACTS_PKG.glob("*.py")):
        if file.name == "concepts.py":
            continue
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Compare)
                and isinstance(node.left, ast.Constant)
                and node.left.value in CONCEPT_IDS
                and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops)
            ):
                offenders.append(f"{file.name}:{node.lineno} {node.left.value!r}")
    assert not offenders, offenders


def test_shipped_value_sets_define_every_concept_the_readers_need() -> None:
    assert missing_concepts(default_terminology()) == []


def _copy_rules(tmp: Path) -> Path:
    rules = tmp / "rules"
    shutil.copytree(ROOT / "rules", rules)
    return rules


def test_a_rule_set_whose_value_sets_lack_a_needed_concept_does_not_load(tmp_path: Path) -> None:
    rules = _copy_rules(tmp_path)
    cns = rules / "valuesets" / "cns.yaml"
    cns.write_text(
        cns.read_text(encoding="utf-8").replace("id: csf_blasts", "id: csf_blast_count"),
        encoding="utf-8",
    )
    with pytest.raises(RuleSetError) as info:
        load_ruleset(rules, ROOT / "cards")
    assert any("csf_blasts" in line and "not defined" in line for line in info.value.details)


def test_facts_yaml_problems_are_reported_with_file_line_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "facts.yaml"
    bad.write_text(
        "exposure:\n  administration_current_days: -3\n  stale_after_days: 365\n"
        "  supersede_within: [tki]\n  colour: red\ncd19: {positive_percent: 20}\n",
        encoding="utf-8",
    )
    with pytest.raises(RuleSetError) as info:
        load_parameters(bad)
    joined = "\n".join(info.value.details)
    assert f"{tmp_path.name}/facts.yaml:2: exposure.administration_current_days" in joined
    assert f"{tmp_path.name}/facts.yaml:5: exposure.colour: unexpected key" in joined
    assert "bcr_abl1: required key missing" in joined


def test_facts_yaml_windows_change_the_facts(tmp_path: Path) -> None:
    """The staleness window is data: the rule set's facts.yaml is what extraction uses."""
    from cds_service.decide import evaluate_bundle

    rules = _copy_rules(tmp_path)
    text = (rules / "facts.yaml").read_text(encoding="utf-8")
    (rules / "facts.yaml").write_text(
        text.replace("stale_after_days: 365", "stale_after_days: 10000"), encoding="utf-8"
    )
    ruleset = load_ruleset(rules, ROOT / "cards")
    assert ruleset.fact_parameters.exposure.stale_after_days == 10000
    from cds_service.cards import CardRenderer

    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p"}},
            {
                "resource": {
                    "resourceType": "MedicationStatement",
                    "id": "s",
                    "status": "active",
                    "medicationCodeableConcept": {"text": "dasatinib"},
                    "subject": {"reference": "Patient/p"},
                    "effectivePeriod": {"start": "2015-01-01"},
                }
            },
        ],
    }
    decision = evaluate_bundle(
        ruleset,
        CardRenderer(ruleset, ROOT / "cards"),
        bundle,
        "patient-view",
        None,
        dt.date(2025, 1, 1),
    )
    assert decision.facts.get("exposure.dasatinib").value == "current"


def test_facts_cli_uses_the_rule_sets_own_value_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = _copy_rules(tmp_path)
    drugs = rules / "valuesets" / "drugs.yaml"
    drugs.write_text(
        drugs.read_text(encoding="utf-8").replace(
            "text: [dasatinib, sprycel,", "text: [dasatinib, sprycel, localdasa,", 1
        ),
        encoding="utf-8",
    )
    bundle = tmp_path / "b.json"
    bundle.write_text(
        '{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p"}},'
        '{"resource":{"resourceType":"MedicationStatement","id":"s","status":"active","medicationCodeableConcept":{"text":"LOCALDASA 100"},'
        '"subject":{"reference":"Patient/p"},"effectivePeriod":{"start":"2025-01-01"}}}]}',
        encoding="utf-8",
    )
    runner = CliRunner()
    monkeypatch.setenv("CDS_RULES_DIR", str(rules))
    out = runner.invoke(app, ["facts", str(bundle), "--as-of", "2025-03-01"])
    assert out.exit_code == 0, out.output
    assert "exposure.dasatinib" in out.output and "current" in out.output
    monkeypatch.delenv("CDS_RULES_DIR")
    out = runner.invoke(app, ["facts", str(bundle), "--as-of", "2025-03-01"])
    assert "exposure.dasatinib" not in out.output.split("Unknown (")[0]
