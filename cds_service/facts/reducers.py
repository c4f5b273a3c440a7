"""How evidence over time becomes a fact: the reducers the catalogue declares facts with.

A reducer reads the evidence items of its declared keys (and, for derived facts, facts
reduced before it) and returns the fact, or None for "no evidence" (the fact is then unknown).
Every fact carries the provenance of the items that decided it and, where later or earlier
evidence was outweighed, a detail that says so.

* `YesOnly` — history: "yes" with evidence, never "no" (the absence of a record is not a "no");
  dated by the earliest item (diagnoses) or the latest (relapse, HSCT).
* `PositiveWins` — Ph status: positive if any positive evidence (Ph+ disease stays Ph+ through
  molecular response), else negative if any negative evidence.
* `LatestWins` — latest reliable result (MRD, response, transcript); a same-date conflict
  resolves to the more cautious value by a declared precedence.
* `Status` — disease status with a history state: the latest assessment wins; a positive
  followed by a later negative assessment is "cleared" (date = last positive, end = the
  negative), distinct from active ("yes").
* the specialised reducers below: BCR::ABL1 ratio and trend, ABL1 mutations, CD19 on the
  leukemic population against the latest relapse, drug exposure with supersession and
  staleness, arterial risk with the latest smoking status, and the derived facts.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cds_service.facts.evidence import Ev, Evidence, latest
from cds_service.facts.model import (
    CD19_DIRECTED,
    DRUG_CLASSES,
    TKIS,
    Fact,
    PartialDate,
    Provenance,
)
from cds_service.facts.parameters import FactParameters

_MIN = dt.date.min


@dataclass
class Inputs:
    """What a reducer may read: evidence by key (and item), facts reduced so far, as_of."""

    evidence: Sequence[Evidence]
    as_of: dt.date | None
    parameters: FactParameters
    facts: dict[str, Fact] = field(default_factory=dict)
    _by_key: dict[Ev, list[Evidence]] = field(default_factory=dict)
    _by_item: dict[tuple[Ev, str | None], list[Evidence]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        by_key: dict[Ev, list[Evidence]] = defaultdict(list)
        by_item: dict[tuple[Ev, str | None], list[Evidence]] = defaultdict(list)
        for e in self.evidence:
            by_key[e.key].append(e)
            by_item[(e.key, e.item)].append(e)
        self._by_key = dict(by_key)
        self._by_item = dict(by_item)

    def items(self, key: Ev, item: str | None = None) -> list[Evidence]:
        if item is None:
            return self._by_key.get(key, [])
        return self._by_item.get((key, item), [])

    def fact(self, name: str) -> Fact | None:
        return self.facts.get(name)


class Reducer(Protocol):
    """Declared on a fact: the evidence keys it reads, the facts it needs, and the function."""

    @property
    def evidence(self) -> tuple[Ev, ...]: ...

    @property
    def needs(self) -> tuple[str, ...]: ...

    def __call__(self, name: str, inputs: Inputs) -> Fact | None: ...


# -- helpers -----------------------------------------------------------------------------------


def provs(items: Iterable[Evidence]) -> tuple[Provenance, ...]:
    seen: dict[Provenance, None] = {}
    for e in sorted(items, key=lambda e: e.sort_key()):
        for p in e.provenance:
            seen.setdefault(p, None)
    return tuple(seen)


def _start(d: PartialDate | None) -> dt.date:
    return d.start if d else _MIN


def _latest(items: Sequence[Evidence]) -> Evidence:
    return max(items, key=lambda e: e.sort_key())


def _dated(items: Iterable[Evidence]) -> list[Evidence]:
    return [e for e in items if e.date is not None]


def _after(a: PartialDate | None, b: PartialDate | None) -> bool:
    """a surely after b (both dated)."""
    return a is not None and b is not None and a.surely_after(b)


# -- generic reducers --------------------------------------------------------------------------


@dataclass(frozen=True)
class YesOnly:
    key: Ev
    earliest: bool = False
    needs: tuple[str, ...] = ()

    @property
    def evidence(self) -> tuple[Ev, ...]:
        return (self.key,)

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        items = sorted(inputs.items(self.key), key=lambda e: e.sort_key())
        if not items:
            return None
        dated = _dated(items)
        pick = (dated[0] if dated else items[0]) if self.earliest else items[-1]
        details = sorted({e.detail for e in items if e.detail})
        if any(e.detail is None for e in items) and all(
            d.startswith(("type not stated", "implied by")) for d in details
        ):
            details = []  # a plainly stated item makes the hedged ones moot
        return Fact("yes", pick.date, detail="; ".join(details) or None, provenance=provs(items))


@dataclass(frozen=True)
class PositiveWins:
    key: Ev
    needs: tuple[str, ...] = ()

    @property
    def evidence(self) -> tuple[Ev, ...]:
        return (self.key,)

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        items = inputs.items(self.key)
        pos = [e for e in items if e.value == "positive"]
        neg = [e for e in items if e.value == "negative"]
        if pos:
            last = _latest(pos)
            detail = last.detail
            if any(_after(e.date, last.date) for e in neg):
                later = "a later qualitative negative result is on record"
                detail = f"{detail}; {later}" if detail else later
            return Fact("positive", last.date, detail=detail, provenance=provs(pos))
        if neg:
            last = _latest(neg)
            return Fact("negative", last.date, detail=last.detail, provenance=provs(neg))
        return None


def _latest_wins(items: Sequence[Evidence], precedence: Sequence[str]) -> tuple[Evidence, Fact]:
    best = max(
        items,
        key=lambda e: (
            _start(e.date),
            e.date.end if e.date else _MIN,
            -precedence.index(e.value) if e.value in precedence else -len(precedence),
            e.provenance[0].resource if e.provenance else "",
        ),
    )
    same = [e for e in items if e.date == best.date and e.value == best.value]
    return best, Fact(best.value, best.date, detail=best.detail, provenance=provs(same))


@dataclass(frozen=True)
class LatestWins:
    key: Ev
    precedence: tuple[str, ...]
    """Same-date conflicts: the earlier in this tuple wins (the more cautious reading)."""
    note_others: bool = False
    """Say in the detail which other values were recorded (e.g. another transcript)."""
    needs: tuple[str, ...] = ()

    @property
    def evidence(self) -> tuple[Ev, ...]:
        return (self.key,)

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        items = inputs.items(self.key)
        if not items:
            return None
        _, fact = _latest_wins(items, self.precedence)
        if self.note_others:
            others = sorted({e.value for e in items} - {fact.value})
            detail = f"also recorded: {', '.join(others)}" if others else None
            return Fact(fact.value, fact.date, detail=detail, provenance=fact.provenance)
        return fact


def status_of(items: Sequence[Evidence]) -> Fact | None:
    """Latest reliable assessment of a status with history (yes / no / cleared).

    yes = a positive assessment with no later negative one; cleared = the latest positive was
    followed by a negative assessment, or the record itself calls it resolved (a "resolved"
    item is a positive at its date and a negative at its end): date = the last positive, end =
    the first negative after it; no = only negative assessments. A positive and a negative on
    the same (or an overlapping partial) date: the positive stands. Undated positives count
    when no positive is dated; then any dated negative outweighs them.
    """
    pos = [e for e in items if e.value in ("yes", "resolved")]
    neg: list[tuple[PartialDate | None, Evidence]] = [(e.date, e) for e in items if e.value == "no"]
    neg += [(e.end, e) for e in pos if e.value == "resolved" and e.end is not None]
    if not pos:
        plain = [e for _, e in neg]
        if not plain:
            return None
        last_neg = _latest(plain)
        return Fact("no", last_neg.date, provenance=provs(plain))
    dated_pos = _dated(pos)
    if dated_pos:
        last_date: PartialDate | None = max(
            (e.date for e in dated_pos if e.date), key=lambda d: (d.start, d.end)
        )
        latest_pos = [e for e in dated_pos if e.date == last_date]
    else:
        last_date, latest_pos = None, pos
    if last_date is None:
        clearing = [(d, e) for d, e in neg if d is not None]
    else:
        clearing = [(d, e) for d, e in neg if d is not None and d.surely_after(last_date)]
    self_resolved = all(e.value == "resolved" and e.end is None for e in latest_pos)
    if clearing or self_resolved:
        end = min((d for d, _ in clearing if d), key=lambda d: (d.start, d.end), default=None)
        shown = f"cleared {end}" if end else "recorded as resolved"
        return Fact(
            "cleared",
            last_date,
            end=end,
            detail=f"involvement {last_date or '(undated)'}; {shown}",
            provenance=provs([*pos, *(e for _, e in clearing)]),
        )
    earlier = [
        e for d, e in neg if d is not None and last_date is not None and last_date.surely_after(d)
    ]
    detail = f"earlier negative result {_latest(earlier).date}" if earlier else None
    return Fact("yes", last_date, detail=detail, provenance=provs(pos))


@dataclass(frozen=True)
class Status:
    key: Ev
    needs: tuple[str, ...] = ()

    @property
    def evidence(self) -> tuple[Ev, ...]:
        return (self.key,)

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        return status_of(inputs.items(self.key))


# -- extramedullary ----------------------------------------------------------------------------


def _site_status(inputs: Inputs) -> dict[str, Fact]:
    sites: dict[str, list[Evidence]] = defaultdict(list)
    for e in inputs.items(Ev.EXTRAMEDULLARY):
        sites[e.item or "other"].append(e)
    out: dict[str, Fact] = {}
    for site, items in sites.items():
        fact = status_of(items)
        if fact is not None:
            out[site] = fact
    return out


@dataclass(frozen=True)
class ExtramedullaryInvolvement:
    """Outside the CNS, per site latest assessment: yes if any site is active, cleared if
    every involved site has cleared, no if only negative assessments."""

    evidence: tuple[Ev, ...] = (Ev.EXTRAMEDULLARY,)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        per_site = _site_status(inputs)
        if not per_site:
            return None
        for value in ("yes", "cleared", "no"):
            chosen = {s: f for s, f in sorted(per_site.items()) if f.value == value}
            if chosen:
                facts = list(chosen.values())
                last = max(facts, key=lambda f: (_start(f.date), f.date.end if f.date else _MIN))
                detail = ", ".join(
                    f"{s}: {f.detail}" if f.detail else s for s, f in sorted(chosen.items())
                )
                return Fact(
                    value,
                    last.date,
                    end=last.end if value == "cleared" else None,
                    detail=detail,
                    provenance=tuple(p for f in facts for p in f.provenance),
                )
        return None  # pragma: no cover - status_of only returns these values


@dataclass(frozen=True)
class ExtramedullarySites:
    """Sites with active involvement (the CNS included when CNS involvement is active)."""

    evidence: tuple[Ev, ...] = (Ev.EXTRAMEDULLARY,)
    needs: tuple[str, ...] = ("cns.involvement",)

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        active = {s: f for s, f in _site_status(inputs).items() if f.value == "yes"}
        cns = inputs.fact("cns.involvement")
        if cns is not None and cns.value == "yes":
            active["cns"] = cns
        if not active:
            return None
        facts = [active[s] for s in sorted(active)]
        last = max(facts, key=lambda f: (_start(f.date), f.date.end if f.date else _MIN))
        return Fact(
            frozenset(active),
            last.date,
            provenance=tuple(p for f in facts for p in f.provenance),
        )


# -- BCR::ABL1 ---------------------------------------------------------------------------------


def _ratios(inputs: Inputs) -> list[Evidence]:
    return sorted(
        (e for e in inputs.items(Ev.BCR_ABL1_RATIO) if e.number is not None),
        key=lambda e: e.sort_key(),
    )


@dataclass(frozen=True)
class BcrAbl1Latest:
    evidence: tuple[Ev, ...] = (Ev.BCR_ABL1_RATIO,)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        ratios = _ratios(inputs)
        if not ratios:
            return None
        last = ratios[-1]
        assert last.number is not None
        return Fact(last.number, last.date, detail=last.detail, provenance=last.provenance)


@dataclass(frozen=True)
class BcrAbl1Trend:
    """Latest vs previous dated ratio: rising when it grew more than the declared factor (or
    from 0 to > 0), falling when it shrank as much (or to 0), else stable."""

    evidence: tuple[Ev, ...] = (Ev.BCR_ABL1_RATIO,)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        dated = _dated(_ratios(inputs))
        if len(dated) < 2:
            return None
        cur, prev = dated[-1], dated[-2]
        assert cur.number is not None and prev.number is not None
        factor = inputs.parameters.bcr_abl1.trend_factor
        if prev.number == 0:
            trend = "rising" if cur.number > 0 else "stable"
        elif cur.number == 0:
            trend = "falling"
        elif cur.number > prev.number * factor:
            trend = "rising"
        elif cur.number * factor < prev.number:
            trend = "falling"
        else:
            trend = "stable"
        shown = (
            f"{prev.detail or prev.number} ({prev.date}) → {cur.detail or cur.number} ({cur.date})"
        )
        return Fact(trend, cur.date, detail=shown, provenance=provs([prev, cur]))


# -- ABL1 kinase-domain mutations ---------------------------------------------------------------


@dataclass(frozen=True)
class MutationTest:
    """yes when a kinase-domain mutation result exists (interpretable or not); date = latest.
    A BCR::ABL1 fusion finding is never a kinase-domain result (readers do not emit one)."""

    evidence: tuple[Ev, ...] = (Ev.ABL1_RESULT,)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        results = inputs.items(Ev.ABL1_RESULT)
        if not results:
            return None
        last = _latest(results)
        detail = (
            "latest result could not be interpreted" if last.value == "uninterpretable" else None
        )
        return Fact("yes", last.date, detail=detail, provenance=provs(results))


@dataclass(frozen=True)
class Mutations:
    """Mutations ever reported detected; a later negative test does not erase them."""

    evidence: tuple[Ev, ...] = (Ev.ABL1_DETECTED,)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        detected = inputs.items(Ev.ABL1_DETECTED)
        if not detected:
            return None
        return Fact(
            frozenset(e.item for e in detected if e.item),
            _latest(detected).date,
            provenance=provs(detected),
        )


@dataclass(frozen=True)
class ConcurrentMutations:
    """The largest number of distinct mutations reported detected on one day (one sample:
    possibly compound mutations); date = that day. Unknown with no mutation detected."""

    evidence: tuple[Ev, ...] = (Ev.ABL1_DETECTED,)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        days: dict[PartialDate, list[Evidence]] = defaultdict(list)
        for e in inputs.items(Ev.ABL1_DETECTED):
            if e.date is not None and e.item:
                days[e.date].append(e)
        if not days:
            return None

        def weight(day: PartialDate) -> tuple[int, dt.date]:
            return len({e.item for e in days[day]}), day.start

        day = max(days, key=weight)
        found = sorted({e.item for e in days[day] if e.item})
        return Fact(float(len(found)), day, detail=", ".join(found), provenance=provs(days[day]))


@dataclass(frozen=True)
class TkiMutationResistance:
    """TKIs whose activity a detected mutation is reported to reduce, by the mutation x TKI
    table of rules/facts.yaml (abl1.reduced_sensitivity); detail = each TKI with its mutations
    and the source's words; date = the latest such detection."""

    evidence: tuple[Ev, ...] = (Ev.ABL1_DETECTED,)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        detected = inputs.items(Ev.ABL1_DETECTED)
        found = {e.item for e in detected if e.item}
        if not found:
            return None
        hits: dict[str, list[str]] = defaultdict(list)
        used: set[str] = set()
        for row in inputs.parameters.abl1.reduced_sensitivity:
            matched = [m for m in row.mutations if m in found]
            if matched:
                hits[row.tki].append(f"{'/'.join(matched)} {row.effect}")
                used.update(matched)
        if not hits:
            return None
        involved = [e for e in detected if e.item in used]
        return Fact(
            frozenset(hits),
            _latest(involved).date,
            detail="; ".join(f"{tki}: {', '.join(parts)}" for tki, parts in sorted(hits.items())),
            provenance=provs(involved),
        )


