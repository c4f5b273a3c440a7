"""The card renderer: Markdown escaping, evidence, why-this-card, links, source, suggestions."""

from __future__ import annotations

import datetime as dt
import html
import shutil
import textwrap
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from cds_service import wire
from cds_service.cards import FALLBACK_DETAIL, UNKNOWN_BRANCH_NOTE, CardRenderer
from cds_service.evaluate import Finding, evaluate
from cds_service.facts.model import Fact, Facts, OrderedItem, PartialDate, Provenance
from cds_service.ruleset.loader import RuleSet, load_ruleset
from cds_service.ruleset.templating import Trusted, md_escape

REPO = Path(__file__).resolve().parent.parent
AS_OF = dt.date(2025, 6, 1)
HOSTILE = "*[x](javascript:alert(1))*"

RULE = """\
id: demo-rule
version: "2.1"
title: Demo rule
description: A rule used by the renderer tests.
enabled: true
hooks: [order-select, patient-view]
trigger:
  ordered: [imatinib, dasatinib]
when:
  fact: abl1.t315i
  op: equals
  value: yes
on_unknown: {on_unknown}
indicator: warning
evidence: [retrospective, phase2, case-report]
citations: [cunningham_ejh2025, porkka_blood2008, cart_after_blina_case]
card:
  template: demo
  summary: "{summary}"
  facts: [relapse]
suggestions:
  - label: Draft a request for ABL1 kinase-domain mutation analysis
    description: Create a draft ServiceRequest
    resource:
      resourceType: ServiceRequest
      status: draft
      intent: proposal
      subject: {{reference: "{{{{ patient_reference }}}}"}}
      code: {{text: ABL1 kinase-domain mutation analysis}}
override_reasons:
  - code: specialist-reviewed
    system: urn:phall-cds:override-reason
    display: Reviewed with the treating haematologist
cases:
  - {{fixture: fhir_fixtures/rules/fires-demo.json, hook: order-select, order: imatinib, expect: fires}}
  - {{fixture: fhir_fixtures/rules/silent-demo.json, hook: order-select, order: imatinib, expect: silent}}
{extra}"""

TEMPLATE = """\
T315I is recorded for **{{ ordered }}** {{ cite('cunningham_ejh2025') }} {{ cite('porkka_blood2008') }} \
{{ cite('cart_after_blina_case') }}.
Order text: {{ orders[0].text }}. Detail: {{ facts['abl1.t315i'].detail | md }}. Relapse known: \
{{ facts['relapse'].known }}.
"""


def build(
    tmp: Path,
    *,
    template: str = TEMPLATE,
    summary: str = "Demo: {{ ordered }} with T315I",
    on_unknown: str = "silent",
    extra: str = "",
) -> tuple[RuleSet, CardRenderer]:
    rules_dir, cards_dir = tmp / "rules", tmp / "cards"
    rules_dir.mkdir()
    cards_dir.mkdir()
    shutil.copy(REPO / "rules" / "citations.yaml", rules_dir / "citations.yaml")
    text = RULE.format(on_unknown=on_unknown, summary=summary, extra=textwrap.dedent(extra))
    (rules_dir / "demo-rule.yaml").write_text(text, encoding="utf-8")
    (cards_dir / "demo.md.j2").write_text(template, encoding="utf-8")
    ruleset = load_ruleset(rules_dir, cards_dir)
    return ruleset, CardRenderer(ruleset, cards_dir)


def d(text: str) -> PartialDate:
    parsed = PartialDate.parse(text)
    assert parsed is not None
    return parsed


def t315i_facts(detail: str = "p.Thr315Ile", order_text: str = "Imatinib 400 mg") -> Facts:
    return Facts.build(
        {
            "abl1.t315i": Fact(
                "yes",
                d("2024-12-05"),
                detail=detail,
                provenance=(Provenance("Observation/var-1", "http://loinc.org|69548-6", "hgvs"),),
            )
        },
        orders=[
            OrderedItem(
                "MedicationRequest/draft-1",
                "imatinib",
                order_text,
                (Provenance("MedicationRequest/draft-1", "rxnorm|282388", "code"),),
            )
        ],
    )


def render_one(
    ruleset: RuleSet, renderer: CardRenderer, facts: Facts, hook: str = "order-select"
) -> tuple[Finding, wire.Card]:
    (finding,) = evaluate(ruleset, facts, hook, AS_OF)
    return finding, renderer.render(finding, facts, patient="Patient/pt-1")


# ---- escaping ------------------------------------------------------------------------------


_GFM = MarkdownIt("commonmark").enable(["strikethrough", "table"])

