"""Rule status (active | silent | retired): loaded and validated, honoured by the service.

A silent rule is evaluated and its cards are recorded in the store, but never returned to the
EHR; a retired rule is not evaluated at all. Proven through a real `cds-service serve`
process, and on to the feedback report.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from cds_service.check import run_check
from cds_service.errors import RuleSetError
from cds_service.paths import bundled_dir
from cds_service.ruleset.loader import load_ruleset
from cds_service.storage import IssuedCard, Store
from tests.support.cases import SERVICE_FOR_HOOK, case_request
from tests.support.rulesets import bundled_ruleset, copy_rules, firing_cases, set_status
from tests.support.serve import cli_command, running_service

CARDS = bundled_dir("cards")


def test_status_defaults_to_active_and_is_loaded(tmp_path: Path) -> None:
    rules = copy_rules(tmp_path)
    bundled = load_ruleset(rules, CARDS)
    assert all(r.status == "active" for r in bundled.rules)  # no file says otherwise today
    first, second = bundled.rules[0], bundled.rules[1]
    set_status(rules, first.id, "silent")
    set_status(rules, second.id, "retired")
    ruleset = load_ruleset(rules, CARDS)
    assert ruleset.rule(first.id).status == "silent"
    assert ruleset.rule(second.id).status == "retired"
    for hook in ("patient-view", "order-select", "order-sign"):
        evaluated = {r.id for r in ruleset.enabled(hook)}
        assert second.id not in evaluated  # retired: not evaluated
        if hook in first.hooks:
            assert first.id in evaluated  # silent: evaluated


def test_an_unknown_status_is_refused_with_its_line(tmp_path: Path) -> None:
    rules = copy_rules(tmp_path)
    rule = bundled_ruleset().rules[0]
    set_status(rules, rule.id, "paused")
    with pytest.raises(RuleSetError) as err:
        load_ruleset(rules, CARDS)
    line = next(d for d in err.value.details if "status" in d)
    text = (rules / f"{rule.id}.yaml").read_text().splitlines()
    number = int(line.split(":")[1])
    assert text[number - 1].startswith("status: paused")
    assert "'active', 'silent' or 'retired'" in line and "paused" in line


def test_check_still_runs_the_cases_of_a_silent_rule(tmp_path: Path) -> None:
    rules = copy_rules(tmp_path)
    rule = bundled_ruleset().rules[0]
    set_status(rules, rule.id, "silent")
    report = run_check(rules, CARDS)
    assert report.ok, report.format()
    row = next(r for r in report.rows if r.rule_id == rule.id)
    assert row.cases_total == len(rule.cases) == row.cases_passed


def test_a_store_written_before_the_returned_column_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE cards_issued (card_uuid TEXT PRIMARY KEY, service_id TEXT NOT NULL,
            hook_instance TEXT NOT NULL, rule_id TEXT NOT NULL, rule_version TEXT NOT NULL,
            indicator TEXT NOT NULL, issued_at REAL NOT NULL);
        INSERT INTO cards_issued VALUES ('old-card', 'svc', 'hi', 'r', '1', 'info', 1.0);
        """
    )
    db.commit()
    db.close()
    store = Store(path)
    store.record_cards("svc", "hi-2", [IssuedCard("new-silent", "r", "1", "info", returned=False)])
    [outcome] = store.outcomes_by_rule()
    assert (outcome.issued, outcome.silent) == (1, 1)  # the old card counts as returned
    store.close()
    Store(path).close()  # reopening a migrated store is a no-op


