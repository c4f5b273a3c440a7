"""Golden card texts: the summary and detail every `fires` case of every rule renders, stored
under tests/golden/cards/<rule>/ with the rule version they were written for.

Feedback and override rates are stored per rule id + version, so a card whose text changes
must change version too. `tests/test_golden_cards.py` compares every run with these files;
this module writes them:

    python -m tests.golden_cards            # record new and re-versioned cards
    python -m tests.golden_cards --check    # what the test checks, as a report

It refuses to record a text change at an unchanged version (bump `version` in the rule
file first) and removes the files of cases that no longer exist.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from cds_service.cards import CardRenderer
from cds_service.decide import evaluate_bundle
from cds_service.ruleset.loader import RuleSet, load_ruleset
from cds_service.ruleset.schema import CaseSpec, Rule

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "cards"
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Golden:
    rule: Rule
    case: CaseSpec
    path: Path
    text: str
    """The file's whole expected content."""


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")


def case_file(rule: Rule, index: int, case: CaseSpec) -> Path:
    parts = [f"{index:02d}", Path(case.fixture).stem, case.hook]
    if case.order:
        parts.append(_slug(case.order))
    return GOLDEN / rule.id / ("-".join(parts) + ".md")


def header_version(text: str) -> str | None:
    match = re.search(r"^version: (.+)$", text, re.M)
    return match.group(1).strip() if match else None


def render(ruleset: RuleSet, renderer: CardRenderer) -> list[Golden]:
    """The expected golden file of every `fires` case of every evaluated rule."""
    out: list[Golden] = []
    for rule in ruleset.rules:
        if not rule.evaluated:
            continue
        for index, case in enumerate(rule.cases):
            if case.expect != "fires":
                continue
            bundle = json.loads((REPO / case.fixture).read_text(encoding="utf-8"))
            decision = evaluate_bundle(
                ruleset, renderer, bundle, case.hook, case.order, case.as_of
            )
            cards = [c for c in decision.cards if decision.card_rules[c.uuid][0] == rule.id]
            if len(cards) != 1:
                raise AssertionError(f"{rule.id} case {index}: {len(cards)} cards")
            card = cards[0]
            text = "\n".join(
                [
                    f"rule: {rule.id}",
                    f"version: {rule.version}",
                    f"case: {index} {case.fixture} {case.hook}"
                    + (f" order={case.order}" if case.order else "")
                    + f" as_of={case.as_of.isoformat()}",
                    f"indicator: {card.indicator}",
                    f"summary: {card.summary}",
                    "---",
                    card.detail or "",
                    "",
                ]
            )
            out.append(Golden(rule, case, case_file(rule, index, case), text))
    return out


@dataclass(frozen=True)
class Difference:
    path: Path
    kind: str
    """missing | changed-same-version | new-version | orphan"""
    message: str


def _rel(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def differences(goldens: list[Golden], *, orphans: bool = True) -> list[Difference]:
    out: list[Difference] = []
    expected = {g.path for g in goldens}
    for g in goldens:
        rel = _rel(g.path)
        if not g.path.exists():
            out.append(
                Difference(g.path, "missing", f"{rel}: no golden text yet; run "
                           "`python -m tests.golden_cards` to record it")
            )
            continue
        stored = g.path.read_text(encoding="utf-8")
        if stored == g.text:
            continue
        old = header_version(stored)
        if old == g.rule.version:
            out.append(
                Difference(
                    g.path,
                    "changed-same-version",
                    f"{rel}: the card text of '{g.rule.id}' changed but its version is still "
                    f"{g.rule.version}: bump `version` in {g.rule.source} (feedback and "
                    "override rates are kept per version), then run "
                    "`python -m tests.golden_cards`",
                )
            )
        else:
            out.append(
                Difference(
                    g.path,
                    "new-version",
                    f"{rel}: '{g.rule.id}' is now version {g.rule.version} (golden text is "
                    f"for {old}): run `python -m tests.golden_cards` to record its text",
                )
            )
    if orphans and GOLDEN.exists():
        for path in sorted(GOLDEN.rglob("*.md")):
            if path not in expected:
                out.append(
                    Difference(
                        path,
                        "orphan",
                        f"{_rel(path)}: no such rule case any more; run "
                        "`python -m tests.golden_cards` to remove it",
                    )
                )
    return out


def _loaded() -> tuple[RuleSet, CardRenderer]:
    ruleset = load_ruleset(REPO / "rules", REPO / "cards")
    return ruleset, CardRenderer(ruleset, REPO / "cards")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden_cards")
    parser.add_argument("--check", action="store_true", help="report only, write nothing")
    args = parser.parse_args(argv)
    goldens = render(*_loaded())
    diffs = differences(goldens)
    refused = [d for d in diffs if d.kind == "changed-same-version"]
    if args.check or refused:
        for d in diffs:
            print(d.message)
        if refused:
            print(f"\nrefused: {len(refused)} text change(s) at an unchanged rule version")
        return 1 if diffs else 0
    by_path = {g.path: g for g in goldens}
    for d in diffs:
        if d.kind == "orphan":
            d.path.unlink()
            if not any(d.path.parent.iterdir()):
                d.path.parent.rmdir()
        else:
            d.path.parent.mkdir(parents=True, exist_ok=True)
            d.path.write_text(by_path[d.path].text, encoding="utf-8")
        print(f"{d.kind}: {_rel(d.path)}")
    print(f"{len(goldens)} golden card texts, {len(diffs)} written or removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
