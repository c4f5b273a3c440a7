"""The typed clinical facts that rules are written against: values, dates and provenance.

Every fact has a name in FACT_CATALOGUE, which fixes its kind and allowed values. Extraction
(`cds_service.facts.extract`) fills a `Facts` object; the rule loader refuses a rule naming a
fact that is not in the catalogue, or comparing it with a value the fact can never take.

Missing data is *unknown*, never *negative*: a fact with no evidence has value "unknown"
(tri and enum kinds), None (number kind) or an empty set (set kind), and no provenance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Tri = Literal["yes", "no", "unknown"]
FactKind = Literal["tri", "enum", "number", "set"]
FactValue = str | float | frozenset[str] | None

# Canonical ingredient names used everywhere (value sets, orders, rules).
TKIS: tuple[str, ...] = (
    "imatinib",
    "dasatinib",
    "nilotinib",
    "bosutinib",
    "ponatinib",
    "asciminib",
)
CD19_CART: tuple[str, ...] = (
    "tisagenlecleucel",
    "brexucabtagene_autoleucel",
    "obecabtagene_autoleucel",
    "cd19_cart_unnamed",
)
"""The last stands for a CAR-T order that names no product: in B-ALL it is CD19-directed
(as ICD-10-CM Z92.850 is read), so CD19 checks still apply to it."""
INGREDIENTS: tuple[str, ...] = (
    *TKIS,
    "blinatumomab",
    "inotuzumab_ozogamicin",
    *CD19_CART,
)
CD19_DIRECTED: tuple[str, ...] = ("blinatumomab", *CD19_CART)


@dataclass(frozen=True, slots=True, order=True)
class PartialDate:
    """A FHIR date that may be partial (YYYY, YYYY-MM, YYYY-MM-DD): the range it covers."""

    start: dt.date
    end: dt.date
    text: str

    @staticmethod
    def parse(text: str | None) -> PartialDate | None:
        """Parse a FHIR date/dateTime/instant; None when absent or unparseable."""
        if not text or not isinstance(text, str):
            return None
        raw = text.strip()
        try:
            if len(raw) == 4:
                y = int(raw)
                return PartialDate(dt.date(y, 1, 1), dt.date(y, 12, 31), raw)
            if len(raw) == 7:
                y, m = int(raw[:4]), int(raw[5:7])
                nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
                return PartialDate(dt.date(y, m, 1), nxt - dt.timedelta(days=1), raw)
            day = dt.date.fromisoformat(raw[:10])
            return PartialDate(day, day, raw[:10])
        except ValueError:
            return None

    def surely_before(self, other: PartialDate) -> bool:
        """True only when every day this date may stand for lies before every day of other."""
        return self.end < other.start

    def surely_after(self, other: PartialDate) -> bool:
        return self.start > other.end

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Provenance:
    """Which resource proved a fact, and what in it matched."""

    resource: str
    """Reference of the resource, e.g. "Observation/bcr-1"."""
    matched: str
    """The code ("http://loinc.org|46434-7") or text ("text: BCR-ABL p190") that matched."""
    via: str
    """How it matched: "code", "product-code", "atc", "text", "component", "hgvs", "reference", …"""


@dataclass(frozen=True, slots=True)
class Fact:
    """One fact: its value, the date of the evidence, and where it came from."""

    value: FactValue
    date: PartialDate | None = None
    """Date of the deciding evidence (onset, effective date, exposure start …)."""
    end: PartialDate | None = None
    """End of a period where the fact has one (exposure stop), else None."""
    detail: str | None = None
    """Short human-readable detail, e.g. "p.Thr315Ile" or "stopped: resistance"."""
    provenance: tuple[Provenance, ...] = ()

    @property
    def known(self) -> bool:
        if self.value is None or self.value == "unknown":
            return False
        return not (isinstance(self.value, frozenset) and not self.value)


@dataclass(frozen=True, slots=True)
class FactSpec:
    kind: FactKind
    description: str
    values: tuple[str, ...] = ()
    """Allowed values for tri/enum kinds, and the universe for set kinds (empty = open set)."""


_TRI = ("yes", "no", "unknown")
_EXPOSURE = ("current", "past", "never")
_EXPOSURE_NOTE = " 'never' means no record of it in the data supplied, not a proven absence."


def _catalogue() -> dict[str, FactSpec]:
    c: dict[str, FactSpec] = {
        "diagnosis.b_all": FactSpec(
            "tri", "B-cell ALL recorded (SNOMED 91857003, ICD-10-CM C91.0x).", _TRI
        ),
        "diagnosis.cml": FactSpec(
            "tri", "CML, BCR::ABL1-positive, recorded (C92.1x, SNOMED 92818009).", _TRI
        ),
        "diagnosis.cml_lymphoid_blast": FactSpec(
            "tri", "CML in lymphoid blast phase recorded.", _TRI
        ),
        "relapse": FactSpec(
            "tri",
            "Relapse recorded (C91.02, relapse Condition or disease-status Observation); date = latest.",
            _TRI,
        ),
        "ph_status": FactSpec(
            "enum",
            "Philadelphia chromosome / BCR::ABL1 status.",
            ("positive", "negative", "unknown"),
        ),
        "bcr_abl1.transcript": FactSpec(
            "enum", "BCR::ABL1 transcript type.", ("p190", "p210", "other", "unknown")
        ),
        "bcr_abl1.latest": FactSpec(
            "number", "Latest quantitative BCR::ABL1 ratio (%), date = its effective date."
        ),
        "bcr_abl1.trend": FactSpec(
            "enum",
            "Trend of the last quantitative BCR::ABL1 results; date = latest.",
            ("rising", "falling", "stable", "unknown"),
        ),
        "tki.current": FactSpec("set", "TKIs currently taken (canonical names).", TKIS),
        "tki.any": FactSpec("set", "TKIs ever recorded, current or past.", TKIS),
        "tki.switch": FactSpec(
            "tri",
            "A change from one TKI to another is recorded; date = start of the newest TKI.",
            _TRI,
        ),
        "abl1.t315i": FactSpec(
            "tri",
            "ABL1 T315I detected (yes), tested and absent (no), or no result (unknown).",
            _TRI,
        ),
        "abl1.mutations": FactSpec(
            "set", "ABL1 kinase-domain mutations detected, one-letter protein form (e.g. T315I)."
        ),
        "abl1.mutation_test": FactSpec(
            "tri", "An ABL1 kinase-domain mutation result exists; date = latest result.", _TRI
        ),
        "cns.involvement": FactSpec(
            "tri",
            "CNS leukemic involvement (CSF blasts, CSF cytology/flow, CNS Condition); date = latest.",
            _TRI,
        ),
        "extramedullary.involvement": FactSpec(
            "tri", "Extramedullary involvement outside the CNS; date = latest.", _TRI
        ),
        "extramedullary.sites": FactSpec(
            "set", "Extramedullary sites recorded.", ("cns", "testis", "skin", "other")
        ),
        "cd19.status": FactSpec(
            "enum",
            "CD19 on blasts, latest result; date = its date.",
            ("positive", "negative", "dim", "unknown"),
        ),
        "cd19_directed": FactSpec(
            "enum",
            "Latest exposure to any CD19-directed therapy (blinatumomab, CD19 CAR-T); date = its start."
            + _EXPOSURE_NOTE,
            _EXPOSURE,
        ),
        "blinatumomab.response": FactSpec(
            "enum", "Recorded response to blinatumomab.", ("response", "no_response", "unknown")
        ),
        "hsct.allogeneic": FactSpec(
            "tri", "Allogeneic HSCT recorded (procedure, Z94.84); date = latest.", _TRI
        ),
        "hsct.haploidentical": FactSpec("tri", "Haploidentical HSCT recorded.", _TRI),
        "hsct.treg_tcon": FactSpec(
            "tri",
            "T-cell-depleted HSCT with donor Treg/Tcon (no post-transplant immunosuppression).",
            _TRI,
        ),
        "dli": FactSpec("tri", "Donor lymphocyte infusion recorded.", _TRI),
        "mrd.status": FactSpec(
            "enum",
            "Latest measurable residual disease result.",
            ("negative", "positive", "unknown"),
        ),
        "arterial_risk": FactSpec(
            "tri",
            "Arterial risk factor recorded (hypertension, diabetes, dyslipidaemia, smoking, CAD, stroke, PAD).",
            _TRI,
        ),
        "frontline": FactSpec(
            "tri",
            "Frontline B-ALL: ALL recorded with no record of relapse, HSCT or CAR-T (no = relapse/HSCT recorded; unknown = no ALL diagnosis).",
            _TRI,
        ),
        "order.ingredients": FactSpec(
            "set", "Ingredients of the orders under decision.", INGREDIENTS
        ),
        "order.context_ingredients": FactSpec(
            "set", "Ingredients of other draft orders (context only).", INGREDIENTS
        ),
    }
    for drug in (*TKIS, "blinatumomab", "inotuzumab_ozogamicin", *CD19_CART):
        c[f"exposure.{drug}"] = FactSpec(
            "enum",
            f"Exposure to {drug.replace('_', ' ')}; date = start, end = stop, detail = stop reason."
            + _EXPOSURE_NOTE,
            _EXPOSURE,
        )
    c["exposure.cd19_cart"] = FactSpec(
        "enum", "Exposure to any CD19 CAR-T product (or Z92.850)." + _EXPOSURE_NOTE, _EXPOSURE
    )
    return c


FACT_CATALOGUE: Mapping[str, FactSpec] = MappingProxyType(_catalogue())


def unknown_fact(name: str) -> Fact:
    """The fact with no evidence, for its kind."""
    spec = FACT_CATALOGUE[name]
    if spec.kind in ("tri", "enum"):
        return Fact("unknown" if "unknown" in spec.values else "never")
    if spec.kind == "number":
        return Fact(None)
    return Fact(frozenset())


@dataclass(frozen=True, slots=True)
class OrderedItem:
    """One order under decision (or in context), resolved to an ingredient where possible."""

    resource: str
    """Reference, e.g. "MedicationRequest/draft-1"."""
    ingredient: str | None
    """Canonical ingredient name, or None when nothing matched (e.g. no drug chosen yet)."""
    text: str
    """What the order says, for display."""
    provenance: tuple[Provenance, ...] = ()


@dataclass(frozen=True)
class Facts:
    """All facts for one patient and one decision. Construct with `Facts.build`."""

    values: Mapping[str, Fact]
    orders: tuple[OrderedItem, ...] = ()
    context_orders: tuple[OrderedItem, ...] = ()
    issues: tuple[str, ...] = field(default=())
    """Non-fatal notes from extraction (unparseable dates, unmatched orders …)."""

    @staticmethod
    def build(
        values: Mapping[str, Fact],
        orders: Iterable[OrderedItem] = (),
        context_orders: Iterable[OrderedItem] = (),
        issues: Iterable[str] = (),
    ) -> Facts:
        """Fill every catalogue name (unknown where absent) and check each value's kind."""
        orders = tuple(orders)
        context_orders = tuple(context_orders)
        full: dict[str, Fact] = {}
        for name, spec in FACT_CATALOGUE.items():
            fact = values.get(name) or unknown_fact(name)
            _check(name, spec, fact)
            full[name] = fact
        unknown_names = set(values) - set(FACT_CATALOGUE)
        if unknown_names:
            raise KeyError(f"facts not in the catalogue: {sorted(unknown_names)}")
        full["order.ingredients"] = Fact(
            frozenset(o.ingredient for o in orders if o.ingredient),
            provenance=tuple(p for o in orders for p in o.provenance),
        )
        full["order.context_ingredients"] = Fact(
            frozenset(o.ingredient for o in context_orders if o.ingredient),
            provenance=tuple(p for o in context_orders for p in o.provenance),
        )
        return Facts(MappingProxyType(full), orders, context_orders, tuple(issues))

    def get(self, name: str) -> Fact:
        return self.values[name]