@pytest.mark.e2e
def test_silent_and_retired_rules_over_http(tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date()
    picks = firing_cases(bundled_ruleset(), today)
    assert len(picks) >= 3, "the bundled rule set needs three rules whose cases fire today"
    (silent_rule, silent_case), (retired_rule, retired_case), (active_rule, active_case) = picks[:3]
    rules = copy_rules(tmp_path)
    set_status(rules, silent_rule.id, "silent")
    set_status(rules, retired_rule.id, "retired")
    data = tmp_path / "data"
    env = {"CDS_DATA_DIR": str(data), "CDS_RULES_DIR": str(rules), "CDS_AUTH": "off"}
    responses = {}
    with running_service(tmp_path, env) as base:
        discovery = httpx.get(base + "/cds-services").json()
        for name, case in (("silent", silent_case), ("retired", retired_case),
                           ("active", active_case)):
            path, body = case_request(case, discovery)
            r = httpx.post(base + path, json=body, timeout=30)
            assert r.status_code == 200, r.text
            responses[name] = r.json()["cards"]
        store = Store(data / "cds-service.sqlite3")
        returned = {c["uuid"] for cards in responses.values() for c in cards}
        for uuid in returned:
            rule = store.card_rule(uuid)
            assert rule is not None and rule[0] not in (silent_rule.id, retired_rule.id)
        rows = store._db.execute("SELECT card_uuid, rule_id, returned FROM cards_issued").fetchall()
        silent_rows = [u for u, rid, ret in rows if rid == silent_rule.id]
        assert silent_rows, "the silent rule's card was not recorded"
        assert all(ret == 0 for _, rid, ret in rows if rid == silent_rule.id)
        assert not set(silent_rows) & returned  # recorded, never sent
        assert not [r for r in rows if r[1] == retired_rule.id]  # not evaluated at all
        assert {u for u, _, ret in rows if ret == 1} == returned
        # a clinician overrides the active rule's card, with a comment
        active_card = next(
            c for c in responses["active"] if store.card_rule(c["uuid"])[0] == active_rule.id
        )
        store.close()
        reason = active_card.get("overrideReasons", [{"code": "not-relevant",
                                                      "system": "urn:test"}])[0]
        feedback = {"feedback": [{
            "card": active_card["uuid"], "outcome": "overridden",
            "outcomeTimestamp": "2026-01-05T10:00:00Z",
            "overrideReason": {"reason": {"code": reason["code"], "system": reason["system"]},
                               "userComment": "SECRET-COMMENT-TEXT about the patient"},
        }]}
        path = f"/cds-services/{SERVICE_FOR_HOOK[active_case.hook]}/feedback"
        r = httpx.post(base + path, json=feedback, timeout=10)
        assert r.status_code == 200, r.text
    out = tmp_path / "report.html"
    res = subprocess.run(
        [*cli_command(), "feedback-report", "--html", str(out)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line.split() for line in res.stdout.splitlines()
             if line.split() and line.split()[0] in (silent_rule.id, active_rule.id)}
    # rule ver issued accepted overridden rate silent comments
    assert int(lines[silent_rule.id][6]) >= 1 and lines[silent_rule.id][2] == "0"
    assert lines[active_rule.id][4] == "1" and lines[active_rule.id][7] == "1"
    page = out.read_text(encoding="utf-8")
    assert "SECRET-COMMENT-TEXT" not in page and "SECRET-COMMENT-TEXT" not in res.stdout
    assert f'data-rule="{silent_rule.id}"' in page and retired_rule.id not in page
    display = reason.get("display")
    if display:  # the client sent no display: the report takes the rule file's
        assert html.escape(display) in page


def test_evaluate_cli_marks_silent_cards_and_leaves_them_out_of_the_response(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cds_service.cli import app
    from tests.support.cases import ROOT

    rule = bundled_ruleset().rules[0]
    case = next(c for c in rule.cases if c.expect == "fires")
    rules = copy_rules(tmp_path)
    set_status(rules, rule.id, "silent")
    monkeypatch.setenv("CDS_RULES_DIR", str(rules))
    args = ["evaluate", str(ROOT / case.fixture), "--hook", case.hook, "--as-of",
            case.as_of.isoformat(), *(["--order", case.order] if case.order else [])]
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0, text.output
    line = next(ln for ln in text.output.splitlines() if f"({rule.id} v" in ln)
    assert "silent mode" in line
    as_json = CliRunner().invoke(app, [*args, "--json"])
    summaries = [c["summary"] for c in json.loads(as_json.output)["cards"]]
    assert line.split("] ", 1)[1].split("   (")[0] not in summaries
