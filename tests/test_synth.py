"""`cds-service synth`: the integrator's test kit.

Generic over the rule set (it changes): every enabled rule fires for some patient and stays
silent for another; every rule case is replayed by a patient and still holds; expected.json is
what the real HTTP service answers for every patient × hook × order; every record is valid
R4; the kit is deterministic for a seed; the Bulk Data export holds the same patients.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from bench.generate import prefetch_for
from cds_service.api import create_app
from cds_service.case_patients import scenarios
from cds_service.paths import cards_dir, rules_dir
from cds_service.ruleset.loader import RuleSet, load_ruleset
from cds_service.service import CDSService
from cds_service.settings import Settings
from cds_service.synth.kit import RECORD_DRAFTS
from tests.support.app import TestClient

AS_OF = dt.date(2027, 3, 15)  # not a case's evaluation date: timelines must move
SEED = 11


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    settings = Settings()
    return load_ruleset(rules_dir(settings), cards_dir(settings))


@pytest.fixture(scope="module")
def size(ruleset: RuleSet) -> int:
    return len(scenarios(ruleset)) + 8


def _synth(
    out: Path, patients: int, *extra: str, seed: int = SEED, hashseed: str = "1"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    return subprocess.run(
        [
            sys.executable, "-m", "cds_service", "synth", "--patients", str(patients),
            "--out", str(out), "--seed", str(seed), "--as-of", AS_OF.isoformat(), *extra,
        ],
        capture_output=True, text=True, timeout=600, check=False, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, size: int) -> Path:
    out = tmp_path_factory.mktemp("kit") / "bundle"
    run = _synth(out, size)
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory, size: int) -> Path:
    out = tmp_path_factory.mktemp("kit") / "ndjson"
    run = _synth(out, size, "--format", "ndjson")
    assert run.returncode == 0, run.stderr
    return out


def _expected(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "expected.json").read_text("utf-8"))
    return data


def _bundles(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text("utf-8")) for p in sorted((out / "bundles").glob("*.json"))}


def _valid(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_every_enabled_rule_fires_for_a_patient_and_stays_silent_for_another(
    kit: Path, ruleset: RuleSet
) -> None:
    expected = _expected(kit)
    enabled = {r.id for r in ruleset.rules if r.enabled}
    assert set(expected["coverage"]) == enabled
    for rule_id, seen in expected["coverage"].items():
        assert seen["fires"], f"{rule_id} fires for no patient"
        assert seen["silent"], f"{rule_id} is silent for no patient"
    fired = {
        (p["id"], card["rule"])
        for p in expected["patients"]
        for call in p["calls"]
        for card in call["cards"]
    }
    for rule_id, seen in expected["coverage"].items():
        assert all((pid, rule_id) in fired for pid in seen["fires"])
        assert not any((pid, rule_id) in fired for pid in seen["silent"])


def test_every_rule_case_is_replayed_by_a_patient_and_still_holds(
    kit: Path, ruleset: RuleSet
) -> None:
    expected = _expected(kit)
    held = {
        (p["source"], r["rule"], r["hook"], r["order"], r["expect"])
        for p in expected["patients"]
        for r in p.get("replays", [])
        if r["holds"]
    }
    for rule in ruleset.rules:
        if not rule.enabled:
            continue
        for case in rule.cases:
            assert (case.fixture, rule.id, case.hook, case.order, case.expect) in held, (
                rule.id,
                case,
            )


def test_patients_are_case_patients_and_controls_in_several_shapes_with_noise(kit: Path) -> None:
    expected = _expected(kit)
    patients = expected["patients"]
    kinds = Counter(p["kind"] for p in patients)
    assert kinds["control"] >= 1 and kinds["case"] >= len(patients) - kinds["control"]
    assert len({p["shape"] for p in patients}) >= 2
    assert sum(p["noise"] > 0 for p in patients) > len(patients) // 2
    bundles = _bundles(kit)
    for p in patients:
        resources = [e["resource"] for e in bundles[p["id"]]["entry"]]
        if p["kind"] == "control":
            texts = json.dumps([r for r in resources if r["resourceType"] == "Condition"]).lower()
            assert "leuk" not in texts and "lymphoblastic" not in texts
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        assert patient["id"] == p["id"]


def test_every_record_is_valid_r4_and_loads_by_transaction(kit: Path) -> None:
    bundles = _bundles(kit)
    assert len(bundles) == len(_expected(kit)["patients"])
    for pid, bundle in bundles.items():
        assert bundle["type"] == "transaction"
        _valid(bundle)
        keys = set()
        for entry in bundle["entry"]:
            _valid(entry["resource"])
            key = f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
            assert entry["request"] == {"method": "PUT", "url": key}
            keys.add(key)
        for entry in bundle["entry"]:  # every literal reference resolves inside the bundle
            for ref in _references(entry["resource"]):
                assert ref.startswith("#") or ref in keys, (pid, ref)
    for name, order in _expected(kit)["orders"].items():
        _valid(order)
        assert order["status"] == "draft", name


def _references(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                out.append(value)
            elif key != "contained":
                out.extend(_references(value))
    elif isinstance(node, list):
        for item in node:
            out.extend(_references(item))
    return out


def test_expected_is_what_the_http_service_answers_for_every_call(
    kit: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", auth="off")
    service = CDSService.from_settings(settings)
    service.today = lambda: AS_OF
    client = TestClient(create_app(settings, service))
    discovery = client.get("/cds-services").json()["services"]
    by_hook = {s["hook"]: s for s in discovery}
    expected = _expected(kit)
    bundles = _bundles(kit)
    checked = 0
    for patient in expected["patients"]:
        resources = [e["resource"] for e in bundles[patient["id"]]["entry"]]
        for call in patient["calls"]:
            svc = by_hook[call["hook"]]
            context: dict[str, Any] = {"patientId": patient["id"], "userId": "Practitioner/x"}
            if call["order"] is not None:
                if call["order"] == RECORD_DRAFTS:
                    drafts = call["draftOrders"]
                else:
                    text = json.dumps(expected["orders"][call["order"]])
                    drafts = [json.loads(text.replace("{patientId}", patient["id"]))]
                context["draftOrders"] = {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [{"resource": d} for d in drafts],
                }
                if call["hook"] == "order-select":
                    context["selections"] = [f"MedicationRequest/{d['id']}" for d in drafts]
            body = {
                "hookInstance": f"synth-{checked}",
                "hook": call["hook"],
                "context": context,
                "prefetch": prefetch_for(resources, svc["prefetch"]),
            }
            r = client.post(f"/cds-services/{svc['id']}", json=body)
            assert r.status_code == 200, r.text
            got = sorted((c["indicator"], c["summary"]) for c in r.json()["cards"])
            want = sorted((c["indicator"], c["summary"]) for c in call["cards"])
            assert got == want, (patient["id"], call["hook"], call["order"])
            checked += 1
    assert checked == sum(len(p["calls"]) for p in expected["patients"])


def test_the_same_seed_gives_the_same_bytes_and_another_seed_another_kit(
    kit: Path, tmp_path: Path, size: int
) -> None:
    again = tmp_path / "again"
    assert _synth(again, size, hashseed="4242").returncode == 0  # another set order too
    files = sorted(p.relative_to(kit) for p in kit.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (kit / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    assert _synth(other, size, seed=SEED + 1).returncode == 0
    assert (other / "expected.json").read_bytes() != (kit / "expected.json").read_bytes()


def test_the_ndjson_export_holds_the_same_patients(kit: Path, export: Path) -> None:
    manifest = json.loads((export / "manifest.json").read_text("utf-8"))
    assert manifest["transactionTime"].startswith(AS_OF.isoformat())
    assert manifest["error"] == [] and manifest["requiresAccessToken"] is False
    exported: list[dict[str, Any]] = []
    for item in manifest["output"]:
        lines = (export / item["url"]).read_text("utf-8").splitlines()
        assert len(lines) == item["count"]
        for line in lines:
            resource = json.loads(line)
            assert resource["resourceType"] == item["type"]
            _valid(resource)
            exported.append(resource)
    assert {p.name for p in export.glob("*.ndjson")} == {i["url"] for i in manifest["output"]}
    bundled = [e["resource"] for b in _bundles(kit).values() for e in b["entry"]]
    key = lambda r: (r["resourceType"], r["id"])  # noqa: E731
    assert sorted(map(json.dumps, sorted(exported, key=key))) == sorted(
        map(json.dumps, sorted(bundled, key=key))
    )
    assert _expected(export)["patients"] == _expected(kit)["patients"]


def test_too_few_patients_and_a_used_folder_are_refused(tmp_path: Path, size: int) -> None:
    few = _synth(tmp_path / "few", 3)
    assert few.returncode == 2 and "too few" in few.stderr and "at least" in few.stderr
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    run = _synth(used, size)
    assert run.returncode == 2 and "not empty" in run.stderr
    assert (used / "keep.txt").read_text() == "mine"
    bad = _synth(tmp_path / "bad", size, "--format", "csv")
    assert bad.returncode == 2
