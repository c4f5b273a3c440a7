"""The integrator's test kit: fictional patients and the cards this rule set gives them.

Patients come from the rule set itself, at generation time (so the kit follows the rules as
they change, never a hand list):

* one *case patient* per fixture of an enabled rule's cases (`fires` and `silent`), then more
  of them round-robin: the fixture's record relabelled (own ids, a fictional name), its
  timeline moved so the kit's `as_of` stands where the case's evaluation date stood, record
  noise added (vitals, routine labs, supportive medication, minor problems: `noise`) and an
  EHR shape applied (`shapes`);
* *controls*, about one in ten: fictional people without leukemia (a healthy adult,
  hypertension and diabetes, a GIST on imatinib) with the same noise and shapes.

Each case patient must still behave as its cases say (a `fires` case fires, a `silent` one
stays silent) at `as_of`; if noise or shape changed that, the patient is rebuilt in the
fixture's own shape, then without noise, and the kit says which. Every resource is checked
as FHIR R4 (R4B models).

The cards are computed with the offline evaluation the rule cases use (`decide.evaluate_bundle`)
on what the service would see for each hook: the resource types of that hook's prefetch
templates (`discovery.prefetch_templates`), plus the draft orders. Calls per patient:
patient-view; for each order hook, one draft order per entry of the *order menu* (every drug
a rule triggers on or a case orders, and one unrelated supportive order), and the record's own
draft orders when its fixture has some.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .. import wire
from ..cards import CardRenderer, drug_name
from ..case_patients import (
    CaseUse,
    Scenario,
    fhir_id,
    patient_of,
    relabel,
    scenarios,
    shift_dates,
    split_drafts,
)
from ..decide import evaluate_bundle
from ..discovery import prefetch_templates
from ..errors import ConfigError
from ..facts.model import INGREDIENTS
from ..ruleset.loader import RuleSet
from ..terminology import concept_ids
from . import noise, shapes

Resource = dict[str, Any]
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
RECORD_DRAFTS = "(the record's own draft orders)"
ORDER_HOOKS = ("order-select", "order-sign")
UNRELATED_ORDER = noise.SUPPORTIVE_MEDS[0]
CONTROL_SHARE = 10
"""About one patient in CONTROL_SHARE is a control."""
NOISE_RANGE = (8, 40)
NOISE_YEARS = 3

GIVEN = (
    "Ada", "Bram", "Cleo", "Dario", "Elin", "Farid", "Greta", "Hugo", "Ines", "Jonas",
    "Kaia", "Lio", "Mira", "Nils", "Odile", "Pavel", "Quinn", "Rosa", "Sami", "Tove",
)  # fmt: skip
FAMILY = (
    "Testwood", "Fictorsen", "Samplewell", "Mockridge", "Placeholm", "Exampleton",
    "Dummerby", "Synthwick", "Notreal", "Fakenham", "Inventa", "Madeupson",
)  # fmt: skip


class SynthError(ConfigError):
    """The kit cannot be made as asked; the message says why."""


@dataclass(frozen=True)
class SynthOptions:
    patients: int
    as_of: dt.date
    seed: int = 0


@dataclass(frozen=True)
class CardSeen:
    rule: str
    version: str
    indicator: str
    summary: str


@dataclass
class Call:
    hook: str
    order: str | None
    """An order-menu name, RECORD_DRAFTS, or None (patient-view)."""
    cards: list[CardSeen]
    draft_orders: list[Resource] = field(default_factory=list)


@dataclass
class KitPatient:
    id: str
    kind: str
    """'case' or 'control'."""
    source: str
    """The fixture (case patients) or the control's name."""
    shape: str
    noise: int
    """Resources of record noise added."""
    resources: list[Resource]
    drafts: list[Resource]
    calls: list[Call] = field(default_factory=list)
    replays: list[dict[str, Any]] = field(default_factory=list)
    rebuilt: str | None = None
    """Why the requested shape or noise was given up, if it was."""


@dataclass
class Kit:
    options: SynthOptions
    ruleset: RuleSet
    hooks: tuple[str, ...]
    menu: tuple[str, ...]
    patients: list[KitPatient]

    def coverage(self) -> dict[str, dict[str, list[str]]]:
        """rule id → patients whose calls show its card ('fires') and show it nowhere."""
        rules = [r.id for r in self.ruleset.rules if r.enabled]
        out: dict[str, dict[str, list[str]]] = {r: {"fires": [], "silent": []} for r in rules}
        for p in self.patients:
            fired = {c.rule for call in p.calls for c in call.cards}
            for rid in rules:
                out[rid]["fires" if rid in fired else "silent"].append(p.id)
        return out


