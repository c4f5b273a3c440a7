"""The embedded SQLite store: which rule produced each card issued, and clinicians' feedback.

No PHI is stored: no patient id, no request body; only card uuids, hook instances, rule ids
and versions, and the feedback outcome with its override reason.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .wire import FeedbackItem

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cards_issued (
    card_uuid     TEXT PRIMARY KEY,
    service_id    TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    rule_version  TEXT NOT NULL,
    indicator     TEXT NOT NULL,
    issued_at     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    service_id           TEXT NOT NULL,
    card_uuid            TEXT NOT NULL,
    outcome              TEXT NOT NULL,
    outcome_timestamp    TEXT NOT NULL,
    accepted_suggestions TEXT,
    override_code        TEXT,
    override_system      TEXT,
    override_display     TEXT,
    user_comment         TEXT,
    rule_id              TEXT,
    rule_version         TEXT,
    received_at          REAL NOT NULL,
    PRIMARY KEY (service_id, card_uuid, outcome, outcome_timestamp)
);
"""


@dataclass(frozen=True, slots=True)
class IssuedCard:
    card_uuid: str
    rule_id: str
    rule_version: str
    indicator: str


@dataclass(frozen=True, slots=True)
class RuleOutcomes:
    rule_id: str
    rule_version: str
    issued: int
    accepted: int
    overridden: int

    @property
    def override_rate(self) -> float | None:
        answered = self.accepted + self.overridden
        return None if answered == 0 else self.overridden / answered


class Store:
    """A small, thread-safe wrapper around one SQLite connection (WAL mode)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record_cards(
        self, service_id: str, hook_instance: str, cards: Iterable[IssuedCard]
    ) -> None:
        now = time.time()
        rows = [
            (c.card_uuid, service_id, hook_instance, c.rule_id, c.rule_version, c.indicator, now)
            for c in cards
        ]
        if not rows:
            return
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO cards_issued VALUES (?, ?, ?, ?, ?, ?, ?)", rows
            )

    def card_rule(self, card_uuid: str) -> tuple[str, str] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT rule_id, rule_version FROM cards_issued WHERE card_uuid = ?", (card_uuid,)
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def record_feedback(self, service_id: str, items: Iterable[FeedbackItem]) -> int:
        """Store feedback; a repeat of the same item is ignored. Returns rows newly stored."""
        now = time.time()
        stored = 0
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for item in items:
                    rule = self._db.execute(
                        "SELECT rule_id, rule_version FROM cards_issued WHERE card_uuid = ?",
                        (item.card,),
                    ).fetchone()
                    reason = item.overrideReason.reason if item.overrideReason else None
                    accepted = (
                        json.dumps([s.id for s in item.acceptedSuggestions])
                        if item.acceptedSuggestions
                        else None
                    )
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO feedback VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            service_id,
                            item.card,
                            item.outcome,
                            item.outcomeTimestamp,
                            accepted,
                            reason.code if reason else None,
                            reason.system if reason else None,
                            reason.display if reason else None,
                            item.overrideReason.userComment if item.overrideReason else None,
                            rule[0] if rule else None,
                            rule[1] if rule else None,
                            now,
                        ),
                    )
                    stored += cur.rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored

    def feedback_rows(self, card_uuid: str) -> list[Mapping[str, object]]:
        with self._lock:
            cur = self._db.execute("SELECT * FROM feedback WHERE card_uuid = ?", (card_uuid,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def outcomes_by_rule(self) -> list[RuleOutcomes]:
        """Cards issued and feedback outcomes per rule version, for override-rate reports."""
        with self._lock:
            rows = self._db.execute(
                """
                SELECT c.rule_id, c.rule_version, COUNT(DISTINCT c.card_uuid),
                       COUNT(DISTINCT CASE WHEN f.outcome = 'accepted' THEN f.card_uuid END),
                       COUNT(DISTINCT CASE WHEN f.outcome = 'overridden' THEN f.card_uuid END)
                FROM cards_issued c LEFT JOIN feedback f ON f.card_uuid = c.card_uuid
                GROUP BY c.rule_id, c.rule_version ORDER BY c.rule_id, c.rule_version
                """
            ).fetchall()
        return [RuleOutcomes(str(r[0]), str(r[1]), r[2], r[3], r[4]) for r in rows]
