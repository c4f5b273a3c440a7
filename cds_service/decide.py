"""One decision, end to end and pure: record + orders → facts → findings → cards.

`decide` is the core shared by the HTTP service, the `evaluate` CLI and `check`:
it extracts the facts, evaluates the rules for the hook and renders one card per finding.
`evaluate_bundle` prepares a decision from a single synthetic FHIR Bundle (CLI and rule test
cases): it picks the draft orders, or synthesises one from a drug name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import wire
from .cards import CardRenderer
from .evaluate import Finding, evaluate
from .facts.extract import extract_facts
from .facts.model import Facts
from .fhir_input import Record, build_record, iter_resources
from .ruleset.loader import RuleSet

ORDER_TYPES = ("MedicationRequest", "ServiceRequest")
SYNTHETIC_ORDER_ID = "evaluate-order"


@dataclass(frozen=True)
class Decision:
    facts: Facts
    findings: tuple[Finding, ...]
    cards: list[wire.Card]
    card_rules: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Card uuid → (rule id, rule version), for feedback analytics."""


def decide(
    ruleset: RuleSet,
    renderer: CardRenderer,
    record: Record,
    *,
    hook: str,
    orders: Sequence[dict[str, Any]],
    context_orders: Sequence[dict[str, Any]],
    as_of: dt.date,
) -> Decision:
    """Facts, findings and cards for one hook call."""
    facts = extract_facts(
        record,
        orders=orders,
        context_orders=context_orders,
        as_of=as_of,
        terminology=ruleset.terminology,
        parameters=ruleset.fact_parameters,
    )
    findings = evaluate(ruleset, facts, hook, as_of)
    patient = f"Patient/{record.patient_id}" if record.patient_id else None
    cards: list[wire.Card] = []
    card_rules: dict[str, tuple[str, str]] = {}
    for finding in findings:
        card = renderer.render(finding, facts, patient=patient)
        cards.append(card)
        card_rules[card.uuid] = (finding.rule.id, finding.rule.version)
    return Decision(facts, tuple(findings), cards, card_rules)


# ---- offline evaluation of one bundle --------------------------------------------------------


def bundle_resources(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resources of a Bundle's entries (a bare resource counts as a one-entry bundle)."""
    return list(iter_resources(bundle))


def _reference(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _is_draft_order(resource: Mapping[str, Any]) -> bool:
    return resource.get("resourceType") in ORDER_TYPES and resource.get("status") == "draft"


def _patient_id(resources: Sequence[Mapping[str, Any]]) -> str | None:
    ids = [r.get("id") for r in resources if r.get("resourceType") == "Patient"]
    return ids[0] if len(ids) == 1 and isinstance(ids[0], str) else None


def synthetic_order(name: str, patient_id: str | None) -> dict[str, Any]:
    """A draft MedicationRequest for a drug named in text only."""
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": SYNTHETIC_ORDER_ID,
        "status": "draft",
        "intent": "proposal",
        "medicationCodeableConcept": {"text": name},
    }
    if patient_id:
        order["subject"] = {"reference": f"Patient/{patient_id}"}
    return order


def select_orders(
    resources: Sequence[dict[str, Any]], hook: str, order: str | None, patient_id: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(orders under decision, context orders) for an offline evaluation.

    `order` names a draft order of the bundle (its id or "Type/id"), else a drug to order (a
    draft MedicationRequest is synthesised). Without it, order-select and order-sign decide on
    every draft order of the bundle and patient-view on none.
    """
    drafts = [r for r in resources if _is_draft_order(r)]
    if order is None:
        return ([], drafts) if hook == "patient-view" else (drafts, [])
    chosen = [r for r in drafts if order in (r.get("id"), _reference(r))]
    if chosen:
        return chosen, [r for r in drafts if r not in chosen]
    return [synthetic_order(order, patient_id)], drafts


def evaluate_bundle(
    ruleset: RuleSet,
    renderer: CardRenderer,
    bundle: dict[str, Any],
    hook: str,
    order: str | None,
    as_of: dt.date,
) -> Decision:
    """Decide for one synthetic patient bundle (the `evaluate` CLI and rule test cases)."""
    resources = bundle_resources(bundle)
    patient_id = _patient_id(resources)
    orders, context_orders = select_orders(resources, hook, order, patient_id)
    drafts = {id(r) for r in (*orders, *context_orders)}
    record = build_record([r for r in resources if id(r) not in drafts], patient_id)
    return decide(
        ruleset,
        renderer,
        record,
        hook=hook,
        orders=orders,
        context_orders=context_orders,
        as_of=as_of,
    )