@dataclass(frozen=True)
class Mutation:
    """One named mutation: yes if ever detected (the detail says what later tests found); no
    when the latest result that speaks of it is readable and none detected it; unknown
    otherwise — an uninterpretable result is never "tested, absent"."""

    mutation: str
    evidence: tuple[Ev, ...] = (Ev.ABL1_RESULT, Ev.ABL1_DETECTED, Ev.ABL1_ABSENT)
    needs: tuple[str, ...] = ()

    def _relevant(self, inputs: Inputs) -> tuple[list[Evidence], set[str]]:
        absent = {a.origin for a in inputs.items(Ev.ABL1_ABSENT, self.mutation)}
        relevant = [
            r
            for r in inputs.items(Ev.ABL1_RESULT)
            if r.value != "absent_only" or r.origin in absent
        ]
        return relevant, absent

    def _said(self, result: Evidence, absent: set[str]) -> str:
        if result.origin in absent:
            return f"{self.mutation} not detected"
        return {
            "none": "no mutation detected",
            "uninterpretable": "could not be interpreted",
        }.get(result.value, f"{self.mutation} not among the mutations reported")

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        relevant, absent = self._relevant(inputs)
        found = inputs.items(Ev.ABL1_DETECTED, self.mutation)
        if found:
            last = _latest(found)
            later = [r for r in relevant if _after(r.date, last.date) and r.origin != last.origin]
            detail = None
            if later:
                newest = _latest(later)
                said = self._said(newest, absent)
                detail = f"{self.mutation} {last.date}; later test {newest.date}: {said}"
            return Fact("yes", last.date, detail=detail, provenance=provs([*found, *later]))
        if not relevant:
            return None
        newest = _latest(relevant)
        if newest.value == "uninterpretable":
            return None
        detail = self._said(newest, absent)
        stated = [
            a for a in inputs.items(Ev.ABL1_ABSENT, self.mutation) if a.origin == newest.origin
        ]
        return Fact("no", newest.date, detail=detail, provenance=provs([newest, *stated]))


