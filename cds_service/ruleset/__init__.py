"""The literature rule set: rule file schema, loader, condition language and card templating.

Public entry points: `loader.load_ruleset(rules_dir, cards_dir) -> RuleSet` and the `Rule`
type in `schema`. Authors' documentation is rules/README.md.
"""
