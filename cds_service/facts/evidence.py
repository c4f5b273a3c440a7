"""Evidence: what one resource proves about one fact, under a declared key, with its date.

A reader turns one resource into zero or more `Evidence` items; the catalogue's reducers turn
the items into facts. Evidence keys are the closed enum `Ev` (mypy refuses an undeclared key),
each with the values it may carry; `Context.add` refuses anything else at run time, and
`facts.extract` checks at import that every key a reader declares it emits is reduced by some
fact, and every key a fact reduces has a reader. The date helpers read FHIR date shapes once.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from cds_service.facts.model import PartialDate, Provenance
from cds_service.facts.parameters import FactParameters
from cds_service.fhir_input import Record
from cds_service.terminology import Terminology

_MIN_DATE = dt.date.min


class Ev(StrEnum):
    """The evidence keys readers emit. Values each may take: `EVIDENCE_VALUES`."""

    B_ALL = "diagnosis.b_all"
    CML = "diagnosis.cml"
    CML_LYMPHOID_BLAST = "diagnosis.cml_lymphoid_blast"
    T_ALL = "diagnosis.t_all"
    AML = "diagnosis.aml"
    RELAPSE = "relapse"
    PH = "ph"
    TRANSCRIPT = "bcr_abl1.transcript"
    BCR_ABL1_RATIO = "bcr_abl1.ratio"
    ABL1_RESULT = "abl1.result"
    """One kinase-domain mutation result: "mutations" (reports what it detected: others are
    not among them), "none" (no mutation detected), "absent_only" (names only variants it
    found absent: says nothing of others), "uninterpretable" (a result we cannot read)."""
    ABL1_DETECTED = "abl1.detected"
    """One mutation a result reports as detected (item = one-letter form, e.g. T315I)."""
    ABL1_ABSENT = "abl1.absent"
    """One mutation a result states as not detected (item = one-letter form)."""
    CNS = "cns"
    EXTRAMEDULLARY = "extramedullary"
    """Extramedullary involvement outside the CNS (item = site: testis, skin, other)."""
    CD19 = "cd19"
    """CD19 on the leukemic population (item = population: "blasts" or "unstated")."""
    MRD = "mrd"
    BLINATUMOMAB_RESPONSE = "blinatumomab.response"
    HSCT_ALLOGENEIC = "hsct.allogeneic"
    HSCT_HAPLOIDENTICAL = "hsct.haploidentical"
    HSCT_TREG_TCON = "hsct.treg_tcon"
    DLI = "dli"
    ARTERIAL_RISK = "arterial_risk"
    """An arterial risk factor other than smoking (item = the factor)."""
    SMOKING = "smoking"
    """Smoking status at a date (a smoking-status Observation or a smoking Condition)."""
    EXPOSURE = "exposure"
    """One medication / cellular-therapy record (item = canonical ingredient)."""
    STOP_REASON = "stop_reason"
    """Why a drug was stopped, from the record's statusReason (item = ingredient)."""
    INTRATHECAL = "intrathecal"
    """Intrathecal therapy given (route or wording; intrathecal.py)."""
    PLANNED = "planned"
    """A therapy planned but not yet given: a proposal / plan / draft / future-dated
    MedicationRequest, or an active ServiceRequest (item = ingredient)."""


_STATUS = frozenset({"yes", "no", "resolved"})
EVIDENCE_VALUES: Mapping[Ev, frozenset[str]] = MappingProxyType(
    {
        Ev.B_ALL: frozenset({"yes"}),
        Ev.CML: frozenset({"yes"}),
        Ev.CML_LYMPHOID_BLAST: frozenset({"yes"}),
        Ev.T_ALL: frozenset({"yes"}),
        Ev.INTRATHECAL: frozenset({"yes"}),
        Ev.AML: frozenset({"yes"}),
        Ev.RELAPSE: frozenset({"yes"}),
        Ev.PH: frozenset({"positive", "negative"}),
        Ev.TRANSCRIPT: frozenset({"p190", "p210", "other"}),
        Ev.BCR_ABL1_RATIO: frozenset({"ratio"}),
        Ev.ABL1_RESULT: frozenset({"mutations", "none", "absent_only", "uninterpretable"}),
        Ev.ABL1_DETECTED: frozenset({"detected"}),
        Ev.ABL1_ABSENT: frozenset({"absent"}),
        Ev.CNS: _STATUS,
        Ev.EXTRAMEDULLARY: _STATUS,
        Ev.CD19: frozenset({"positive", "negative", "dim"}),
        Ev.MRD: frozenset({"positive", "negative"}),
        Ev.BLINATUMOMAB_RESPONSE: frozenset({"response", "no_response"}),
        Ev.HSCT_ALLOGENEIC: frozenset({"yes"}),
        Ev.HSCT_HAPLOIDENTICAL: frozenset({"yes"}),
        Ev.HSCT_TREG_TCON: frozenset({"yes"}),
        Ev.DLI: frozenset({"yes"}),
        Ev.ARTERIAL_RISK: frozenset({"yes"}),
        Ev.SMOKING: frozenset({"current", "former", "never"}),
        Ev.EXPOSURE: frozenset({"current", "past"}),
        Ev.STOP_REASON: frozenset({"resistance", "intolerance"}),
        Ev.PLANNED: frozenset({"planned"}),
    }
)
"""Status keys (CNS, extramedullary) take yes / no, or "resolved": involvement that the record
itself calls resolved (a Condition inactive / resolved / in remission), dated at its onset with
its end at the abatement when known."""