# -- CD19 ----------------------------------------------------------------------------------


_CD19_PRECEDENCE = ("negative", "dim", "positive")


@dataclass(frozen=True)
class CD19Status:
    """Latest CD19 result on the leukemic population (lymphocyte-subset results are never
    evidence); a same-date conflict reads the more cautious value (negative > dim > positive)."""

    evidence: tuple[Ev, ...] = (Ev.CD19,)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        items = inputs.items(Ev.CD19)
        if not items:
            return None
        best, fact = _latest_wins(items, _CD19_PRECEDENCE)
        earlier = [e for e in items if _after(best.date, e.date) and e.value != best.value]
        notes = [f"on {'blasts' if best.item == 'blasts' else 'a population not stated'}"]
        if earlier:
            prev = _latest(earlier)
            notes.append(f"earlier result {prev.date}: {prev.value}")
        return Fact(fact.value, fact.date, detail="; ".join(notes), provenance=fact.provenance)


@dataclass(frozen=True)
class CD19Population:
    """The population the deciding CD19 result was measured on: blasts (named, or a leukemia
    immunophenotype), or unstated."""

    evidence: tuple[Ev, ...] = (Ev.CD19,)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        items = inputs.items(Ev.CD19)
        if not items:
            return None
        best, fact = _latest_wins(items, _CD19_PRECEDENCE)
        population = best.item if best.item in ("blasts", "unstated") else "unstated"
        return Fact(population, best.date, provenance=fact.provenance)


