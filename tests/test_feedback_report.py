"""The feedback report: per rule version counts, override reasons, comments counted (never
quoted), silent-mode firings and the weekly trend."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cds_service import storage
from cds_service.cli import app
from cds_service.feedback_report import build_report, format_text, render_html
from cds_service.storage import IssuedCard, Store
from cds_service.wire import FeedbackItem
from tests.support.rulesets import bundled_ruleset

MONDAY = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)  # a Monday


def _at(monkeypatch: pytest.MonkeyPatch, when: dt.datetime) -> None:
    monkeypatch.setattr(storage.time, "time", lambda: when.timestamp())


def _override(card: str, code: str, display: str | None = None,
              comment: str | None = None) -> FeedbackItem:
    reason: dict[str, object] = {"code": code, "system": "urn:phall-cds:override-reason"}
    if display:
        reason["display"] = display
    return FeedbackItem.model_validate({
        "card": card, "outcome": "overridden", "outcomeTimestamp": "2026-01-06T00:00:00Z",
        "overrideReason": {"reason": reason, "userComment": comment},
    })


def _accept(card: str) -> FeedbackItem:
    return FeedbackItem.model_validate({
        "card": card, "outcome": "accepted", "outcomeTimestamp": "2026-01-06T00:00:00Z",
        "acceptedSuggestions": [{"id": "s-1"}],
    })


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    rule = bundled_ruleset().rules[0]
    code = rule.override_reasons[0].code if rule.override_reasons else "not-relevant"
    s = Store(tmp_path / "cds-service.sqlite3")
    _at(monkeypatch, MONDAY)
    s.record_cards("svc", "h1", [IssuedCard(f"a{i}", rule.id, rule.version, "warning")
                                 for i in range(4)])
    s.record_cards("svc", "h1", [IssuedCard("quiet", "other-rule", "2", "info", returned=False)])
    s.record_feedback("svc", [_override("a0", code, comment="Patient Jane said no"),
                              _override("a1", code), _override("a2", "other-code", "Other"),
                              _accept("a3")])
    _at(monkeypatch, MONDAY + dt.timedelta(weeks=3, days=2))  # two empty weeks in between
    s.record_cards("svc", "h2", [IssuedCard("b0", rule.id, rule.version, "warning")])
    s.record_feedback("svc", [_override("b0", code, comment="   "),
                              _override("never-issued", code)])
    return s


def test_numbers_per_rule_version(store: Store) -> None:
    ruleset = bundled_ruleset()
    rule = ruleset.rules[0]
    report = build_report(store, ruleset)
    row = next(r for r in report.rows if r.rule_id == rule.id)
    assert (row.issued, row.accepted, row.overridden, row.silent) == (5, 1, 4, 0)
    assert row.override_rate == pytest.approx(4 / 5)
    assert row.comments == 1  # a blank comment is no comment
    assert row.title == rule.title and row.status == rule.status
    top = row.reasons[0]
    assert top.cards == 3 and top.code != "other-code"
    if rule.override_reasons:  # no display was sent: the rule file's display is shown
        assert top.display == rule.override_reasons[0].display
    assert [r.display for r in row.reasons if r.code == "other-code"] == ["Other"]
    quiet = next(r for r in report.rows if r.rule_id == "other-rule")
    assert (quiet.issued, quiet.silent, quiet.title, quiet.status) == (0, 1, None, None)
    assert report.unmatched_feedback == 1


def test_weekly_trend_fills_empty_weeks(store: Store) -> None:
    report = build_report(store, None)
    assert report.weeks == ("2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26")
    row = next(r for r in report.rows if r.rule_id != "other-rule")
    assert row.weeks["2026-01-05"].issued == 4 and row.weeks["2026-01-05"].overridden == 3
    assert row.weeks["2026-01-26"].issued == 1 and row.weeks["2026-01-26"].overridden == 1
    assert "2026-01-12" not in row.weeks


def test_text_and_html_never_show_comment_text(store: Store) -> None:
    report = build_report(store, bundled_ruleset())
    text, page = format_text(report), render_html(report)
    for output in (text, page):
        assert "Jane" not in output
    assert text.split()[0] == "rule"
    assert "<svg" in page and "2026-01-26" in page
    assert not re.search(r"<(script|link|img)\b[^>]*(src|href)=\"https?:", page)  # self-contained


def test_cli_writes_the_html(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.close()
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path))
    out = tmp_path / "out" / "feedback.html"
    res = CliRunner().invoke(app, ["feedback-report", "--html", str(out), "--top", "1"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "other-code" not in res.output  # only the top reason listed
