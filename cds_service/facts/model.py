"""The types of the clinical facts that rules are written against: values, dates, provenance.

Each fact is declared once in `cds_service.facts.catalogue` (kind, values, the resource types
it reads, its reducer, its description); extraction (`cds_service.facts.extract`) fills a
`Facts` object; the rule loader refuses a rule naming a fact that is not declared, or
comparing it with a value the fact can never take.

Missing data is *unknown*, never *negative*: a fact with no evidence has value "unknown"
(tri and enum kinds), None (number kind) or an empty set (set kind), and no provenance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from cds_service.facts.reducers import Reducer

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
DRUG_CLASSES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"tki": TKIS, "cd19_directed": CD19_DIRECTED, "cd19_cart": CD19_CART}
)
"""Names a rule trigger (and facts.yaml) may use for a group of canonical ingredients."""


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
    """One fact's declaration (see `cds_service.facts.catalogue`)."""

    kind: FactKind
    description: str
    values: tuple[str, ...] = ()
    """Allowed values for tri/enum kinds, and the universe for set kinds (empty = open set)."""
    sources: tuple[str, ...] = ()
    """FHIR resource types the fact is read from (discovery derives prefetch from them)."""
    reducer: Reducer | None = None
    """How evidence becomes the fact; None for facts filled from the orders of the call."""

    def unknown(self) -> Fact:
        """The fact with no evidence, for its kind."""
        if self.kind in ("tri", "enum"):
            return Fact("unknown" if "unknown" in self.values else "never")
        if self.kind == "number":
            return Fact(None)
        return Fact(frozenset())

    def check(self, name: str, fact: Fact) -> None:
        """Raise ValueError when fact's value is not one this fact can take."""
        v = fact.value
        if self.kind in ("tri", "enum"):
            if not isinstance(v, str) or v not in self.values:
                raise ValueError(f"fact {name}: {v!r} not one of {self.values}")
        elif self.kind == "number":
            if v is not None and not isinstance(v, int | float):
                raise ValueError(f"fact {name}: {v!r} is not a number")
        elif not isinstance(v, frozenset) or (self.values and not v <= set(self.values)):
            raise ValueError(f"fact {name}: {v!r} is not a subset of {self.values or 'strings'}")


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
    unrecognised_codes: tuple[str, ...] = ()
    """"SYSTEM|CODE" of order codes that resolved to no ingredient (logged, never silent)."""

    @staticmethod
    def build(
        values: Mapping[str, Fact],
        orders: Iterable[OrderedItem] = (),
        context_orders: Iterable[OrderedItem] = (),
        issues: Iterable[str] = (),
        unrecognised_codes: Iterable[str] = (),
    ) -> Facts:
        """Fill every declared fact (unknown where absent) and check each value's kind."""
        from cds_service.facts.catalogue import build_facts

        return build_facts(values, orders, context_orders, issues, unrecognised_codes)

    def get(self, name: str) -> Fact:
        return self.values[name]