def _check(name: str, spec: FactSpec, fact: Fact) -> None:
    v = fact.value
    if spec.kind in ("tri", "enum"):
        if not isinstance(v, str) or v not in spec.values:
            raise ValueError(f"fact {name}: {v!r} not one of {spec.values}")
    elif spec.kind == "number":
        if v is not None and not isinstance(v, int | float):
            raise ValueError(f"fact {name}: {v!r} is not a number")
    elif not isinstance(v, frozenset) or (spec.values and not v <= set(spec.values)):
        raise ValueError(f"fact {name}: {v!r} is not a subset of {spec.values or 'strings'}")


def _sources() -> dict[str, tuple[str, ...]]:
    cond, obs, proc = "Condition", "Observation", "Procedure"
    meds = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
    out: dict[str, tuple[str, ...]] = {}
    for name in FACT_CATALOGUE:
        if name.startswith("order."):
            out[name] = ()
        elif name.startswith("diagnosis."):
            out[name] = (cond,)
        elif name.startswith(("tki.", "exposure.")) or name == "cd19_directed":
            out[name] = (*meds, proc)
        elif name.startswith(("hsct.",)) or name == "dli":
            out[name] = (proc, cond)
        elif name in ("ph_status", "cns.involvement") or name.startswith("extramedullary."):
            out[name] = (obs, cond)
        elif name in ("relapse", "arterial_risk"):
            out[name] = (cond, obs)
        elif name == "frontline":
            out[name] = (cond, obs, proc, *meds)
        elif name == "blinatumomab.response":
            out[name] = (obs, *meds)
        else:
            out[name] = (obs,)
    return out


FACT_SOURCES: Mapping[str, tuple[str, ...]] = MappingProxyType(_sources())
"""FHIR resource types each fact is derived from; discovery builds prefetch templates from it."""