HOSTILE_TEXTS = [
    HOSTILE,
    "<img src=x onerror=alert(1)>",
    "line one\n# heading\r\n- item",
    "`code` &amp; ~~x~~ | a |",
    "![i](http://evil.example/x.png)",
    "<https://evil.example>",
    "1. first",
    "- bullet",
    "+ plus",
    "> quote",
    "===",
    "a\\",
    "**bold** __bold__ _it_",
    "[ref]: https://evil.example",
]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_md_escape_renders_as_the_literal_text(text: str) -> None:
    """Whatever the patient text, a CommonMark (+ strikethrough, tables) renderer shows it as
    one paragraph of literal text: no tag, link, image, list, heading or emphasis."""
    rendered = _GFM.render(md_escape(text)).replace("\u200b", "")  # the autolink breakers
    literal = " ".join(text.split())
    assert rendered == f"<p>{html.escape(literal, quote=False)}</p>\n"


def test_md_escape_leaves_ordinary_punctuation_readable() -> None:
    assert md_escape("p.Thr315Ile (c.944C>T), 2025-04-03: 45%") == (
        "p.Thr315Ile (c.944C\\>T), 2025-04-03: 45%"
    )


def test_md_escape_defeats_autolinks_and_invisible_controls() -> None:
    text = md_escape("see https://evil.example, www.evil.example or a@b.co\u202e\u200bx")
    assert text == (
        "see https:\u200b//evil.example, www\u200b.evil.example or a\u200b@b.co x"
    )


def test_md_escape_is_idempotent_on_trusted_text_and_bounds_length() -> None:
    once = md_escape("a*b")
    assert isinstance(once, Trusted)
    assert md_escape(once) == once
    long = md_escape("x" * 1000)
    assert len(long) == 200 and long.endswith("…")


def test_patient_text_is_escaped_even_without_the_filter(tmp_path: Path) -> None:
    ruleset, renderer = build(tmp_path)
    facts = t315i_facts(detail=HOSTILE, order_text=HOSTILE)
    _, card = render_one(ruleset, renderer, facts)
    detail = card.detail or ""
    assert "[x](javascript" not in detail
    escaped = r"\*\[x\](javascript:alert(1))\*"
    assert f"Order text: {escaped}." in detail  # printed without `| md`
    assert f"Detail: {escaped}." in detail  # printed with `| md`: not escaped twice


def test_hostile_resource_ids_are_escaped_in_why_this_card(tmp_path: Path) -> None:
    ruleset, renderer = build(tmp_path)
    facts = Facts.build(
        {
            "abl1.t315i": Fact(
                "yes",
                d("2024-12"),
                provenance=(Provenance("Observation/[a](http://evil)", "x", "code"),),
            )
        },
        orders=[OrderedItem("MedicationRequest/<script>", "imatinib", "ok")],
    )
    _, card = render_one(ruleset, renderer, facts)
    # Identifiers are printed as code spans: what a CommonMark renderer makes of the detail
    # carries no link to the hostile URL and no live tag, only the literal text.
    html = MarkdownIt("commonmark").render(card.detail or "")
    assert 'href="http://evil"' not in html
    assert "<script>" not in html
    assert "<code>Observation/[a](http://evil)</code>" in html


# ---- what the renderer adds ------------------------------------------------------------------


def test_evidence_section_gives_level_design_and_size_for_every_citation(tmp_path: Path) -> None:
    ruleset, renderer = build(tmp_path)
    _, card = render_one(ruleset, renderer, t315i_facts())
    detail = card.detail or ""
    evidence = detail.split("**Evidence** (level, design, size):\n", 1)[1].split("\n\n", 1)[0]
    lines = evidence.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("- Cunningham et al., Eur J Haematol 2025 — retrospective series: ")
    assert lines[0].endswith("; n=163")
    assert lines[1].startswith("- Porkka et al., Blood 2008 — phase 2 trial + preclinical: ")
    assert lines[1].endswith("; n=11")
    # inline tags beside the claim, from cite()
    assert (
        "(Porkka et al., Blood 2008: phase 2 trial + preclinical, n=11)"
        in detail.split("**Evidence**")[0]
    )


def test_why_this_card_lists_orders_and_facts_with_dates_and_resources(tmp_path: Path) -> None:
    ruleset, renderer = build(tmp_path)
    _, card = render_one(ruleset, renderer, t315i_facts())
    why = (card.detail or "").split("**Why this card**\n", 1)[1].split("\n\n", 1)[0]
    assert why.splitlines() == [
        "- Order under decision: imatinib — “Imatinib 400 mg” (`MedicationRequest/draft-1`)",
        "- `abl1.t315i`: yes (p.Thr315Ile), 2024-12-05 — from `Observation/var-1` "
        "(hgvs: `http://loinc.org|69548-6`)",
    ]


def test_links_only_for_verified_identifiers_and_status_printed_otherwise(tmp_path: Path) -> None:
    ruleset, renderer = build(tmp_path)
    _, card = render_one(ruleset, renderer, t315i_facts())
    urls = [link.url for link in card.links or []]
    assert urls == [
        "https://doi.org/10.1111/ejh.70051",
        "https://doi.org/10.1182/blood-2008-02-140665",
    ]
    assert all(link.type == "absolute" for link in card.links or [])
    detail = card.detail or ""
    # Cunningham's PMID is only partly verified: printed with its status, never linked
    assert "PMID 41369097 (partly verified)" in detail
    assert "pubmed.ncbi.nlm.nih.gov/41369097" not in detail
    # the case report has no identifier at all: the card says so
    assert "No DOI, PMID or URL found" in detail