@dataclass(frozen=True)
class CD19Timing:
    """The deciding CD19 result against the latest relapse: on or after it, before it, no
    relapse recorded, or unknown (a date that cannot be placed)."""

    evidence: tuple[Ev, ...] = ()
    needs: tuple[str, ...] = ("cd19.status", "relapse")

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        cd19 = inputs.fact("cd19.status")
        if cd19 is None:
            return None
        relapse = inputs.fact("relapse")
        if relapse is None or relapse.value != "yes":
            return Fact("no_relapse_recorded", cd19.date, provenance=cd19.provenance)
        if cd19.date is None or relapse.date is None:
            return None
        both = (*cd19.provenance, *relapse.provenance)
        if cd19.date.end < relapse.date.start:
            detail = f"CD19 result {cd19.date}, before the relapse of {relapse.date}"
            return Fact("before_latest_relapse", cd19.date, detail=detail, provenance=both)
        if cd19.date.start >= relapse.date.end:
            detail = f"CD19 result {cd19.date}, relapse {relapse.date}"
            return Fact("after_latest_relapse", cd19.date, detail=detail, provenance=both)
        return None


# -- exposures ---------------------------------------------------------------------------------

_OPEN_ENDED_TYPES = ("MedicationRequest/", "MedicationStatement/")


