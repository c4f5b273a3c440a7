"""The population dry-run: a synthetic Bulk Data export (bench/population.py) through
`cds-service dry-run`, with the same answers as the live service and the same bytes whatever
runs the shards (one process, a process pool, a Dask LocalCluster)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import stat
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from bench.population import write_bundles, write_ndjson_export
from cds_service.cli import app
from cds_service.decide import synthetic_order
from cds_service.dryrun import DEFAULT_ORDERS
from cds_service.dryrun.shard import FIRINGS_HEADER, patient_key
from cds_service.fhir_input import iter_resources
from cds_service.storage import Store
from tests.support.cases import SERVICE_FOR_HOOK
from tests.support.patients import hook_request, prefetch_for
from tests.support.rulesets import bundled_ruleset
from tests.support.serve import cli_command, running_service

runner = CliRunner()
AS_OF = "2025-06-01"
PATIENTS = 120
# more leukaemia than a real service has, so that many rules fire in a small export
TEST_MIX = {"other": 0.4, "cml": 0.1, "ph_negative_all": 0.1, "b_all_no_ph_result": 0.1,
            "ph_all": 0.3}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "ndjson"
    kinds = write_ndjson_export(out, PATIENTS, seed=7, mix=TEST_MIX)
    assert kinds.get("ph_all", 0) + kinds.get("ph_all_scenario", 0) > 10
    return out


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("key") / "pseudonym.key"


def _dry_run(export: Path, out: Path, key_file: Path, *extra: str) -> Any:
    res = runner.invoke(app, ["dry-run", str(export), "--out", str(out), "--as-of", AS_OF,
                              "--key-file", str(key_file), "--no-progress", *extra])
    assert res.exit_code == 0, res.output
    return res


def _firings(out: Path) -> list[dict[str, str]]:
    with (out / "firings.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def single(export: Path, key_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("jobs1")
    _dry_run(export, out, key_file, "--jobs", "1")
    return out


def test_summary_and_firings_agree_and_cover_the_rule_set(single: Path) -> None:
    summary = json.loads((single / "summary.json").read_text())
    ruleset = bundled_ruleset()
    evaluated = [r for r in ruleset.rules if r.evaluated]
    assert summary["patients"] == PATIENTS and summary["as_of"] == AS_OF
    assert summary["orders"] == list(DEFAULT_ORDERS)
    assert set(summary["rules"]) == {r.id for r in evaluated}
    rows = _firings(single)
    assert rows and list(rows[0]) == list(FIRINGS_HEADER)
    patients: dict[str, set[str]] = defaultdict(set)
    by_hook: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in rows:
        patients[row["rule_id"]].add(row["patient_key"])
        by_hook[(row["rule_id"], row["hook"])].add(row["patient_key"])
        rule = ruleset.rule(row["rule_id"])
        assert row["hook"] in rule.hooks and row["rule_version"] == rule.version
        assert (row["order"] == "") == (row["hook"] == "patient-view")
    for rule in evaluated:
        entry = summary["rules"][rule.id]
        assert entry["fired"] == len(patients[rule.id])
        assert entry["per_1000"] == round(1000 * entry["fired"] / PATIENTS, 2)
        assert entry["cards"] == sum(1 for r in rows if r["rule_id"] == rule.id)
        for hook, count in entry["by_hook"].items():
            assert count == len(by_hook[(rule.id, hook)])
    assert sum(1 for r in summary["rules"].values() if r["fired"]) >= len(evaluated) // 2
    keys = [(r["patient_key"], r["hook"], r["order"], r["rule_id"]) for r in rows]
    assert len(keys) == len(set(keys))  # one row per patient × hook × order × card


def test_outputs_carry_no_identity(single: Path, export: Path) -> None:
    text = (single / "firings.csv").read_text() + (single / "summary.json").read_text()
    text += (single / "report.html").read_text()
    assert "pop-0" not in text  # patient ids
    names = set()
    for line in (export / "Patient.ndjson").read_text().splitlines():
        for name in json.loads(line).get("name", []):
            names.add(name["family"])
    assert names and not any(n in text for n in names)
    assert "MRN-" not in text


def test_report_has_a_chart_of_every_rule(single: Path) -> None:
    page = (single / "report.html").read_text()
    assert "<svg" in page
    for rule_id in json.loads((single / "summary.json").read_text())["rules"]:
        assert f'data-rule="{rule_id}"' in page and rule_id in page.split("<svg", 1)[1]


@pytest.mark.e2e
def test_identical_across_jobs_and_dask(
    export: Path, key_file: Path, single: Path, tmp_path: Path
) -> None:
    from distributed import LocalCluster

    _dry_run(export, tmp_path / "jobs2", key_file, "--jobs", "2")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        _dry_run(export, tmp_path / "dask", key_file, "--scheduler", cluster.scheduler_address)
    for name in ("summary.json", "firings.csv", "report.html"):
        reference = (single / name).read_bytes()
        assert (tmp_path / "jobs2" / name).read_bytes() == reference, name
        assert (tmp_path / "dask" / name).read_bytes() == reference, name
    run = json.loads((tmp_path / "dask" / "run.json").read_text())
    assert run["scheduler"].startswith("tcp://127.0.0.1") and run["patients"] == PATIENTS


def test_bundles_give_the_same_firings_as_ndjson(
    tmp_path: Path, key_file: Path, single: Path
) -> None:
    bundles = tmp_path / "bundles"
    write_bundles(bundles, PATIENTS, seed=7, mix=TEST_MIX)
    _dry_run(bundles, tmp_path / "out", key_file, "--jobs", "1")
    assert (tmp_path / "out" / "firings.csv").read_bytes() == (single / "firings.csv").read_bytes()
    mine = json.loads((tmp_path / "out" / "summary.json").read_text())
    theirs = json.loads((single / "summary.json").read_text())
    assert mine["rules"] == theirs["rules"] and mine["input"]["format"] == "bundles"


@pytest.mark.e2e
def test_the_dry_run_is_what_the_live_service_answers(
    export: Path, key_file: Path, tmp_path: Path
) -> None:
    """Leukaemia patients of the export, each hook and order, over HTTP: the same cards."""
    today = dt.datetime.now(dt.UTC).date().isoformat()  # the live service decides as of today
    out = tmp_path / "today"
    res = runner.invoke(app, ["dry-run", str(export), "--out", str(out), "--as-of", today,
                              "--key-file", str(key_file), "--jobs", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    expected: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for row in _firings(out):
        expected[(row["patient_key"], row["hook"], row["order"])].add(row["rule_id"])
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    shared: dict[str, dict[str, Any]] = {}
    for path in sorted(export.glob("*.ndjson")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r["resourceType"] == "Medication":
                shared[f"Medication/{r['id']}"] = r
                continue
            pid = r["id"] if r["resourceType"] == "Patient" else r["subject"]["reference"][8:]
            by_patient[pid].append(r)
    sick = [pid for pid, rs in by_patient.items()
            if any("leukemia" in json.dumps(r.get("code", "")).lower() for r in rs)][:12]
    assert len(sick) >= 8
    key = bytes.fromhex(key_file.read_text().strip())
    data = tmp_path / "data"
    env = {"CDS_DATA_DIR": str(data), "CDS_AUTH": "off"}
    compared = 0
    with running_service(tmp_path, env) as base:
        discovery = httpx.get(base + "/cds-services").json()
        store = Store(data / "cds-service.sqlite3")
        for pid in sick:
            resources = by_patient[pid]
            refs = {r["medicationReference"]["reference"] for r in resources
                    if "medicationReference" in r}
            for hook, service_id in SERVICE_FOR_HOOK.items():
                templates = next(s for s in discovery["services"]
                                 if s["id"] == service_id)["prefetch"]
                prefetch = prefetch_for(resources, templates)
                key_of_meds = next(k for k, q in templates.items()
                                   if q.startswith("MedicationRequest?"))
                prefetch[key_of_meds]["entry"] += [{"resource": shared[r]} for r in sorted(refs)]
                for order in (DEFAULT_ORDERS if hook != "patient-view" else ("",)):
                    drafts = [synthetic_order(order, pid)] if order else []
                    body = hook_request(hook, prefetch=prefetch, orders=drafts, pid=pid)
                    r = httpx.post(f"{base}/cds-services/{service_id}", json=body, timeout=30)
                    assert r.status_code == 200, r.text
                    got = {store.card_rule(c["uuid"])[0] for c in r.json()["cards"]}
                    want = expected.get((patient_key(key, pid), hook, order), set())
                    assert got == want, (pid, hook, order)
                    compared += 1
        store.close()
    assert compared == len(sick) * (1 + 2 * len(DEFAULT_ORDERS))
    assert any(expected.values())


def test_bad_lines_are_counted_and_skipped(tmp_path: Path, key_file: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "in"
    write_ndjson_export(folder, 5, seed=1)
    with (folder / "Observation.ndjson").open("a", encoding="utf-8") as fh:
        fh.write("{not json\n")
        fh.write('["a list"]\n')
        fh.write('{"resourceType": "Observation", "id": "big", "note": "' + "x" * 5000 + '"}\n')
        fh.write('{"resourceType": "Observation", "id": "nobody", "status": "final"}\n')
        fh.write('{"resourceType": "Observation", "id": "lost", "subject": '
                 '{"reference": "Patient/not-exported"}}\n')
    (folder / "Encounter.ndjson").write_text('{"resourceType": "Encounter", "id": "e1"}\n')
    monkeypatch.setenv("CDS_MAX_BODY_BYTES", "4000")
    out = tmp_path / "out"
    _dry_run(folder, out, key_file, "--jobs", "1")
    summary = json.loads((out / "summary.json").read_text())
    got = summary["input"]
    assert summary["patients"] == 5
    assert (got["invalid_lines"], got["oversized"], got["without_patient"]) == (2, 1, 1)
    assert got["not_read_by_type"] == {"Encounter": 1}
    assert got["patients_without_patient_resource"] == 1 and got["resources_of_those"] == 1
    assert any("Observation.ndjson" in p and "not JSON" in p for p in got["problems"])
    assert "x" * 50 not in json.dumps(summary)  # positions, never content


def test_refusals(tmp_path: Path, key_file: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing to see")
    res = runner.invoke(app, ["dry-run", str(empty), "--out", str(tmp_path / "o"),
                              "--key-file", str(key_file), "--no-progress"])
    assert res.exit_code == 2 and "no FHIR resources" in res.output
    res = runner.invoke(app, ["dry-run", str(empty / "notes.txt"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not a folder" in res.output
    res = runner.invoke(app, ["dry-run", str(empty), "--out", str(tmp_path / "o"),
                              "--order", "paracetamol", "--key-file", str(key_file)])
    assert res.exit_code == 2 and "paracetamol" in res.output
    res = runner.invoke(app, ["dry-run", str(empty), "--out", str(tmp_path / "o"),
                              "--jobs", "0"])
    assert res.exit_code == 2


def test_pseudonym_key_is_private_and_stable(tmp_path: Path, export: Path) -> None:
    monkey_data = tmp_path / "data"
    env = {**os.environ, "CDS_DATA_DIR": str(monkey_data)}
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        res = subprocess.run(
            [*cli_command(), "dry-run", str(export), "--out", str(out), "--as-of", AS_OF,
             "--jobs", "1", "--order", "dasatinib"],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )
        assert res.returncode == 0, res.stderr
        assert "patients/s" in res.stderr  # the progress bar, with its rate
        outs.append((out / "firings.csv").read_bytes())
    key = monkey_data / "dry-run-pseudonym.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert outs[0] == outs[1]
    other = tmp_path / "other.key"
    other.write_text("00" * 32)
    _dry_run(export, tmp_path / "c", other, "--jobs", "1", "--order", "dasatinib")
    assert (tmp_path / "c" / "firings.csv").read_bytes() != outs[0]


def test_patients_of_a_bundle_resolve_through_full_urls(tmp_path: Path, key_file: Path) -> None:
    """A transaction-style Bundle whose references are urn:uuid fullUrls."""
    src = json.loads((Path(__file__).parent.parent / "fhir_fixtures/rules").glob(
        "fires-*.json").__next__().read_text())
    resources = [r for r in iter_resources(src) if r.get("status") != "draft"]
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    entries = []
    for i, r in enumerate(resources):
        r = json.loads(json.dumps(r).replace(f'"Patient/{pid}"', '"urn:uuid:00000000-0000-0000-0000-000000000001"'))
        url = ("urn:uuid:00000000-0000-0000-0000-000000000001" if r["resourceType"] == "Patient"
               else f"urn:uuid:00000000-0000-0000-0000-{i + 100:012d}")
        entries.append({"fullUrl": url, "resource": r})
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "one.json").write_text(json.dumps({"resourceType": "Bundle", "type": "transaction",
                                                 "entry": entries}))
    out = tmp_path / "out"
    _dry_run(folder, out, key_file, "--jobs", "1")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["patients"] == 1 and summary["input"]["without_patient"] == 0
    assert summary["input"]["resources"] == len(resources)


def test_only_its_own_work_folder_is_touched(tmp_path: Path, key_file: Path) -> None:
    folder = tmp_path / "in"
    write_ndjson_export(folder, 3, seed=2)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "keep.txt").write_text("someone's file")
    _dry_run(folder, tmp_path / "out", key_file, "--work-dir", str(scratch), "--jobs", "1")
    assert (scratch / "keep.txt").read_text() == "someone's file"
    assert list(scratch.iterdir()) == [scratch / "keep.txt"]  # the shards are gone
    _dry_run(folder, tmp_path / "out2", key_file, "--keep-work", "--jobs", "1")
    kept = tmp_path / "out2" / ".dry-run-work"
    assert any(kept.glob("shard-*.tsv")) and (kept / "references.sqlite3").is_file()


def test_the_benchmark_script_runs_end_to_end(tmp_path: Path) -> None:
    import sys

    res = subprocess.run(
        [sys.executable, "bench/dryrun.py", "--patients", "30", "--jobs", "1",
         "--export", str(tmp_path / "export")],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("bench-dryrun: patients=30 ") and "identical=yes" in last
    assert "jobs1_patients_per_cpu_s=" in last
