"""`cds-service feedback-report`: how clinicians answered each rule version's cards.

Per rule id and version, from the SQLite store: cards returned to the EHR, accepted,
overridden, the override rate (overridden / answered), the most used override reasons with
their displays, how many feedback items carried a user comment (a count only: comment text
never appears in a report), the cards of the rule in silent mode (recorded, never returned)
and a weekly trend (ISO weeks, UTC, Monday first). As text for the terminal, or as one
self-contained HTML page.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from .charts import line_chart
from .pages import render_page
from .ruleset.loader import RuleSet
from .ruleset.schema import Rule
from .storage import RuleOutcomes, Store, WeekCounts

TOP_REASONS = 5
TABLE_WEEKS = 12
"""Weeks shown per rule in the HTML table (the chart shows every week)."""


@dataclass(frozen=True)
class Reason:
    code: str
    system: str | None
    display: str
    cards: int


@dataclass(frozen=True)
class RuleVersionRow:
    rule_id: str
    rule_version: str
    title: str | None
    """Title of the rule in the loaded rule set (None when the rule is not in it any more)."""
    status: str | None
    """Status of the rule in the loaded rule set, when that is the same version."""
    issued: int
    accepted: int
    overridden: int
    silent: int
    comments: int
    reasons: tuple[Reason, ...]
    weeks: dict[str, WeekCounts] = field(default_factory=dict)

    @property
    def override_rate(self) -> float | None:
        answered = self.accepted + self.overridden
        return None if answered == 0 else self.overridden / answered


@dataclass(frozen=True)
class FeedbackReport:
    generated: dt.datetime
    rows: tuple[RuleVersionRow, ...]
    weeks: tuple[str, ...]
    """Every ISO week (its Monday) from the first to the last with activity."""
    unmatched_feedback: int
    """Feedback about cards the store never issued (shown, never attributed)."""

    def totals(self) -> dict[str, int]:
        keys = ("issued", "accepted", "overridden", "silent", "comments")
        return {k: sum(int(getattr(r, k)) for r in self.rows) for k in keys}


def _week_range(weeks: set[str]) -> tuple[str, ...]:
    if not weeks:
        return ()
    first, last = dt.date.fromisoformat(min(weeks)), dt.date.fromisoformat(max(weeks))
    count = (last - first).days // 7 + 1
    return tuple((first + dt.timedelta(weeks=i)).isoformat() for i in range(count))


def build_report(
    store: Store, ruleset: RuleSet | None = None, *, top: int = TOP_REASONS
) -> FeedbackReport:
    """The report's numbers; `ruleset` (optional) adds titles, statuses and reason displays."""
    outcomes: list[RuleOutcomes] = store.outcomes_by_rule()
    comments = store.comment_counts_by_rule()
    reasons: dict[tuple[str, str], list[Reason]] = defaultdict(list)
    for r in store.override_reasons_by_rule():
        display = r.display or _rule_display(ruleset, r.rule_id, r.code)
        reasons[(r.rule_id, r.rule_version)].append(Reason(r.code, r.system, display, r.cards))
    weekly: dict[tuple[str, str], dict[str, WeekCounts]] = defaultdict(dict)
    for w in store.weekly_by_rule():
        weekly[(w.rule_id, w.rule_version)][w.week] = w
    rows = []
    for o in outcomes:
        key = (o.rule_id, o.rule_version)
        rule = _rule(ruleset, o.rule_id)
        rows.append(
            RuleVersionRow(
                rule_id=o.rule_id,
                rule_version=o.rule_version,
                title=rule.title if rule else None,
                status=rule.status if rule and rule.version == o.rule_version else None,
                issued=o.issued,
                accepted=o.accepted,
                overridden=o.overridden,
                silent=o.silent,
                comments=comments.get(key, 0),
                reasons=tuple(reasons.get(key, [])[:top]),
                weeks=weekly.get(key, {}),
            )
        )
    all_weeks = {w for row in rows for w in row.weeks}
    return FeedbackReport(
        generated=dt.datetime.now(dt.UTC).replace(microsecond=0),
        rows=tuple(rows),
        weeks=_week_range(all_weeks),
        unmatched_feedback=store.unmatched_feedback(),
    )


def _rule(ruleset: RuleSet | None, rule_id: str) -> Rule | None:
    if ruleset is None:
        return None
    try:
        return ruleset.rule(rule_id)
    except KeyError:
        return None


def _rule_display(ruleset: RuleSet | None, rule_id: str, code: str) -> str:
    """The rule file's display of an override code, when the client sent none."""
    rule = _rule(ruleset, rule_id)
    for reason in rule.override_reasons if rule else ():
        if reason.code == code:
            return reason.display
    return code


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def format_text(report: FeedbackReport) -> str:
    """The terminal table: one line per rule version, then its top override reasons."""
    lines = [
        f"{'rule':40} {'ver':>6} {'issued':>7} {'accepted':>9} {'overridden':>11} {'rate':>6} "
        f"{'silent':>7} {'comments':>9}"
    ]
    for r in report.rows:
        lines.append(
            f"{r.rule_id:40} {r.rule_version:>6} {r.issued:>7} {r.accepted:>9} "
            f"{r.overridden:>11} {_rate(r.override_rate):>6} {r.silent:>7} {r.comments:>9}"
        )
        for reason in r.reasons:
            lines.append(f"{'':6}override: {reason.display} [{reason.code}] x{reason.cards}")
    if report.unmatched_feedback:
        lines.append(f"feedback about cards this store never issued: {report.unmatched_feedback}")
    return "\n".join(lines)


def render_html(report: FeedbackReport) -> str:
    """The report as one self-contained HTML page (weekly chart inlined as SVG)."""
    chart = None
    if report.weeks:
        series = {
            "cards returned": [0.0] * len(report.weeks),
            "overridden": [0.0] * len(report.weeks),
            "silent-mode cards": [0.0] * len(report.weeks),
        }
        position = {w: i for i, w in enumerate(report.weeks)}
        for row in report.rows:
            for week, counts in row.weeks.items():
                i = position[week]
                series["cards returned"][i] += counts.issued
                series["overridden"][i] += counts.overridden
                series["silent-mode cards"][i] += counts.silent
        chart = line_chart(
            report.weeks, series, ylabel="cards per week", title="All rules, per ISO week (UTC)"
        )
    return render_page(
        "feedback_report.html.j2",
        report=report,
        totals=report.totals(),
        chart=chart,
        table_weeks=report.weeks[-TABLE_WEEKS:],
        rate=_rate,
    )
