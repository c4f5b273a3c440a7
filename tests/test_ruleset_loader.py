"""Loading the rule set: every problem reported at once, with file, line and key path."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from cds_service.errors import RuleSetError
from cds_service.ruleset.conditions import AllOf, Leaf, Not
from cds_service.ruleset.loader import load_ruleset

REPO = Path(__file__).resolve().parent.parent

GOOD_RULE = """\
id: demo-rule
version: "1.0.0"
title: Demo
description: A rule used by the loader tests.
enabled: true
hooks: [order-select]
trigger:
  ordered: [imatinib]
when:
  all:
    - {fact: abl1.t315i, op: equals, value: yes}
    - {fact: ph_status, op: equals, value: positive}
on_unknown: silent
indicator: warning
evidence: [guideline]
citations: [nccn_all_mutation_testing]
card:
  template: demo
  summary: "Demo summary for {{ ordered }}"
cases:
  - fixture: fhir_fixtures/rules/fires-demo.json
    hook: order-select
    order: imatinib
    expect: fires
  - fixture: fhir_fixtures/rules/silent-demo.json
    hook: order-select
    order: imatinib
    expect: silent
"""


def make_ruleset(
    tmp: Path, rules: dict[str, str], templates: dict[str, str] | None = None
) -> tuple[Path, Path]:
    rules_dir = tmp / "rules"
    cards_dir = tmp / "cards"
    rules_dir.mkdir()
    cards_dir.mkdir()
    shutil.copy(REPO / "rules" / "citations.yaml", rules_dir / "citations.yaml")
    for name, text in rules.items():
        (rules_dir / name).write_text(textwrap.dedent(text), encoding="utf-8")
    for name, text in (
        templates or {"demo": "Demo {{ cite('nccn_all_mutation_testing') }}"}
    ).items():
        (cards_dir / f"{name}.md.j2").write_text(text, encoding="utf-8")
    return rules_dir, cards_dir


def load_errors(
    tmp: Path, rules: dict[str, str], templates: dict[str, str] | None = None
) -> list[str]:
    rules_dir, cards_dir = make_ruleset(tmp, rules, templates)
    with pytest.raises(RuleSetError) as info:
        load_ruleset(rules_dir, cards_dir)
    return list(info.value.details)


def test_the_repository_rule_set_loads() -> None:
    ruleset = load_ruleset(REPO / "rules", REPO / "cards")
    ids = [r.id for r in ruleset.rules]
    assert ids == sorted(ids)
    assert "t315i-tki-ineffective" in ids
    assert all(r.citations and r.cases for r in ruleset.rules)


def test_a_good_rule_loads_with_its_parts(tmp_path: Path) -> None:
    rules_dir, cards_dir = make_ruleset(tmp_path, {"demo-rule.yaml": GOOD_RULE})
    ruleset = load_ruleset(rules_dir, cards_dir)
    (rule,) = ruleset.rules
    assert rule.trigger == frozenset({"imatinib"})
    assert rule.condition == AllOf(
        (Leaf("abl1.t315i", "equals", "yes"), Leaf("ph_status", "equals", "positive"))
    )
    assert ruleset.facts_for_hook("order-select") == {
        "abl1.t315i",
        "ph_status",
        "order.ingredients",
    }
    assert ruleset.facts_for_hook("patient-view") == frozenset()


def test_yes_and_no_stay_strings_not_booleans(tmp_path: Path) -> None:
    # PyYAML would read `value: yes` as True; a tri-state fact value must stay "yes".
    rules_dir, cards_dir = make_ruleset(tmp_path, {"demo-rule.yaml": GOOD_RULE})
    (rule,) = load_ruleset(rules_dir, cards_dir).rules
    assert isinstance(rule.condition, AllOf)
    first = rule.condition.items[0]
    assert isinstance(first, Leaf) and first.value == "yes"


def test_all_errors_are_reported_at_once_with_lines_and_paths(tmp_path: Path) -> None:
    bad = GOOD_RULE.replace("op: equals, value: positive", "op: eqals, value: positive").replace(
        "citations: [nccn_all_mutation_testing]", "citations: [no_such_paper]"
    )
    other = GOOD_RULE.replace("id: demo-rule", "id: other-rule").replace(
        "fact: abl1.t315i", "fact: abl1.t3151"
    )
    errors = load_errors(tmp_path, {"demo-rule.yaml": bad, "other-rule.yaml": other})
    assert (
        "rules/demo-rule.yaml:12: when.all[1].op: unknown operator 'eqals' (did you mean 'equals'?)"
        in errors
    )
    assert (
        "rules/demo-rule.yaml:16: citations[0]: unknown citation 'no_such_paper' (not in citations.yaml)"
        in errors
    )
    assert any(
        e.startswith("rules/other-rule.yaml:11: when.all[0].fact: unknown fact 'abl1.t3151'")
        for e in errors
    )
    assert len(errors) == 3


def test_the_error_message_names_the_count_and_refuses_to_start(tmp_path: Path) -> None:
    rules_dir, cards_dir = make_ruleset(
        tmp_path, {"demo-rule.yaml": GOOD_RULE.replace("indicator: warning", "indicator: loud")}
    )
    with pytest.raises(RuleSetError) as info:
        load_ruleset(rules_dir, cards_dir)
    text = str(info.value)
    assert "has 1 problem;" in text and "will not start" in text
    assert "rules/demo-rule.yaml:14: indicator:" in text


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    doubled = GOOD_RULE.replace("enabled: true\n", "enabled: true\nenabled: false\n")
    errors = load_errors(tmp_path, {"demo-rule.yaml": doubled})
    assert errors == [
        "rules/demo-rule.yaml:6: enabled: duplicate key 'enabled' (first defined on line 5)"
    ]


def test_duplicate_keys_inside_a_condition_are_errors(tmp_path: Path) -> None:
    doubled = GOOD_RULE.replace(
        "    - {fact: ph_status, op: equals, value: positive}",
        "    - {fact: ph_status, op: equals, value: positive, value: negative}",
    )
    errors = load_errors(tmp_path, {"demo-rule.yaml": doubled})
    assert errors == [
        "rules/demo-rule.yaml:12: when.all[1].value: duplicate key 'value' (first defined on line 12)"
    ]


def test_a_value_the_fact_can_never_take_is_an_error(tmp_path: Path) -> None:
    bad = GOOD_RULE.replace("value: positive", "value: detected")
    errors = load_errors(tmp_path, {"demo-rule.yaml": bad})
    assert errors == [
        "rules/demo-rule.yaml:12: when.all[1].value: 'ph_status' can never be 'detected' "
        "(its values: positive, negative, unknown)"
    ]


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        ("{fact: ph_status, op: equals, value: unknown}", "use op: unknown"),
        ("{fact: tki.current, op: equals, value: imatinib}", "is a set fact (use contains)"),
        ("{fact: tki.current, op: contains, value: aspirin}", "can never contain 'aspirin'"),
        ("{fact: bcr_abl1.latest, op: gt, value: high}", "'gt' needs a number"),
        ("{fact: ph_status, op: gt, value: 1}", "'gt' compares numbers"),
        ("{fact: relapse, op: after}", "'after' needs 'other'"),
        ("{fact: relapse, op: after, other: nothing}", "unknown fact 'nothing'"),
        ("{fact: relapse, op: during, other: as_of}", "'during' needs a fact with a period"),
        ("{fact: relapse, op: within_days, other: as_of}", "within_days needs 'days'"),
        ("{fact: relapse, op: exists, value: yes}", "'exists' takes no 'value'"),
        ("{fact: relapse, op: equals, value: yes, colour: red}", "unexpected key 'colour'"),
        ("{op: exists}", "a condition needs 'fact' and 'op'"),
        ("{all: []}", "'all' needs a non-empty list"),
        ("{not: {fact: relapse, op: exists}, any: []}", "holds one of all / any / not"),
        ("{not: {fact: relapse, op: exists}, fact: relapse}", "'not' stands alone"),
    ],
)
def test_condition_errors(tmp_path: Path, leaf: str, message: str) -> None:
    bad = GOOD_RULE.replace("{fact: ph_status, op: equals, value: positive}", leaf)
    errors = load_errors(tmp_path, {"demo-rule.yaml": bad})
    assert len(errors) == 1
    assert errors[0].startswith("rules/demo-rule.yaml:12: when.all[1]")
    assert message in errors[0]


def test_not_and_date_operators_parse(tmp_path: Path) -> None:
    good = GOOD_RULE.replace(
        "{fact: ph_status, op: equals, value: positive}",
        "{not: {fact: abl1.mutation_test, op: on_or_after, other: relapse}}",
    )
    rules_dir, cards_dir = make_ruleset(tmp_path, {"demo-rule.yaml": good})
    (rule,) = load_ruleset(rules_dir, cards_dir).rules
    assert isinstance(rule.condition, AllOf)
    assert rule.condition.items[1] == Not(
        Leaf("abl1.mutation_test", "on_or_after", other="relapse")
    )
    assert "relapse" in rule.facts_read()


def test_unknown_template_and_template_syntax_errors(tmp_path: Path) -> None:
    other = GOOD_RULE.replace("id: demo-rule", "id: other-rule").replace(
        "template: demo", "template: broken"
    )
    third = GOOD_RULE.replace("id: demo-rule", "id: third-rule").replace(
        "template: demo", "template: missing"
    )
    errors = load_errors(
        tmp_path,
        {"demo-rule.yaml": GOOD_RULE, "other-rule.yaml": other, "third-rule.yaml": third},
        {
            "demo": "ok {{ cite('nccn_all_mutation_testing') }}",
            "broken": "{% if %}",
        },
    )
    assert any(
        e.startswith("rules/other-rule.yaml:18: card.template: template broken.md.j2")
        for e in errors
    )
    assert (
        "rules/third-rule.yaml:18: card.template: unknown template 'missing' (cards/missing.md.j2 not found)"
        in errors
    )


def test_unknown_filter_in_a_template_is_a_load_error(tmp_path: Path) -> None:
    errors = load_errors(tmp_path, {"demo-rule.yaml": GOOD_RULE}, {"demo": "{{ 'x' | shout }}"})
    assert len(errors) == 1 and "No filter named 'shout'" in errors[0]


def test_a_rule_needs_a_fires_and_a_silent_case(tmp_path: Path) -> None:
    only_fires = GOOD_RULE.replace("silent-demo.json", "fires-demo-2.json").replace(
        "expect: silent", "expect: fires"
    )
    errors = load_errors(tmp_path, {"demo-rule.yaml": only_fires})
    assert errors == [
        "rules/demo-rule.yaml:20: cases: a rule needs at least one 'silent' case on a "
        "'silent-…' fixture (it has none)"
    ]


def test_a_rule_needs_a_citation(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        {
            "demo-rule.yaml": GOOD_RULE.replace(
                "citations: [nccn_all_mutation_testing]", "citations: []"
            )
        },
    )
    assert len(errors) == 1 and errors[0].startswith("rules/demo-rule.yaml:16: citations:")


def test_a_rule_needs_one_locatable_citation(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        {
            "demo-rule.yaml": GOOD_RULE.replace(
                "citations: [nccn_all_mutation_testing]",
                "citations: [cart_after_blina_case, branford_blood2009]",
            ).replace("evidence: [guideline]", "evidence: [case-report]")
        },
        {"demo": "x"},
    )
    # one source without identifier, one whose URL is only partly verified: no card link
    assert errors == [
        "rules/demo-rule.yaml:16: citations: at least one citation must carry a verified DOI, "
        "PMID, URL or trial id (the card's resolvable link)"
    ]


def test_evidence_levels_must_match_the_cited_sources(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path, {"demo-rule.yaml": GOOD_RULE.replace("evidence: [guideline]", "evidence: [rct]")}
    )
    assert errors == [
        "rules/demo-rule.yaml:15: evidence[0]: evidence level 'rct' is not the level of any "
        "cited source (cited levels: guideline)"
    ]


def test_critical_needs_a_basis_and_undecided_cannot_be_critical(tmp_path: Path) -> None:
    critical = GOOD_RULE.replace("indicator: warning", "indicator: critical").replace(
        "on_unknown: silent",
        "on_unknown: branch\nwhen_unknown:\n  indicator: critical\n  summary: undecided",
    )
    errors = load_errors(tmp_path, {"demo-rule.yaml": critical})
    assert any("critical_basis: a critical rule must say why" in e for e in errors)
    assert any("when_unknown.indicator: critical is reserved" in e for e in errors)


def test_branch_needs_when_unknown(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path, {"demo-rule.yaml": GOOD_RULE.replace("on_unknown: silent", "on_unknown: branch")}
    )
    assert errors == [
        "rules/demo-rule.yaml:13: on_unknown: on_unknown: branch needs a when_unknown section"
    ]


def test_a_trigger_on_a_patient_view_only_rule_is_an_error(tmp_path: Path) -> None:
    pv = GOOD_RULE.replace("hooks: [order-select]", "hooks: [patient-view]").replace(
        "hook: order-select", "hook: patient-view"
    )
    errors = load_errors(tmp_path, {"demo-rule.yaml": pv})
    assert errors == [
        "rules/demo-rule.yaml:7: trigger: a trigger only applies to order-select / order-sign, "
        "and this rule answers neither"
    ]


def test_unknown_trigger_and_value_set_triggers(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path, {"demo-rule.yaml": GOOD_RULE.replace("ordered: [imatinib]", "ordered: [imatinb]")}
    )
    assert len(errors) == 1
    assert errors[0].startswith("rules/demo-rule.yaml:8: trigger.ordered[0]: unknown ingredient")
    # the real rule set triggers on value-set ids (tki-t315i-ineffective, cd19-directed)
    ruleset = load_ruleset(REPO / "rules", REPO / "cards")
    assert ruleset.rule("t315i-tki-ineffective").trigger == {
        "imatinib",
        "dasatinib",
        "nilotinib",
        "bosutinib",
    }


def test_case_on_a_hook_the_rule_does_not_answer(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        {
            "demo-rule.yaml": GOOD_RULE.replace(
                "    hook: order-select\n    order: imatinib\n    expect: silent",
                "    hook: order-sign\n    order: imatinib\n    expect: silent",
            )
        },
    )
    assert errors == [
        "rules/demo-rule.yaml:26: cases[1].hook: the rule does not answer order-sign (hooks: order-select)"
    ]


def test_an_invalid_fhir_suggestion_is_a_load_error(tmp_path: Path) -> None:
    with_suggestion = GOOD_RULE.replace(
        "cases:",
        "suggestions:\n  - label: Draft a test\n    description: d\n    resource:\n"
        "      resourceType: ServiceRequest\n      status: draft\n"
        '      subject: {reference: "{{ patient_reference }}"}\ncases:',
    )
    errors = load_errors(tmp_path, {"demo-rule.yaml": with_suggestion})
    assert len(errors) == 1
    assert errors[0].startswith(
        "rules/demo-rule.yaml:23: suggestions[0].resource: not a valid FHIR R4 resource"
    )


def test_file_name_must_match_id_and_ids_are_unique(tmp_path: Path) -> None:
    errors = load_errors(tmp_path, {"demo-rule.yaml": GOOD_RULE, "copy.yaml": GOOD_RULE})
    assert errors == ["rules/copy.yaml:1: id: rule id 'demo-rule' must match the file name 'copy'"]


def test_unexpected_top_level_key_and_yaml_syntax(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        {
            "demo-rule.yaml": GOOD_RULE + "severity: high\n",
            "broken.yaml": "id: [unclosed\n",
        },
    )
    assert any(e.startswith("rules/broken.yaml:") and "YAML syntax" in e for e in errors)
    assert "rules/demo-rule.yaml:29: severity: unexpected key" in errors


def test_unquoted_version_number_gets_a_hint(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path, {"demo-rule.yaml": GOOD_RULE.replace('version: "1.0.0"', "version: 1.0")}
    )
    assert errors == ['rules/demo-rule.yaml:2: version: must be a string (quote it: "1.0")']


def test_a_bad_citation_registry_stops_the_load(tmp_path: Path) -> None:
    rules_dir, cards_dir = make_ruleset(tmp_path, {"demo-rule.yaml": GOOD_RULE})
    registry = rules_dir / "citations.yaml"
    registry.write_text(
        registry.read_text(encoding="utf-8").replace(
            "      value: 10.1182/blood-2008-02-140665", "      value: 10.1038/s41598-025-34513-2"
        ),
        encoding="utf-8",
    )
    with pytest.raises(RuleSetError) as info:
        load_ruleset(rules_dir, cards_dir)
    assert any(
        "porkka_blood2008: cites forbidden DOI 10.1038/s41598-025-34513-2" in d
        for d in info.value.details
    )


def test_disabled_rules_are_loaded_but_not_evaluated(tmp_path: Path) -> None:
    rules_dir, cards_dir = make_ruleset(
        tmp_path, {"demo-rule.yaml": GOOD_RULE.replace("enabled: true", "enabled: false")}
    )
    ruleset = load_ruleset(rules_dir, cards_dir)
    assert len(ruleset.rules) == 1
    assert ruleset.enabled("order-select") == ()
    assert ruleset.facts_for_hook("order-select") == frozenset()