def test_source_is_the_primary_citation_with_its_verified_link(tmp_path: Path) -> None:
    ruleset, renderer = build(tmp_path)
    _, card = render_one(ruleset, renderer, t315i_facts())
    assert card.source.label == "Cunningham et al., Eur J Haematol 2025"
    assert card.source.url == "https://doi.org/10.1111/ejh.70051"


def test_suggestions_and_override_reasons(tmp_path: Path) -> None:
    ruleset, renderer = build(tmp_path)
    finding, card = render_one(ruleset, renderer, t315i_facts())
    assert card.selectionBehavior == "any"
    (suggestion,) = card.suggestions or []
    (action,) = suggestion.actions or []
    assert action.type == "create"
    assert action.resource is not None
    assert action.resource["subject"] == {"reference": "Patient/pt-1"}
    assert action.resource["resourceType"] == "ServiceRequest"
    assert [o.code for o in card.overrideReasons or []] == ["specialist-reviewed"]
    # without a patient there is no subject, so no suggestion (and no selectionBehavior)
    bare = renderer.render(finding, t315i_facts())
    assert bare.suggestions is None and bare.selectionBehavior is None
    # the whole card passes strict validation (FHIR resource included)
    wire.Card.model_validate(card.dump())


def test_summary_is_cut_below_140_characters_but_check_sees_the_full_length(tmp_path: Path) -> None:
    ruleset, renderer = build(tmp_path, summary="A very long summary {{ ordered }} " + "x" * 150)
    finding, card = render_one(ruleset, renderer, t315i_facts())
    assert len(card.summary) == 139 and card.summary.endswith("…")
    assert len(renderer.full_summary(finding)) > 139


def test_a_failing_template_still_yields_the_card_with_evidence_and_why(tmp_path: Path) -> None:
    ruleset, renderer = build(tmp_path, template="{{ facts['relapse'].nonexistent }}")
    _, card = render_one(ruleset, renderer, t315i_facts())
    detail = card.detail or ""
    assert detail.startswith(FALLBACK_DETAIL)
    assert "**Evidence**" in detail and "**Why this card**" in detail


def test_a_template_cannot_cite_a_source_the_rule_does_not_list(tmp_path: Path) -> None:
    ruleset, renderer = build(tmp_path, template="{{ cite('cao_frontimmunol2023') }}")
    _, card = render_one(ruleset, renderer, t315i_facts())
    assert (card.detail or "").startswith(FALLBACK_DETAIL)


def test_undecided_branch_uses_its_summary_indicator_and_says_so(tmp_path: Path) -> None:
    extra = """\
    when_unknown:
      indicator: info
      summary: "No ABL1 result found for {{ ordered }}"
    """
    ruleset, renderer = build(tmp_path, on_unknown="branch", extra=extra)
    facts = Facts.build({}, orders=[OrderedItem("MedicationRequest/1", "dasatinib", "Dasatinib")])
    finding, card = render_one(ruleset, renderer, facts)
    assert finding.branch == "unknown"
    assert card.indicator == "info"
    assert card.summary == "No ABL1 result found for dasatinib"
    assert UNKNOWN_BRANCH_NOTE in (card.detail or "")
    assert "- `abl1.t315i`: not in the coded data received" in (card.detail or "")


@pytest.mark.parametrize("count", [1, 2, 3])
def test_ordered_names_are_joined_in_words(tmp_path: Path, count: int) -> None:
    ruleset, renderer = build(tmp_path)
    drugs = ["imatinib", "dasatinib", "imatinib"][:count]
    facts = Facts.build(
        {"abl1.t315i": Fact("yes")},
        orders=[OrderedItem(f"MedicationRequest/{i}", drug, drug) for i, drug in enumerate(drugs)],
    )
    _, card = render_one(ruleset, renderer, facts)
    expected = {1: "imatinib", 2: "imatinib and dasatinib", 3: "imatinib and dasatinib"}[count]
    assert card.summary == f"Demo: {expected} with T315I"


def test_every_real_rule_renders_a_strict_card_from_hand_built_facts() -> None:
    ruleset = load_ruleset(REPO / "rules", REPO / "cards")
    renderer = CardRenderer(ruleset, REPO / "cards")
    for rule in ruleset.rules:
        facts = Facts.build({}, orders=[OrderedItem("MedicationRequest/x", "imatinib", "x")])
        finding = Finding(rule, "match", rule.indicator, (), facts.orders)
        card = renderer.render(finding, facts, patient="Patient/p")
        assert FALLBACK_DETAIL not in (card.detail or ""), rule.id
        wire.Card.model_validate(card.dump())