def _class_peers(drug: str, classes: Sequence[str]) -> tuple[str, ...]:
    for name in classes:
        members = DRUG_CLASSES.get(name, ())
        if drug in members:
            return tuple(m for m in members if m != drug)
    return ()


def _last_seen(items: Iterable[Evidence], as_of: dt.date | None) -> PartialDate | None:
    """When the drug was last started, ordered, given or stopped. A medication-list review
    (MedicationStatement.dateAsserted) is not evidence of taking it: not counted here."""
    dates: list[PartialDate | None] = []
    for e in items:
        dates.append(e.date)
        if not e.origin.startswith("MedicationStatement/"):
            dates.append(e.asserted)
        if e.end is not None and (as_of is None or e.end.start <= as_of):
            dates.append(e.end)
    return latest(*dates)


@dataclass(frozen=True)
class Exposure:
    """current / past / never for one ingredient.

    current: any record that is current (see facts.exposure) and not outweighed. An open-ended
    `active` request or statement is outweighed when its latest assertion is older than the
    declared staleness window, or when another drug of its class (facts.yaml
    `supersede_within`) was started after this drug was last seen — unless that drug was
    already running before (two drugs of a class taken together, not a switch). past: the
    latest episode (its start, end and stop reason); when an active record was outweighed, the
    detail says which and why.
    """

    drug: str
    evidence: tuple[Ev, ...] = (Ev.EXPOSURE,)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        items = inputs.items(Ev.EXPOSURE, self.drug)
        if not items:
            return None
        params = inputs.parameters.exposure
        peers = _class_peers(self.drug, params.supersede_within)
        seen = _last_seen(items, inputs.as_of)
        newer_peer: tuple[str, PartialDate] | None = None
        for peer in peers:
            peer_items = inputs.items(Ev.EXPOSURE, peer)
            if any(
                e.value == "current" and e.date is not None and not _after(e.date, seen)
                for e in peer_items
            ):
                continue  # the peer was already running: taken together, not a switch
            for e in peer_items:
                if e.date is None or not _after(e.date, seen):
                    continue
                if newer_peer is None or e.date.start < newer_peer[1].start:
                    newer_peer = (peer, e.date)  # the first start of another drug since
        current: list[Evidence] = []
        stale: list[PartialDate] = []
        superseded = False
        limit = inputs.as_of - dt.timedelta(days=params.stale_after_days) if inputs.as_of else None
        for e in items:
            if e.value != "current":
                continue
            if e.end is None and e.origin.startswith(_OPEN_ENDED_TYPES):
                base = latest(e.asserted, e.date)
                if base is not None and limit is not None and base.end < limit:
                    stale.append(base)
                    continue
                if newer_peer is not None:
                    superseded = True
                    continue
            current.append(e)
        reasons: list[str] = []
        if stale:
            shown = ", ".join(sorted({str(d) for d in stale}))
            reasons.append(
                f"active record last asserted {shown}: older than {params.stale_after_days} "
                "days, not read as current"
            )
        if superseded and newer_peer is not None:
            peer, started = newer_peer
            reasons.append(
                f"active record superseded by {peer.replace('_', ' ')} started {started}"
            )
        note = "; ".join(reasons) or None
        if current:
            starts = [e.date for e in current if e.date]
            start = min(starts, key=lambda d: (d.start, d.end)) if starts else None
            return Fact("current", start, provenance=provs(current))
        last = max(items, key=lambda e: (_start(e.end or e.date), _start(e.date), e.sort_key()))
        detail = "; ".join(x for x in (last.detail, note) if x) or None
        return Fact(
            "past",
            last.date,
            end=last.end,
            detail=detail,
            provenance=provs(items),
        )


