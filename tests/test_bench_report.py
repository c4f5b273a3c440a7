"""The bench's headline: every target of the speed issue is computed from the measured rows
and printed on the one `bench:` line; FIGURES.md is what the run wrote."""

from __future__ import annotations

from typing import Any

from bench.report import summary_line
from bench.run import conclude, figures_page


def _c1(entries: int, hook: str, ratio: float, p99: float = 10.0) -> dict[str, Any]:
    return {
        "entries": entries,
        "hook": hook,
        "ratio_p50": ratio,
        "service": {"p99_ms": p99, "errors": 0, "cards": {"indicators": ["critical"]}},
        "floor": {"errors": 0},
    }


def results() -> dict[str, Any]:
    return {
        "c1": [
            _c1(50, "order-select", 2.4),
            _c1(50, "patient-view", 2.7),
            _c1(500, "order-select", 1.4),
            _c1(500, "order-sign", 1.45),
            _c1(5000, "order-select", 1.2, p99=180.0),
        ],
        "c8": [
            {
                "entries": 500,
                "hook": "order-select",
                "service": {"throughput_rps": 180.0, "errors": 0},
                "floor": {"throughput_rps": 240.0, "errors": 0},
            }
        ],
        "fetch": [],
        "workers": {"one_worker_rps": 100.0, "two_workers_rps": 190.0, "scaling": 1.9,
                    "rounds": 2, "errors": 1},
    }


def test_headline_and_targets() -> None:
    r = results()
    conclude(r)
    h = r["headline"]
    assert h["ratio50"] == 2.4 and h["ratio500"] == 1.4
    assert h["c8_share500"] == 0.75 and h["workers2"] == 1.9
    assert h["worst_ratio50_any_hook"] == 2.7
    t = r["targets"]
    assert t["ratio500 <= 1.5"] and t["ratio50 <= 2.5"] and t["c8_share500 >= 0.70"]
    assert t["every hook ratio50 <= 2.5"] is False  # patient-view at 2.7
    assert t["workers2 >= 1.8"] and t["fetch_p95_ms < 150"] is None
    assert r["errors"]["total"] == 1  # the workers phase counts


def test_the_summary_line_carries_every_figure() -> None:
    r = results()
    conclude(r)
    line = summary_line(r)
    assert line == (
        "bench: ratio500=1.40 ratio50=2.40 p99_5000_ms=180.0 c8_share500=0.75 workers2=1.90 "
        "fetch_p95_ms=n/a errors=1"
    )
    page = figures_page(r, "TABLE", line)
    assert line in page and "TABLE" in page and "| workers2 >= 1.8 | met |" in page
