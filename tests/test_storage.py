"""The SQLite store: cards issued with their rule version, feedback stored idempotently."""

from __future__ import annotations

from pathlib import Path

from cds_service.storage import IssuedCard, Store
from cds_service.wire import FeedbackItem


def test_feedback_is_idempotent_and_joined_to_rule(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.record_cards("svc", "hi-1", [IssuedCard("card-1", "t315i", "2", "critical")])
    item = FeedbackItem.model_validate(
        {"card": "card-1", "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z",
         "overrideReason": {"reason": {"code": "other"}, "userComment": "n/a"}}
    )
    assert store.record_feedback("svc", [item]) == 1
    assert store.record_feedback("svc", [item]) == 0  # a repeat stores nothing new
    rows = store.feedback_rows("card-1")
    assert len(rows) == 1
    assert rows[0]["rule_id"] == "t315i" and rows[0]["rule_version"] == "2"
    assert rows[0]["override_code"] == "other"
    [outcome] = store.outcomes_by_rule()
    assert (outcome.issued, outcome.overridden, outcome.override_rate) == (1, 1, 1.0)


def test_store_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    Store(path).record_cards("svc", "hi", [IssuedCard("c", "r", "1", "info")])
    assert Store(path).card_rule("c") == ("r", "1")