@dataclass(frozen=True)
class ExposureGroup:
    """Exposure to any member of a group (any CD19 CAR-T product)."""

    members: tuple[str, ...]
    evidence: tuple[Ev, ...] = ()
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", tuple(f"exposure.{m}" for m in self.members))

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        facts = [f for m in self.members if (f := inputs.fact(f"exposure.{m}")) is not None]
        if not facts:
            return None
        current = [f for f in facts if f.value == "current"]
        pool = current or facts
        pick = max(pool, key=lambda f: (_start(f.end or f.date), _start(f.date)))
        return Fact(
            pick.value,
            pick.date,
            end=pick.end,
            detail=pick.detail,
            provenance=tuple(p for f in pool for p in f.provenance),
        )


def _exposure_facts(inputs: Inputs, drugs: Iterable[str]) -> dict[str, Fact]:
    return {d: f for d in drugs if (f := inputs.fact(f"exposure.{d}")) is not None}


@dataclass(frozen=True)
class TkiCurrent:
    evidence: tuple[Ev, ...] = ()
    needs: tuple[str, ...] = tuple(f"exposure.{d}" for d in TKIS)

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        current = {d: f for d, f in _exposure_facts(inputs, TKIS).items() if f.value == "current"}
        if not current:
            return None
        return Fact(
            frozenset(current),
            provenance=tuple(p for d in sorted(current) for p in current[d].provenance),
        )


