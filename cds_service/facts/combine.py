"""Reduce evidence items to facts: the tri-state, latest-wins and exposure rules in one place.

Conventions (every fact also carries the provenance of the items that decided it):

* yes-only facts (diagnoses, relapse, HSCT, DLI, arterial risk): "yes" with evidence, else
  "unknown" — the absence of a record is never "no". Diagnoses are dated by their earliest
  evidence, the others by their latest.
* ph_status: positive if any positive evidence (Ph+ disease stays Ph+ through molecular
  response), else negative if any negative evidence, else unknown.
* cns.involvement: yes if any positive evidence (detail notes a later negative result), else
  no if a negative CSF/CNS-status result exists, else unknown.
* latest-wins facts (cd19.status, mrd.status, blinatumomab.response, bcr_abl1.transcript,
  bcr_abl1.latest): the latest dated item; same-date conflicts resolve to the more cautious
  reading (CD19: negative > dim > positive; MRD: positive > negative; response: no_response).
* bcr_abl1.trend: latest vs previous dated ratio; rising when it grew more than
  `TREND_FACTOR`-fold (or from 0 to > 0), falling when it shrank as much (or to 0), else stable.
* abl1.t315i: yes if T315I was ever detected; no if an ABL1 mutation result exists and none
  detected T315I; unknown without a result.
* exposures: current if any record is current, else past (the latest episode: its start, end
  and stop reason), else never. tki.switch: yes with two or more distinct TKIs on record, no
  with exactly one, unknown with none. cd19_directed: the same over blinatumomab and CD19 CAR-T.
* frontline: no when relapse, allogeneic HSCT or CAR-T is recorded; yes when B-ALL is recorded
  without them; unknown otherwise.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

from cds_service.facts.evidence import Evidence
from cds_service.facts.model import (
    CD19_CART,
    CD19_DIRECTED,
    INGREDIENTS,
    TKIS,
    Fact,
    PartialDate,
    Provenance,
)

TREND_FACTOR = 3.0
"""About half a log: smaller moves between two BCR::ABL1 results are called stable."""

_MIN = dt.date.min


def _provs(items: Iterable[Evidence]) -> tuple[Provenance, ...]:
    seen: dict[Provenance, None] = {}
    for e in items:
        for p in e.provenance:
            seen.setdefault(p, None)
    return tuple(seen)


def _latest(items: Sequence[Evidence]) -> Evidence:
    return max(items, key=lambda e: e.sort_key())


def _start(d: PartialDate | None) -> dt.date:
    return d.start if d else _MIN


def _yes(items: Sequence[Evidence], *, earliest: bool = False) -> Fact:
    ordered = sorted(items, key=lambda e: e.sort_key())
    dated = [e for e in ordered if e.date]
    pick = (dated[0] if dated else ordered[0]) if earliest else ordered[-1]
    details = sorted({e.detail for e in ordered if e.detail})
    if any(e.detail is None for e in ordered) and all(
        d.startswith(("type not stated", "implied by")) for d in details
    ):
        details = []  # a plainly stated item makes the hedged ones moot
    return Fact("yes", pick.date, detail="; ".join(details) or None, provenance=_provs(ordered))


def _latest_wins(items: Sequence[Evidence], precedence: Sequence[str]) -> Fact:
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
    return Fact(
        best.value,
        best.date,
        detail=best.detail,
        provenance=_provs(sorted(same, key=lambda e: e.sort_key())),
    )


def _exposure(items: Sequence[Evidence]) -> Fact:
    current = [e for e in items if e.value == "current"]
    ordered = sorted(items, key=lambda e: e.sort_key())
    if current:
        starts = [e.date for e in current if e.date]
        start = min(starts, key=lambda d: (d.start, d.end)) if starts else None
        return Fact(
            "current", start, provenance=_provs(sorted(current, key=lambda e: e.sort_key()))
        )
    last = max(
        ordered,
        key=lambda e: (_start(e.end or e.date), _start(e.date), e.sort_key()),
    )
    return Fact("past", last.date, end=last.end, detail=last.detail, provenance=_provs(ordered))


def combine(evidence: Sequence[Evidence]) -> dict[str, Fact]:
    by: dict[str, list[Evidence]] = defaultdict(list)
    for e in evidence:
        by[e.key].append(e)
    out: dict[str, Fact] = {}

    for name in ("diagnosis.b_all", "diagnosis.cml", "diagnosis.cml_lymphoid_blast"):
        if by[name]:
            out[name] = _yes(by[name], earliest=True)
    for name in ("relapse", "hsct.allogeneic", "hsct.haploidentical", "hsct.treg_tcon", "dli"):
        if by[name]:
            out[name] = _yes(by[name])
    if by["arterial_risk"]:
        out["arterial_risk"] = _yes(by["arterial_risk"])

    _ph(by, out)
    _bcr_abl1(by, out)
    _abl1(by, out)
    _cns_em(by, out)
    if by["cd19"]:
        out["cd19.status"] = _latest_wins(by["cd19"], ("negative", "dim", "positive"))
    if by["mrd"]:
        out["mrd.status"] = _latest_wins(by["mrd"], ("positive", "negative"))
    if by["blinatumomab.response"]:
        out["blinatumomab.response"] = _latest_wins(
            by["blinatumomab.response"], ("no_response", "response")
        )
    _exposures(by, out)
    _frontline(out)
    return out


def _ph(by: dict[str, list[Evidence]], out: dict[str, Fact]) -> None:
    pos = [e for e in by["ph"] if e.value == "positive"]
    neg = [e for e in by["ph"] if e.value == "negative"]
    if pos:
        latest = _latest(pos)
        detail = latest.detail
        later_neg = [e for e in neg if e.date and latest.date and e.date.surely_after(latest.date)]
        if later_neg:
            detail = (
                detail + "; " if detail else ""
            ) + "a later qualitative negative result is on record"
        out["ph_status"] = Fact(
            "positive",
            latest.date,
            detail=detail,
            provenance=_provs(sorted(pos, key=lambda e: e.sort_key())),
        )
    elif neg:
        latest = _latest(neg)
        out["ph_status"] = Fact(
            "negative",
            latest.date,
            detail=latest.detail,
            provenance=_provs(sorted(neg, key=lambda e: e.sort_key())),
        )


def _bcr_abl1(by: dict[str, list[Evidence]], out: dict[str, Fact]) -> None:
    if by["transcript"]:
        fact = _latest_wins(by["transcript"], ("p190", "p210", "other"))
        others = sorted({e.value for e in by["transcript"]} - {fact.value})
        detail = f"also recorded: {', '.join(others)}" if others else None
        out["bcr_abl1.transcript"] = Fact(
            fact.value, fact.date, detail=detail, provenance=fact.provenance
        )
    quant = sorted(
        (e for e in by["bcr_abl1.quant"] if e.number is not None), key=lambda e: e.sort_key()
    )
    if not quant:
        return
    latest = quant[-1]
    assert latest.number is not None
    out["bcr_abl1.latest"] = Fact(
        latest.number, latest.date, detail=latest.detail, provenance=latest.provenance
    )
    dated = [e for e in quant if e.date]
    if len(dated) < 2:
        return
    cur, prev = dated[-1], dated[-2]
    assert cur.number is not None and prev.number is not None
    if prev.number == 0:
        trend = "rising" if cur.number > 0 else "stable"
    elif cur.number == 0:
        trend = "falling"
    elif cur.number > prev.number * TREND_FACTOR:
        trend = "rising"
    elif cur.number * TREND_FACTOR < prev.number:
        trend = "falling"
    else:
        trend = "stable"
    out["bcr_abl1.trend"] = Fact(
        trend,
        cur.date,
        detail=(
            f"{prev.detail or prev.number} ({prev.date}) → {cur.detail or cur.number} ({cur.date})"
        ),
        provenance=_provs([prev, cur]),
    )


def _abl1(by: dict[str, list[Evidence]], out: dict[str, Fact]) -> None:
    tests = by["abl1.test"]
    if not tests:
        return
    muts = by["abl1.mut"]
    out["abl1.mutation_test"] = Fact(
        "yes", _latest(tests).date, provenance=_provs(sorted(tests, key=lambda e: e.sort_key()))
    )
    if muts:
        out["abl1.mutations"] = Fact(
            frozenset(e.value for e in muts),
            _latest(muts).date,
            provenance=_provs(sorted(muts, key=lambda e: e.sort_key())),
        )
    t315i = [e for e in muts if e.value == "T315I"]
    if t315i:
        out["abl1.t315i"] = Fact(
            "yes", _latest(t315i).date, provenance=_provs(sorted(t315i, key=lambda e: e.sort_key()))
        )
    else:
        latest = _latest(tests)
        absent = [e for e in by["abl1.absent"] if e.value == "T315I"]
        out["abl1.t315i"] = Fact(
            "no",
            latest.date,
            detail="T315I stated absent" if absent else "not among the mutations reported",
            provenance=_provs(sorted(absent or tests, key=lambda e: e.sort_key())),
        )


def _cns_em(by: dict[str, list[Evidence]], out: dict[str, Fact]) -> None:
    yes = [e for e in by["cns"] if e.value == "yes"]
    no = [e for e in by["cns"] if e.value == "no"]
    if yes:
        latest = _latest(yes)
        later = [e for e in no if e.date and latest.date and e.date.surely_after(latest.date)]
        detail = f"later negative result {_latest(later).date}" if later else None
        out["cns.involvement"] = Fact(
            "yes",
            latest.date,
            detail=detail,
            provenance=_provs(sorted(yes, key=lambda e: e.sort_key())),
        )
    elif no:
        latest = _latest(no)
        out["cns.involvement"] = Fact(
            "no", latest.date, provenance=_provs(sorted(no, key=lambda e: e.sort_key()))
        )
    em = by["em"]
    sites = {e.value for e in em}
    if em:
        out["extramedullary.involvement"] = _yes(em)
    if yes:
        sites.add("cns")
    if sites:
        items = sorted([*em, *yes], key=lambda e: e.sort_key())
        out["extramedullary.sites"] = Fact(
            frozenset(sites), items[-1].date, provenance=_provs(items)
        )


def _exposures(by: dict[str, list[Evidence]], out: dict[str, Fact]) -> None:
    for drug in INGREDIENTS:
        items = by[f"exposure.{drug}"]
        if items:
            out[f"exposure.{drug}"] = _exposure(items)
    cart_items = [e for d in CD19_CART for e in by[f"exposure.{d}"]] + by["exposure.cd19_cart"]
    if cart_items:
        out["exposure.cd19_cart"] = _exposure(cart_items)
    current = sorted(d for d in TKIS if out.get(f"exposure.{d}", Fact("never")).value == "current")
    ever = sorted(d for d in TKIS if f"exposure.{d}" in out)
    if current:
        out["tki.current"] = Fact(
            frozenset(current),
            provenance=tuple(p for d in current for p in out[f"exposure.{d}"].provenance),
        )
    if ever:
        out["tki.any"] = Fact(
            frozenset(ever),
            provenance=tuple(p for d in ever for p in out[f"exposure.{d}"].provenance),
        )
        firsts = {d: min((_start(e.date) for e in by[f"exposure.{d}"]), default=_MIN) for d in ever}
        order = sorted(ever, key=lambda d: (firsts[d] == _MIN, firsts[d], d))
        if len(ever) >= 2:
            newest = max(ever, key=lambda d: (firsts[d], d))
            newest_start = min(
                (e.date for e in by[f"exposure.{newest}"] if e.date),
                key=lambda d: (d.start, d.end),
                default=None,
            )
            out["tki.switch"] = Fact(
                "yes",
                newest_start,
                detail=" → ".join(order),
                provenance=tuple(p for d in order for p in out[f"exposure.{d}"].provenance),
            )
        else:
            out["tki.switch"] = Fact(
                "no",
                detail=f"only {ever[0]} recorded",
                provenance=out[f"exposure.{ever[0]}"].provenance,
            )
    # cd19_directed: latest exposure to any CD19-directed therapy
    directed: list[tuple[str, Evidence]] = [
        (d, e) for d in CD19_DIRECTED for e in by[f"exposure.{d}"]
    ] + [("CD19 CAR-T", e) for e in by["exposure.cd19_cart"]]
    if directed:
        value = "current" if any(e.value == "current" for _, e in directed) else "past"
        pool = [(d, e) for d, e in directed if e.value == value]
        drug, last = max(pool, key=lambda de: (_start(de[1].date), de[1].sort_key(), de[0]))
        names = sorted({d.replace("_", " ") for d, _ in pool})
        out["cd19_directed"] = Fact(
            value,
            last.date,
            end=last.end if value == "past" else None,
            detail=f"latest: {drug.replace('_', ' ')}"
            + (
                f" (also {', '.join(n for n in names if n != drug.replace('_', ' '))})"
                if len(names) > 1
                else ""
            ),
            provenance=_provs(sorted((e for _, e in pool), key=lambda e: e.sort_key())),
        )


def _frontline(out: dict[str, Fact]) -> None:
    blockers: list[tuple[str, Fact]] = []
    for name, label in (("relapse", "relapse"), ("hsct.allogeneic", "allogeneic HSCT")):
        f = out.get(name)
        if f is not None and f.value == "yes":
            blockers.append((label, f))
    cart = out.get("exposure.cd19_cart")
    if cart is not None and cart.value in ("current", "past"):
        blockers.append(("CAR-T", cart))
    if blockers:
        out["frontline"] = Fact(
            "no",
            max(
                (f.date for _, f in blockers if f.date),
                default=None,
                key=lambda d: (d.start, d.end),
            ),
            detail=", ".join(label for label, _ in blockers) + " recorded",
            provenance=tuple(p for _, f in blockers for p in f.provenance),
        )
        return
    ball = out.get("diagnosis.b_all")
    if ball is not None and ball.value == "yes":
        out["frontline"] = Fact(
            "yes",
            ball.date,
            detail="B-ALL without relapse, HSCT or CAR-T on record",
            provenance=ball.provenance,
        )
