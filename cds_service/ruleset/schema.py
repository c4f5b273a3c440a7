"""The rule file format (one rule per rules/*.yaml) and the checked, loaded `Rule`.

`RuleFile` is the pydantic model of what an author writes (unknown keys refused). The loader
turns it into a frozen `Rule`: trigger names expanded to canonical ingredients, the `when`
condition parsed into the closed condition language, and every cross-reference (facts,
citations, templates) checked. Field meanings are documented for authors in rules/README.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..citations import EvidenceLevel
from ..wire import Indicator
from .conditions import Condition, facts_read

Hook = Literal["patient-view", "order-select", "order-sign"]
RuleStatus = Literal["active", "silent", "retired"]
RULE_STATUSES: tuple[str, ...] = ("active", "silent", "retired")
"""active: evaluated, cards returned; silent: evaluated, cards recorded in the store but never
returned to the EHR (a trial in production); retired: not evaluated by the service."""
HOOKS: tuple[str, ...] = ("patient-view", "order-select", "order-sign")
ORDER_HOOKS: frozenset[str] = frozenset({"order-select", "order-sign"})


DEFAULT_CASE_AS_OF = dt.date(2025, 6, 1)
"""Evaluation date of a rule test case that does not give one (fixtures are dated before it)."""

_ID = r"^[a-z0-9][a-z0-9-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_min_length=1)


class TriggerSpec(_Model):
    ordered: tuple[str, ...] = Field(min_length=1)
    """Canonical ingredient names or drug classes (tki, cd19_directed, cd19_cart)."""
    new_start: bool = False
    """Fire only for an ordered drug the patient has no exposure record of (a new start): an
    educational card is shown once, not on every refill or cycle."""


class UnknownBranch(_Model):
    """The card shown when the condition cannot be decided (on_unknown: branch)."""

    indicator: Indicator
    summary: str


class CardSpec(_Model):
    template: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    """Name of cards/<template>.md.j2."""
    summary: str
    """Jinja template of the summary (plain text, under 140 characters once rendered)."""
    facts: tuple[str, ...] = ()
    """Facts the card text shows beyond those its condition reads."""


class SuggestionSpec(_Model):
    label: str
    description: str
    """Description of the create action."""
    resource: dict[str, Any]
    """FHIR R4 resource to create; string values are Jinja templates (patient_reference)."""
    recommended: bool = False


class OverrideReasonSpec(_Model):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    system: str
    display: str


class CaseSpec(_Model):
    fixture: str = Field(pattern=r"^fhir_fixtures/rules/(fires|silent)-[a-z0-9-]+\.json$")
    """Path from the repository root, e.g. fhir_fixtures/rules/fires-x.json."""
    hook: Hook
    order: str | None = None
    """Draft order id/reference in the bundle, or an ingredient/brand name to order."""
    expect: Literal["fires", "silent"]
    branch: Literal["match", "unknown"] | None = None
    """For `fires`: which branch must fire (default: either)."""
    as_of: dt.date = DEFAULT_CASE_AS_OF
    note: str | None = None


class RuleFile(_Model):
    id: str = Field(pattern=_ID, max_length=60)
    version: str = Field(pattern=r"^[0-9]+(\.[0-9]+){0,2}$")
    title: str
    description: str
    enabled: bool
    status: RuleStatus = "active"
    hooks: tuple[Hook, ...] = Field(min_length=1)
    trigger: TriggerSpec | None = None
    when: Any
    on_unknown: Literal["silent", "fire", "branch"]
    when_unknown: UnknownBranch | None = None
    indicator: Indicator
    critical_basis: Literal["ineffective-drug", "documented-contraindication"] | None = None
    evidence: tuple[EvidenceLevel, ...] = Field(min_length=1)
    citations: tuple[str, ...] = Field(min_length=1)
    card: CardSpec
    suggestions: tuple[SuggestionSpec, ...] = ()
    override_reasons: tuple[OverrideReasonSpec, ...] = ()
    cases: tuple[CaseSpec, ...] = Field(min_length=2)


Branch = Literal["match", "unknown"]


@dataclass(frozen=True)
class Rule:
    """One loaded, checked rule."""

    id: str
    version: str
    title: str
    description: str
    enabled: bool
    hooks: tuple[str, ...]
    trigger: frozenset[str] | None
    """Canonical ingredients of which one must be ordered (order hooks); None = no trigger."""
    condition: Condition
    on_unknown: Literal["silent", "fire", "branch"]
    when_unknown: UnknownBranch | None
    indicator: Indicator
    critical_basis: str | None
    evidence: tuple[str, ...]
    citations: tuple[str, ...]
    card: CardSpec
    suggestions: tuple[SuggestionSpec, ...]
    override_reasons: tuple[OverrideReasonSpec, ...]
    cases: tuple[CaseSpec, ...]
    source: str
    """File the rule came from, as shown in messages (rules/x.yaml)."""
    new_start: bool = False
    """Trigger only on an ordered drug with no exposure record (see TriggerSpec.new_start)."""
    status: RuleStatus = "active"
    """active | silent | retired (see RULE_STATUSES)."""

    @property
    def evaluated(self) -> bool:
        """The service evaluates the rule: enabled and not retired."""
        return self.enabled and self.status != "retired"

    @property
    def returned(self) -> bool:
        """Its cards go back to the EHR (a silent rule's are only recorded)."""
        return self.status != "silent"

    def facts_read(self) -> frozenset[str]:
        """Facts the rule reads: its condition, its card, the order when it has a trigger, and
        the exposures of the triggering drugs when it fires on a new start only."""
        names = set(facts_read(self.condition)) | set(self.card.facts)
        if self.trigger is not None:
            names.add("order.ingredients")
            if self.new_start:
                names |= {f"exposure.{d}" for d in self.trigger}
        return frozenset(names)

    def indicator_for(self, branch: Branch) -> Indicator:
        if branch == "unknown" and self.when_unknown is not None:
            return self.when_unknown.indicator
        return self.indicator
