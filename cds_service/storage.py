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
    issued_at     REAL NOT NULL,
    returned      INTEGER NOT NULL DEFAULT 1
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

_MIGRATIONS: tuple[tuple[str, str, str], ...] = (
    # (table, column, ALTER TABLE clause) for stores written before the column existed
    ("cards_issued", "returned", "ADD COLUMN returned INTEGER NOT NULL DEFAULT 1"),
)


@dataclass(frozen=True, slots=True)
class IssuedCard:
    card_uuid: str
    rule_id: str
    rule_version: str
    indicator: str
    returned: bool = True
    """False for a card of a silent rule: recorded here, never sent to the EHR."""


@dataclass(frozen=True, slots=True)
class OverrideReasonCount:
    rule_id: str
    rule_version: str
    code: str
    system: str | None
    display: str | None
    """A display a client sent with the code (None when none did)."""
    cards: int


@dataclass(frozen=True, slots=True)
class WeekCounts:
    rule_id: str
    rule_version: str
    week: str
    """Monday of the ISO week (UTC), YYYY-MM-DD."""
    issued: int = 0
    silent: int = 0
    accepted: int = 0
    overridden: int = 0


@dataclass(frozen=True, slots=True)
class RuleOutcomes:
    rule_id: str
    rule_version: str
    issued: int
    """Cards returned to the EHR."""
    accepted: int
    overridden: int
    silent: int = 0
    """Cards of the rule in silent mode: recorded, never returned."""

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
            self._migrate()

    def _migrate(self) -> None:
        for table, column, clause in _MIGRATIONS:
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                try:
                    self._db.execute(f"ALTER TABLE {table} {clause}")
                except sqlite3.OperationalError as exc:  # another process migrated first
                    if "duplicate column" not in str(exc):
                        raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record_cards(
        self, service_id: str, hook_instance: str, cards: Iterable[IssuedCard]
    ) -> None:
        now = time.time()
        rows = [
            (
                c.card_uuid,
                service_id,
                hook_instance,
                c.rule_id,
                c.rule_version,
                c.indicator,
                now,
                int(c.returned),
            )
            for c in cards
        ]
        if not rows:
            return
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO cards_issued (card_uuid, service_id, hook_instance, "
                "rule_id, rule_version, indicator, issued_at, returned) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
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
                SELECT c.rule_id, c.rule_version,
                       COUNT(DISTINCT CASE WHEN c.returned = 1 THEN c.card_uuid END),
                       COUNT(DISTINCT CASE WHEN f.outcome = 'accepted' THEN f.card_uuid END),
                       COUNT(DISTINCT CASE WHEN f.outcome = 'overridden' THEN f.card_uuid END),
                       COUNT(DISTINCT CASE WHEN c.returned = 0 THEN c.card_uuid END)
                FROM cards_issued c LEFT JOIN feedback f ON f.card_uuid = c.card_uuid
                GROUP BY c.rule_id, c.rule_version ORDER BY c.rule_id, c.rule_version
                """
            ).fetchall()
        return [RuleOutcomes(str(r[0]), str(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def override_reasons_by_rule(self) -> list[OverrideReasonCount]:
        """Overridden cards per rule version and override reason code (most used first)."""
        with self._lock:
            rows = self._db.execute(
                """
                SELECT rule_id, rule_version, override_code, MAX(override_system),
                       MAX(override_display), COUNT(DISTINCT card_uuid) AS n
                FROM feedback
                WHERE outcome = 'overridden' AND override_code IS NOT NULL
                      AND rule_id IS NOT NULL
                GROUP BY rule_id, rule_version, override_code
                ORDER BY rule_id, rule_version, n DESC, override_code
                """
            ).fetchall()
        return [
            OverrideReasonCount(str(r[0]), str(r[1]), str(r[2]), r[3], r[4], int(r[5]))
            for r in rows
        ]

    def comment_counts_by_rule(self) -> dict[tuple[str, str], int]:
        """How many feedback items per rule version carry a user comment (never the text)."""
        with self._lock:
            rows = self._db.execute(
                """
                SELECT rule_id, rule_version, COUNT(*) FROM feedback
                WHERE rule_id IS NOT NULL AND TRIM(COALESCE(user_comment, '')) != ''
                GROUP BY rule_id, rule_version
                """
            ).fetchall()
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    def unmatched_feedback(self) -> int:
        """Feedback items about cards this store never issued."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM feedback WHERE rule_id IS NULL").fetchone()
        return int(row[0])

    def weekly_by_rule(self) -> list[WeekCounts]:
        """Per rule version and ISO week (UTC, by Monday): cards returned, silent-mode cards,
        and cards accepted / overridden (by when the feedback arrived)."""
        week = "date({}, 'unixepoch', '-6 days', 'weekday 1')"
        with self._lock:
            issued = self._db.execute(
                f"""
                SELECT rule_id, rule_version, {week.format("issued_at")} AS wk,
                       SUM(returned = 1), SUM(returned = 0)
                FROM cards_issued GROUP BY rule_id, rule_version, wk
                """
            ).fetchall()
            answered = self._db.execute(
                f"""
                SELECT rule_id, rule_version, {week.format("received_at")} AS wk,
                       COUNT(DISTINCT CASE WHEN outcome = 'accepted' THEN card_uuid END),
                       COUNT(DISTINCT CASE WHEN outcome = 'overridden' THEN card_uuid END)
                FROM feedback WHERE rule_id IS NOT NULL GROUP BY rule_id, rule_version, wk
                """
            ).fetchall()
        cells: dict[tuple[str, str, str], list[int]] = {}
        for rule_id, version, wk, returned, silent in issued:
            cell = cells.setdefault((str(rule_id), str(version), str(wk)), [0, 0, 0, 0])
            cell[0], cell[1] = int(returned), int(silent)
        for rule_id, version, wk, accepted, overridden in answered:
            cell = cells.setdefault((str(rule_id), str(version), str(wk)), [0, 0, 0, 0])
            cell[2], cell[3] = int(accepted), int(overridden)
        return [WeekCounts(*key, *cells[key]) for key in sorted(cells)]