@dataclass(frozen=True)
class TkiAny:
    evidence: tuple[Ev, ...] = ()
    needs: tuple[str, ...] = tuple(f"exposure.{d}" for d in TKIS)

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        ever = _exposure_facts(inputs, TKIS)
        if not ever:
            return None
        return Fact(
            frozenset(ever), provenance=tuple(p for d in sorted(ever) for p in ever[d].provenance)
        )


@dataclass(frozen=True)
class TkiSwitch:
    """yes with two or more distinct TKIs on record (date = start of the newest), no with
    exactly one, unknown with none."""

    evidence: tuple[Ev, ...] = (Ev.EXPOSURE,)
    needs: tuple[str, ...] = tuple(f"exposure.{d}" for d in TKIS)

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        ever = _exposure_facts(inputs, TKIS)
        if not ever:
            return None
        if len(ever) == 1:
            (only,) = ever
            return Fact("no", detail=f"only {only} recorded", provenance=ever[only].provenance)
        firsts = {
            d: min((_start(e.date) for e in inputs.items(Ev.EXPOSURE, d)), default=_MIN)
            for d in ever
        }
        order = sorted(ever, key=lambda d: (firsts[d] == _MIN, firsts[d], d))
        newest = max(ever, key=lambda d: (firsts[d], d))
        newest_start = min(
            (e.date for e in inputs.items(Ev.EXPOSURE, newest) if e.date),
            key=lambda d: (d.start, d.end),
            default=None,
        )
        return Fact(
            "yes",
            newest_start,
            detail=" → ".join(order),
            provenance=tuple(p for d in order for p in ever[d].provenance),
        )


@dataclass(frozen=True)
class TkiSwitchReason:
    """Why the TKI before the newest one was stopped: resistance, intolerance, or unknown (no
    reason recorded, or both recorded for it)."""

    evidence: tuple[Ev, ...] = (Ev.STOP_REASON,)
    needs: tuple[str, ...] = ("tki.switch",)

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        switch = inputs.fact("tki.switch")
        if switch is None or switch.value != "yes" or not switch.detail:
            return None
        order = switch.detail.split(" → ")
        if len(order) < 2:
            return None
        previous = order[-2]
        reasons = inputs.items(Ev.STOP_REASON, previous)
        if not reasons:
            return None
        last = _latest(reasons)
        if {e.value for e in reasons if e.date == last.date} != {last.value}:
            return None  # both said on the same day: not one reason
        detail = f"{previous.replace('_', ' ')} stopped for {last.value}"
        return Fact(last.value, last.date, detail=detail, provenance=provs(reasons))


@dataclass(frozen=True)
class Planned:
    """Ingredients of therapy planned but not yet given (facts.plans)."""

    evidence: tuple[Ev, ...] = (Ev.PLANNED,)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        items = inputs.items(Ev.PLANNED)
        if not items:
            return None
        return Fact(
            frozenset(e.item for e in items if e.item),
            _latest(items).date,
            provenance=provs(items),
        )


