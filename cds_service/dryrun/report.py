"""The dry-run's report.html: firing rates per rule (a bar chart) and the tables behind them."""

from __future__ import annotations

from typing import Any

from ..charts import INDICATOR_COLOURS, bar_chart
from ..pages import render_page
from ..ruleset.loader import RuleSet


def render_report(summary: dict[str, Any], ruleset: RuleSet) -> str:
    rules = sorted(summary["rules"].items(), key=lambda item: (-item[1]["per_1000"], item[0]))
    titles = {r.id: r.title for r in ruleset.rules}
    chart = bar_chart(
        [f"{rule_id}{' (silent)' if r['status'] == 'silent' else ''}" for rule_id, r in rules],
        [r["per_1000"] for _, r in rules],
        colours=[INDICATOR_COLOURS[r["indicator"]] for _, r in rules],
        xlabel=f"patients with the card, per 1,000 patients (n = {summary['patients']:,})",
        title="Firing rate per rule, any hook, any hypothetical order",
    )
    return render_page(
        "dryrun_report.html.j2", summary=summary, rules=rules, titles=titles, chart=chart
    )