# -- orders ------------------------------------------------------------------------------------


def order_menu(ruleset: RuleSet) -> tuple[str, ...]:
    """Every drug a rule triggers on or a case orders, and one unrelated order (sorted)."""
    names: dict[str, str] = {}
    for rule in ruleset.rules:
        if not rule.evaluated:
            continue
        for ingredient in sorted(rule.trigger or ()):
            name = _menu_name(ruleset, ingredient)
            if name is not None:
                names.setdefault(name.casefold(), name)
        for case in rule.cases:
            if case.order and case.hook in ORDER_HOOKS:
                names.setdefault(case.order.casefold(), case.order)
    names.setdefault(UNRELATED_ORDER.casefold(), UNRELATED_ORDER)
    return tuple(names[k] for k in sorted(names))


def _menu_name(ruleset: RuleSet, ingredient: str) -> str | None:
    """How an order for `ingredient` is written: its name, else the concept's display or first
    synonym, whichever the terminology reads back as that ingredient."""
    concept = ruleset.terminology.concepts.get(ingredient)
    candidates = [drug_name(ingredient)]
    if concept is not None:
        candidates += [concept.display, *concept.text]
    for name in candidates:
        if ingredient in concept_ids(ruleset.terminology.match_text(name)):
            return name
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-")


def draft_order(ruleset: RuleSet, name: str, patient_id: str, as_of: dt.date) -> Resource:
    """A draft MedicationRequest for `name`, coded with the ingredient's verified RxNorm code
    when the rule set's terminology has one (as an EHR's order would be), else by text."""
    concept: dict[str, Any] = {"text": name}
    found = concept_ids(ruleset.terminology.match_text(name)) & set(INGREDIENTS)
    if len(found) == 1:
        (ingredient,) = found
        codes = [
            c
            for c in ruleset.terminology.codes_of(ingredient)
            if c.system == RXNORM and c.type == "IN" and c.is_verified
        ]
        if codes:
            code = codes[0]
            concept["coding"] = [
                {"system": RXNORM, "code": code.code, "display": code.display or ingredient}
            ]
    return {
        "resourceType": "MedicationRequest",
        "id": fhir_id(f"draft-{_slug(name)}"),
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": as_of.isoformat(),
    }


# -- patients ----------------------------------------------------------------------------------


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(GIVEN), rng.choice(FAMILY)


def _set_name(resources: list[Resource], patient_id: str, given: str, family: str) -> None:
    display = f"{family}, {given}"
    for r in resources:
        if r.get("resourceType") == "Patient" and r.get("id") == patient_id:
            r["name"] = [{"use": "official", "family": family, "given": [given]}]
        _set_patient_display(r, f"Patient/{patient_id}", display)


def _set_patient_display(node: Any, reference: str, display: str) -> None:
    if isinstance(node, dict):
        if node.get("reference") == reference:
            node["display"] = display
        for value in node.values():
            _set_patient_display(value, reference, display)
    elif isinstance(node, list):
        for item in node:
            _set_patient_display(item, reference, display)