@dataclass(frozen=True)
class CD19Directed:
    """Latest exposure to any CD19-directed therapy (blinatumomab, CD19 CAR-T)."""

    evidence: tuple[Ev, ...] = ()
    needs: tuple[str, ...] = tuple(f"exposure.{d}" for d in CD19_DIRECTED)

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        facts = _exposure_facts(inputs, CD19_DIRECTED)
        if not facts:
            return None
        value = "current" if any(f.value == "current" for f in facts.values()) else "past"
        pool = {d: f for d, f in facts.items() if f.value == value}
        drug, last = max(
            pool.items(),
            key=lambda df: (_start(df[1].end or df[1].date), _start(df[1].date), df[0]),
        )
        shown = {d: _display_drug(d) for d in pool}
        others = sorted(n for d, n in shown.items() if d != drug)
        detail = f"latest: {shown[drug]}" + (f" (also {', '.join(others)})" if others else "")
        return Fact(
            value,
            last.date,
            end=last.end if value == "past" else None,
            detail=detail,
            provenance=tuple(p for d in sorted(pool) for p in pool[d].provenance),
        )


def _display_drug(drug: str) -> str:
    return (
        "CD19 CAR-T (product not named)" if drug == "cd19_cart_unnamed" else drug.replace("_", " ")
    )


@dataclass(frozen=True)
class Frontline:
    """no when relapse, allogeneic HSCT or CAR-T is recorded; yes when B-ALL is recorded
    without them; unknown otherwise."""

    evidence: tuple[Ev, ...] = ()
    needs: tuple[str, ...] = ("diagnosis.b_all", "relapse", "hsct.allogeneic", "exposure.cd19_cart")

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        blockers: list[tuple[str, Fact]] = []
        for fact_name, label in (("relapse", "relapse"), ("hsct.allogeneic", "allogeneic HSCT")):
            f = inputs.fact(fact_name)
            if f is not None and f.value == "yes":
                blockers.append((label, f))
        cart = inputs.fact("exposure.cd19_cart")
        if cart is not None and cart.value in ("current", "past"):
            blockers.append(("CAR-T", cart))
        if blockers:
            return Fact(
                "no",
                latest(*(f.date for _, f in blockers)),
                detail=", ".join(label for label, _ in blockers) + " recorded",
                provenance=tuple(p for _, f in blockers for p in f.provenance),
            )
        ball = inputs.fact("diagnosis.b_all")
        if ball is not None and ball.value == "yes":
            return Fact(
                "yes",
                ball.date,
                detail="B-ALL without relapse, HSCT or CAR-T on record",
                provenance=ball.provenance,
            )
        return None


# -- arterial risk -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArterialRisk:
    """yes when a risk factor is recorded (hypertension, diabetes, dyslipidaemia, CAD, stroke,
    PAD) or the latest smoking status is current smoking; never "no"."""

    evidence: tuple[Ev, ...] = (Ev.ARTERIAL_RISK, Ev.SMOKING)
    needs: tuple[str, ...] = ()

    def __call__(self, name: str, inputs: Inputs) -> Fact | None:
        factors = list(inputs.items(Ev.ARTERIAL_RISK))
        smoking = inputs.items(Ev.SMOKING)
        notes: list[str] = []
        if smoking:
            best, _ = _latest_wins(smoking, ("current", "former", "never"))
            if best.value == "current":
                factors.append(best)
            elif any(e.value == "current" for e in smoking):
                notes.append(f"earlier smoking on record; latest status {best.date}: {best.value}")
        if not factors:
            return None
        ordered = sorted(factors, key=lambda e: e.sort_key())
        names = sorted({e.detail or (e.item or "risk factor") for e in ordered})
        return Fact(
            "yes",
            ordered[-1].date,
            detail="; ".join([*names, *notes]),
            provenance=provs(ordered),
        )


def reduce_all(declared: Mapping[str, Reducer], inputs: Inputs) -> dict[str, Fact]:
    """Run every declared reducer in declaration order (a reducer's needs come before it)."""
    for name, reducer in declared.items():
        fact = reducer(name, inputs)
        if fact is not None:
            inputs.facts[name] = fact
    return inputs.facts