class UndeclaredEvidence(AssertionError):
    """A reader emitted a key or value that is not declared: a programming error, never data."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """One resource's contribution to one fact."""

    key: Ev
    value: str
    date: PartialDate | None
    provenance: tuple[Provenance, ...]
    detail: str | None = None
    end: PartialDate | None = None
    number: float | None = None
    item: str | None = None
    """What the key is about where it has a subject: ingredient, site, mutation, population."""
    asserted: PartialDate | None = None
    """For exposure records: the latest date the record says it was asserted or authored."""
    origin: str = ""
    """Reference of the resource this came from ("MedicationStatement/ms-1")."""

    def sort_key(self) -> tuple[dt.date, dt.date, str, str, str]:
        d = self.date
        first = self.provenance[0] if self.provenance else Provenance("", "", "")
        return (
            d.start if d else _MIN_DATE,
            d.end if d else _MIN_DATE,
            first.resource,
            first.matched,
            self.value,
        )


@dataclass
class Context:
    """What one extraction run shares: terminology, record, as_of, and the output lists."""

    term: Terminology
    record: Record
    as_of: dt.date | None
    parameters: FactParameters
    evidence: list[Evidence] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    blinatumomab_refs: set[str] = field(default_factory=set)
    """References of blinatumomab exposure records (for linked response Observations)."""
    lumbar_punctures: set[str] = field(default_factory=set)
    """References of lumbar-puncture Procedures (their Observations are CNS assessments)."""
    first_diagnosis: PartialDate | None = None
    """Earliest onset of a leukemia diagnosis in the record (relapse dating: never this)."""
    unrecognised_codes: list[str] = field(default_factory=list)
    """"SYSTEM|CODE" of order codes that resolved to nothing."""

    def add(
        self,
        key: Ev,
        value: str,
        date: PartialDate | None,
        provenance: Provenance | tuple[Provenance, ...],
        *,
        detail: str | None = None,
        end: PartialDate | None = None,
        number: float | None = None,
        item: str | None = None,
        asserted: PartialDate | None = None,
    ) -> None:
        allowed = EVIDENCE_VALUES.get(key)
        if allowed is None or value not in allowed:
            raise UndeclaredEvidence(f"evidence {key!s}={value!r} is not declared")
        prov = (provenance,) if isinstance(provenance, Provenance) else provenance
        origin = prov[0].resource.split("#", 1)[0] if prov else ""
        self.evidence.append(
            Evidence(key, value, date, prov, detail, end, number, item, asserted, origin)
        )


# -- dates ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> PartialDate | None:
    return PartialDate.parse(text)


def parse_date(ctx: Context, value: Any, where: str) -> PartialDate | None:
    """PartialDate of a FHIR date string; an unparseable one is noted in issues."""
    if value is None:
        return None
    parsed = _parse(value) if isinstance(value, str) else None
    if parsed is None:
        ctx.issues.append(f"{where}: unparseable date, ignored")
    return parsed


def first_date(ctx: Context, resource: dict[str, Any], ref: str, *paths: str) -> PartialDate | None:
    """The first present date among dotted paths ("effectivePeriod.start", "issued" …)."""
    for path in paths:
        value: Any = resource
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            parsed = parse_date(ctx, value, f"{ref} {path}")
            if parsed is not None:
                return parsed
    return None


def observation_date(ctx: Context, o: dict[str, Any], ref: str) -> PartialDate | None:
    return first_date(
        ctx, o, ref, "effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"
    )


def condition_onset(ctx: Context, c: dict[str, Any], ref: str) -> PartialDate | None:
    """When the condition began (onset), else when it was recorded."""
    return first_date(
        ctx, c, ref, "onsetDateTime", "onsetPeriod.start", "onsetString", "recordedDate"
    )


def procedure_date(ctx: Context, p: dict[str, Any], ref: str) -> PartialDate | None:
    return first_date(ctx, p, ref, "performedDateTime", "performedPeriod.start", "performedString")


def latest(*dates: PartialDate | None) -> PartialDate | None:
    """The latest of the dates given (by start, then end); None when none is given."""
    present = [d for d in dates if d is not None]
    return max(present, key=lambda d: (d.start, d.end)) if present else None
