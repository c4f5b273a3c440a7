"""Shared fixtures, and the CDS Hooks 2.0 requirement-coverage table printed after each run."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

CONFORMANCE = Path(__file__).parent / "conformance"
_REQ_TESTS: dict[str, list[str]] = defaultdict(list)
_FAILED: set[str] = set()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in item.iter_markers("req"):
            for rid in marker.args:
                _REQ_TESTS[str(rid)].append(item.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _FAILED.add(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _REQ_TESTS:
        return
    with (CONFORMANCE / "requirements.csv").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["conformance"] not in ("MAY", "DEPRECATED")]
    na = yaml.safe_load((CONFORMANCE / "not_applicable.yaml").read_text(encoding="utf-8"))
    tr = terminalreporter
    tr.section("CDS Hooks 2.0 service requirements (SHALL / SHOULD)")
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        rid = row["id"]
        tests = _REQ_TESTS.get(rid, [])
        failed = [t for t in tests if t in _FAILED]
        if tests:
            status = f"covered by {len(tests)} test(s)" + (f", {len(failed)} FAILED" if failed else "")
            counts["covered"] += 1
        elif rid in na:
            status = f"N/A: {na[rid]}"
            counts["n/a"] += 1
        else:
            status = "NOT COVERED"
            counts["not covered"] += 1
        summary = " ".join(row["requirement"].split())[:70]
        tr.write_line(f"{rid:>4} {row['conformance']:<10} {status[:90]:<90} | {summary}")
    tr.write_line(
        f"requirements: {counts['covered']} covered, {counts['n/a']} N/A, "
        f"{counts['not covered']} not covered"
    )