def _noise(
    patient_id: str, rng: random.Random, as_of: dt.date, count: int, style: noise.Style
) -> list[Resource]:
    kinds = noise.bulk_kinds()
    span = NOISE_YEARS * 365
    out = []
    for i in range(count):
        day = as_of - dt.timedelta(days=1 + (span * (count - i)) // max(count, 1))
        out.append(
            noise.bulk(
                patient_id,
                rng.choice(kinds),
                1000 + i,
                day,
                rng,
                active_after=as_of - dt.timedelta(days=60),
                style=style,
            )
        )
    return out


def _control(name: str, patient_id: str, rng: random.Random, as_of: dt.date) -> list[Resource]:
    born = as_of.replace(year=as_of.year - rng.randint(25, 80), day=min(as_of.day, 28))
    patient: Resource = {
        "resourceType": "Patient",
        "id": patient_id,
        "active": True,
        "gender": rng.choice(["female", "male"]),
        "birthDate": born.isoformat(),
    }
    out = [patient]
    onset = as_of - dt.timedelta(days=rng.randint(400, 2500))

    def problem(cid: str, text: str) -> Resource:
        return noise.condition(patient_id, cid, 1, {"text": text}, onset)

    def statement(sid: str, drug: str) -> Resource:
        return noise.med_statement(patient_id, sid, 2, drug, onset, "active")

    if name == "hypertension-diabetes":
        out += [
            problem("htn", "Essential hypertension"),
            problem("t2dm", "Type 2 diabetes mellitus"),
            statement("ms-amlo", "amlodipine 5 mg oral tablet"),
            statement("ms-metf", "metformin 500 mg oral tablet"),
        ]
    elif name == "gist-on-imatinib":
        out += [
            problem("gist", "Gastrointestinal stromal tumor of stomach"),
            statement("ms-imat", "imatinib"),
        ]
    return out


CONTROLS: tuple[str, ...] = ("no-leukemia", "hypertension-diabetes", "gist-on-imatinib")


def _validate(patient_id: str, resources: Sequence[Resource]) -> None:
    for r in resources:
        try:
            wire.validate_fhir_resource(r)
        except (ValidationError, ValueError) as exc:
            raise SynthError(
                f"{patient_id}: {r.get('resourceType')}/{r.get('id')} is not valid FHIR R4: "
                f"{str(exc).splitlines()[0]}"
            ) from None


# -- evaluation --------------------------------------------------------------------------------


class _Evaluator:
    """Cards for one patient × hook × orders, as the service would answer them."""

    def __init__(self, ruleset: RuleSet, renderer: CardRenderer, as_of: dt.date) -> None:
        self.ruleset = ruleset
        self.renderer = renderer
        self.as_of = as_of
        self.types: dict[str, frozenset[str]] = {}

    def _types(self, hook: str) -> frozenset[str]:
        if hook not in self.types:
            templates = prefetch_templates(self.ruleset.facts_for_hook(hook))
            self.types[hook] = frozenset(q.split("?")[0].split("/")[0] for q in templates.values())
        return self.types[hook]

    def cards(
        self, hook: str, resources: Sequence[Resource], drafts: Sequence[Resource]
    ) -> list[CardSeen]:
        seen = self._types(hook)
        entries = [r for r in resources if r.get("resourceType") in seen]
        if hook in ORDER_HOOKS:
            entries += list(drafts)
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in entries],
        }
        decision = evaluate_bundle(self.ruleset, self.renderer, bundle, hook, None, self.as_of)
        out = []
        for card in decision.cards:
            rule, version = decision.card_rules.get(card.uuid, ("?", "?"))
            out.append(CardSeen(rule, version, card.indicator, card.summary))
        return sorted(out, key=lambda c: (c.rule, c.summary))


def _calls(
    evaluator: _Evaluator,
    ruleset: RuleSet,
    hooks: Sequence[str],
    menu: Sequence[str],
    patient: KitPatient,
    as_of: dt.date,
) -> list[Call]:
    calls: list[Call] = []
    for hook in hooks:
        if hook not in ORDER_HOOKS:
            calls.append(Call(hook, None, evaluator.cards(hook, patient.resources, [])))
            continue
        for name in menu:
            draft = draft_order(ruleset, name, patient.id, as_of)
            calls.append(Call(hook, name, evaluator.cards(hook, patient.resources, [draft])))
        if patient.drafts:
            cards = evaluator.cards(hook, patient.resources, patient.drafts)
            calls.append(Call(hook, RECORD_DRAFTS, cards, list(patient.drafts)))
    return calls


def _replays(patient: KitPatient, uses: Sequence[CaseUse]) -> list[dict[str, Any]]:
    """Each case of the fixture, and whether the patient's calls still behave as it says."""
    by_key = {(c.hook, (c.order or "").casefold()): c for c in patient.calls}
    out = []
    for use in uses:
        if use.order is not None:
            key = (use.hook, use.order.casefold())
        elif use.hook in ORDER_HOOKS:
            key = (use.hook, RECORD_DRAFTS.casefold())
        else:
            key = (use.hook, "")
        call = by_key.get(key)
        fired = call is not None and any(c.rule == use.rule_id for c in call.cards)
        out.append(
            {
                "rule": use.rule_id,
                "hook": use.hook,
                "order": use.order,
                "expect": use.expect,
                "holds": call is not None and fired == (use.expect == "fires"),
            }
        )
    return out


# -- the kit -----------------------------------------------------------------------------------


