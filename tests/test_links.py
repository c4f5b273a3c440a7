"""`cds-service links` lists exactly the URLs cards carry: every URL on every card the rule
cases render is listed, and every listed URL appears on some rendered card (derived from the
rule set, so it stays true as rules change)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cds_service import wire
from cds_service.cards import CardRenderer
from cds_service.citations import Citation, Identifier, Registry
from cds_service.decide import evaluate_bundle
from cds_service.links import card_links, hosts, urls_in_text
from cds_service.paths import cards_dir, rules_dir
from cds_service.ruleset.loader import RuleSet, load_ruleset
from cds_service.settings import Settings

_MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    settings = Settings()
    return load_ruleset(rules_dir(settings), cards_dir(settings))


def _card_urls(card: wire.Card) -> set[str]:
    urls = {link.url for link in card.links or []}
    if card.source.url:
        urls.add(card.source.url)
    urls.update(_MD_LINK.findall(card.detail or ""))
    urls.update(urls_in_text(card.detail or ""))
    urls.update(urls_in_text(card.summary))
    return urls


def _rendered(ruleset: RuleSet) -> dict[str, set[str]]:
    """URL → rules, over the cards of every case of every enabled rule."""
    renderer = CardRenderer(ruleset, cards_dir(Settings()))
    out: dict[str, set[str]] = {}
    for rule in ruleset.rules:
        if not rule.enabled:
            continue
        for case in rule.cases:
            bundle: Any = json.loads((ruleset.rules_dir.parent / case.fixture).read_text("utf-8"))
            decision = evaluate_bundle(ruleset, renderer, bundle, case.hook, case.order, case.as_of)
            for card in decision.cards:
                rid = decision.card_rules[card.uuid][0]
                for url in _card_urls(card):
                    out.setdefault(url, set()).add(rid)
    return out


def test_every_url_a_card_carries_is_listed_and_every_listed_url_is_carried(
    ruleset: RuleSet,
) -> None:
    listed = {link.url: link for link in card_links(ruleset, cards_dir(Settings()))}
    rendered = _rendered(ruleset)
    assert rendered, "the rule cases render cards with links"
    assert set(rendered) <= set(listed), set(rendered) - set(listed)
    assert set(listed) <= set(rendered), set(listed) - set(rendered)
    for url, rules in rendered.items():
        assert rules <= set(listed[url].rules), url
    for link in listed.values():
        assert link.url.startswith("https://") and link.host
        assert link.label


def test_unverified_identifiers_are_never_listed(ruleset: RuleSet) -> None:
    listed = {link.url for link in card_links(ruleset, cards_dir(Settings()))}
    for key, citation in ruleset.citations.citations.items():
        for ident, url in (
            (citation.doi, f"https://doi.org/{citation.doi.value}" if citation.doi else ""),
            (citation.url, citation.url.value if citation.url else ""),
        ):
            if ident is not None and ident.status != "verified":
                assert url not in listed, (key, url)


def test_a_link_is_derived_from_the_registry_not_a_list(ruleset: RuleSet) -> None:
    """Change the registry: the listed links follow."""
    rule = next(r for r in ruleset.rules if r.enabled)
    key = rule.citations[0]
    original = ruleset.citations.get(key)
    moved = Citation.model_validate(
        {
            **original.model_dump(exclude_none=True),
            "url": Identifier(value="https://guidelines.example.org/ph-all", status="verified"),
            "no_identifier_reason": None,
        }
    )
    registry = Registry({**ruleset.citations.citations, key: moved}, ruleset.citations.forbidden)
    changed = dataclasses.replace(ruleset, citations=registry)
    links = card_links(changed, cards_dir(Settings()))
    new = [link for link in links if link.url == "https://guidelines.example.org/ph-all"]
    assert new and rule.id in new[0].rules
    assert "guidelines.example.org" in hosts(links)


def test_urls_in_text_stops_at_markdown_and_punctuation() -> None:
    text = "See [x](https://a.example/p?q=1). Also https://b.example/x, and <https://c.example>."
    assert urls_in_text(text) == ["https://a.example/p?q=1", "https://b.example/x", "https://c.example"]


def test_the_command_prints_urls_hosts_and_json(tmp_path: Path) -> None:
    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "cds_service", "links", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    data = json.loads(run("--json"))
    assert data["hosts"] == sorted({link["host"] for link in data["links"]})
    assert run("--hosts").split() == data["hosts"]
    text = run()
    for link in data["links"]:
        assert link["url"] in text
