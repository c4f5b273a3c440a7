"""`cds-service links`: every URL (and host) a card of this rule set can carry.

Some EHRs show a card link only when its URL or host was registered in advance (Oracle Health
keeps a link allow-list; others strip unknown links). The list is derived, never kept by hand:

* the card renderer links every *verified* identifier (DOI, PubMed, URL) of each citation a
  rule cites — as `links[]`, as the card `source.url` (the first citation's first verified
  identifier) and as Markdown links in the References section (`citations.verified_links`,
  `citations.primary_url`);
* a card template or a summary may also write a URL into the text itself, so those files are
  scanned too.

Unverified identifiers are never linked, so they are not listed. Disabled rules show no card
and are left out unless asked for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .citations import primary_url, verified_links
from .ruleset.loader import RuleSet
from .ruleset.templating import template_file

_URL = re.compile(r"https?://[^\s<>()\[\]\"'`]+")
_TRAILING = ".,;:!?*_"


@dataclass(frozen=True)
class CardLink:
    url: str
    label: str
    """The link label a card shows (a citation's short form and identifier)."""
    where: tuple[str, ...]
    """How it appears: links (card.links), source (card.source.url), text (in the detail)."""
    rules: tuple[str, ...]

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()


_CODE_SPAN = re.compile(r"`[^`]*`")


def urls_in_text(text: str) -> list[str]:
    """Absolute http(s) URLs a text makes clickable (Markdown link targets included); what
    stands in a code span (an unverified address, a coding system) is shown, never linked."""
    text = _CODE_SPAN.sub(" ", text)
    return [m.group(0).rstrip(_TRAILING) for m in _URL.finditer(text)]


def card_links(
    ruleset: RuleSet, cards_dir: Path, *, include_disabled: bool = False
) -> list[CardLink]:
    """Every URL a card can carry, with its label, its places on the card and its rules."""
    found: dict[str, tuple[str, set[str], set[str]]] = {}

    def add(url: str, label: str, where: str, rule: str) -> None:
        entry = found.setdefault(url, (label, set(), set()))
        entry[1].add(where)
        entry[2].add(rule)

    for rule in ruleset.rules:
        if not (rule.enabled or include_disabled):
            continue
        citations = [ruleset.citations.get(key) for key in rule.citations]
        for citation in citations:
            for label, url in verified_links(citation):
                add(url, label, "links", rule.id)
                add(url, label, "text", rule.id)  # the References section links it too
        first = primary_url(citations[0]) if citations else None
        if first is not None:
            add(first, citations[0].short, "source", rule.id)
        texts = [rule.card.summary, *(s.label for s in rule.suggestions)]
        path = template_file(cards_dir, rule.card.template)
        texts.append(path.read_text(encoding="utf-8"))
        for text in texts:
            for url in urls_in_text(text):
                add(url, url, "text", rule.id)
    order = ("links", "source", "text")
    return [
        CardLink(url, label, tuple(w for w in order if w in where), tuple(sorted(rules)))
        for url, (label, where, rules) in sorted(found.items())
    ]


def hosts(links: Iterable[CardLink]) -> list[str]:
    return sorted({link.host for link in links if link.host})


def format_links(links: list[CardLink], *, as_json: bool = False, hosts_only: bool = False) -> str:
    if hosts_only:
        return "\n".join(hosts(links))
    if as_json:
        return json.dumps(
            {
                "hosts": hosts(links),
                "links": [
                    {
                        "url": link.url,
                        "host": link.host,
                        "label": link.label,
                        "where": list(link.where),
                        "rules": list(link.rules),
                    }
                    for link in links
                ],
            },
            indent=2,
        )
    lines = [f"{len(links)} URLs on {len(hosts(links))} hosts can appear on a card:", ""]
    for link in links:
        lines.append(link.url)
        lines.append(f"    label: {link.label}")
        lines.append(f"    as:    {', '.join(link.where)}")
        lines.append(f"    rules: {', '.join(link.rules)}")
    lines.append("")
    lines.append("hosts:")
    lines.extend(f"  {h}" for h in hosts(links))
    return "\n".join(lines)