def _plan(options: SynthOptions, cases: int, rng: random.Random) -> list[str]:
    """'case' / 'control' per patient slot, shuffled."""
    minimum = cases + 1
    if options.patients < minimum:
        raise SynthError(
            f"--patients {options.patients} is too few: covering every case of the enabled "
            f"rules takes {cases} patients (one per fixture) plus at least one control, so "
            f"at least {minimum}"
        )
    controls = max(1, options.patients // CONTROL_SHARE)
    controls = min(controls, options.patients - cases)
    slots = ["case"] * (options.patients - controls) + ["control"] * controls
    rng.shuffle(slots)
    return slots


def build_kit(ruleset: RuleSet, renderer: CardRenderer, options: SynthOptions) -> Kit:
    """Make the kit (deterministic for the options' seed and as_of)."""
    found = scenarios(ruleset)
    if not found:
        raise SynthError("the rule set has no enabled rule with cases to build patients from")
    rng = random.Random(options.seed)
    slots = _plan(options, len(found), rng)
    hooks = tuple(sorted({h for r in ruleset.rules if r.enabled for h in r.hooks}))
    menu = order_menu(ruleset)
    evaluator = _Evaluator(ruleset, renderer, options.as_of)
    patients: list[KitPatient] = []
    case_n = control_n = 0
    for index, slot in enumerate(slots):
        patient_id = f"synth-{index + 1:04d}"
        prng = random.Random(rng.getrandbits(64))
        if slot == "case":
            scenario = found[case_n % len(found)]
            case_n += 1
            patient = _case_patient(
                scenario, patient_id, prng, options.as_of, evaluator, hooks, menu
            )
        else:
            name = CONTROLS[control_n % len(CONTROLS)]
            control_n += 1
            patient = _control_patient(name, patient_id, prng, options.as_of)
            patient.calls = _calls(evaluator, ruleset, hooks, menu, patient, options.as_of)
        _validate(patient.id, [*patient.resources, *patient.drafts])
        patients.append(patient)
    return Kit(options, ruleset, hooks, menu, patients)


def _assemble(
    base: list[Resource],
    drafts: list[Resource],
    patient_id: str,
    rng: random.Random,
    as_of: dt.date,
    shape: str,
    noise_count: int,
) -> tuple[list[Resource], list[Resource]]:
    """Relabelled, named, noised and shaped record and draft orders of one patient."""
    own_id = str(patient_of(base)["id"])
    given, family = _name(rng)
    style = noise.Style(meta_source="#synth-ehr", patient_display=f"{family}, {given}")
    extra = _noise(own_id, rng, as_of, noise_count, style)
    everything = relabel([*base, *extra, *drafts], patient_id, patient_id)
    _set_name(everything, patient_id, given, family)
    shaped = shapes.apply(shape, everything, rng, as_of)
    record, own_drafts = split_drafts(shaped)
    return record, own_drafts


def _case_patient(
    scenario: Scenario,
    patient_id: str,
    rng: random.Random,
    as_of: dt.date,
    evaluator: _Evaluator,
    hooks: Sequence[str],
    menu: Sequence[str],
) -> KitPatient:
    moved = shift_dates(scenario.resources(), (as_of - scenario.as_of).days)
    base, drafts = split_drafts(moved)
    wanted_shape = rng.choice(shapes.SHAPES)
    wanted_noise = rng.randint(*NOISE_RANGE)
    attempts = [(wanted_shape, wanted_noise), ("as-written", wanted_noise), ("as-written", 0)]
    attempts = list(dict.fromkeys(attempts))
    patient: KitPatient | None = None
    for shape, count in attempts:
        state = rng.getstate()
        record, own_drafts = _assemble(base, drafts, patient_id, rng, as_of, shape, count)
        rng.setstate(state)
        patient = KitPatient(patient_id, "case", scenario.fixture, shape, count, record, own_drafts)
        patient.calls = _calls(evaluator, evaluator.ruleset, hooks, menu, patient, as_of)
        patient.replays = _replays(patient, scenario.uses)
        if all(r["holds"] for r in patient.replays):
            break
    assert patient is not None
    if (patient.shape, patient.noise) != attempts[0]:
        patient.rebuilt = (
            f"shape {wanted_shape!r} with {wanted_noise} noise resources changed what a case of "
            f"{scenario.fixture} shows; rebuilt as {patient.shape!r} with {patient.noise}"
        )
    return patient


def _control_patient(name: str, patient_id: str, rng: random.Random, as_of: dt.date) -> KitPatient:
    base = _control(name, patient_id, rng, as_of)
    shape = rng.choice(shapes.SHAPES)
    count = rng.randint(*NOISE_RANGE)
    record, drafts = _assemble(base, [], patient_id, rng, as_of, shape, count)
    return KitPatient(patient_id, "control", name, shape, count, record, drafts)
