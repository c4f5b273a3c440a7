"""The fact catalogue: every fact rules can name, each declared once.

A declaration says the fact's kind and values, the FHIR resource types it is read from (this
drives the prefetch templates discovery publishes), how its evidence is reduced (a reducer
from `facts.reducers`, with the evidence keys it reads and the facts it needs), and what it
means. Derived facts (tki.current, frontline …) take their resource types from the facts they
need. At import, a declaration that needs a fact declared after it, or an evidence key no
fact reduces, is an error; `facts.extract` checks the readers against the same declarations.

Missing data is *unknown*, never *negative*: a fact with no evidence has value "unknown"
(tri and enum kinds), "never" (exposures: no record of it in the data supplied, not a proven
absence), None (number kind) or an empty set (set kind), and no provenance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from cds_service.facts import reducers as R
from cds_service.facts.evidence import Ev, Evidence
from cds_service.facts.model import (
    CD19_CART,
    INGREDIENTS,
    TKIS,
    Fact,
    FactKind,
    Facts,
    FactSpec,
    OrderedItem,
)
from cds_service.facts.parameters import FactParameters

_TRI = ("yes", "no", "unknown")
_YES = ("yes", "unknown")
_STATUS = ("yes", "no", "cleared", "unknown")
_EXPOSURE = ("current", "past", "never")
_EXPOSURE_NOTE = " 'never' means no record of it in the data supplied, not a proven absence."
_COND, _OBS, _PROC, _REPORT = "Condition", "Observation", "Procedure", "DiagnosticReport"
_MEDS = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")

_DECLARED: dict[str, FactSpec] = {}


def declare(
    name: str,
    kind: FactKind,
    description: str,
    values: tuple[str, ...] = (),
    *,
    sources: tuple[str, ...] = (),
    reducer: R.Reducer | None = None,
) -> None:
    """Declare one fact (names are unique; needs must be declared before)."""
    if name in _DECLARED:
        raise AssertionError(f"fact {name} declared twice")
    if reducer is not None:
        for need in reducer.needs:
            if need not in _DECLARED:
                raise AssertionError(f"fact {name} needs {need}, which is not declared before it")
        if not sources:
            sources = tuple(sorted({t for need in reducer.needs for t in _DECLARED[need].sources}))
    _DECLARED[name] = FactSpec(kind, description, values, sources, reducer)


# -- diagnoses and disease course ------------------------------------------------------------

declare(
    "diagnosis.b_all",
    "tri",
    "B-cell ALL recorded (SNOMED 91857003 / 277571004, ICD-10-CM C91.0x, ICD-O-3 9812/3); "
    "date = earliest evidence.",
    _YES,
    sources=(_COND, _OBS, _REPORT),
    reducer=R.YesOnly(Ev.B_ALL, earliest=True),
)
declare(
    "diagnosis.cml",
    "tri",
    "CML, BCR::ABL1-positive, recorded (C92.1x, SNOMED 92818009); date = earliest evidence.",
    _YES,
    sources=(_COND,),
    reducer=R.YesOnly(Ev.CML, earliest=True),
)
declare(
    "diagnosis.cml_lymphoid_blast",
    "tri",
    "CML in lymphoid blast phase recorded.",
    _YES,
    sources=(_COND,),
    reducer=R.YesOnly(Ev.CML_LYMPHOID_BLAST, earliest=True),
)
declare(
    "diagnosis.t_all",
    "tri",
    "T-lineage ALL / lymphoblastic lymphoma recorded (wording only: no verified code); rules "
    "for Ph+ B-ALL use it to stay silent. date = earliest evidence.",
    _YES,
    sources=(_COND,),
    reducer=R.YesOnly(Ev.T_ALL, earliest=True),
)
declare(
    "diagnosis.aml",
    "tri",
    "Acute myeloid leukemia recorded (SNOMED 91861009, ICD-10-CM C92.0x, wording); rules for "
    "Ph+ ALL use it to stay silent. date = earliest evidence.",
    _YES,
    sources=(_COND,),
    reducer=R.YesOnly(Ev.AML, earliest=True),
)
declare(
    "relapse",
    "tri",
    "Relapse recorded (C91.02, relapse Condition or status, disease-status Observation); date = "
    "the latest relapse, dated by the evidence that the patient is in relapse (never the onset "
    "of the original diagnosis).",
    _YES,
    sources=(_COND, _OBS),
    reducer=R.YesOnly(Ev.RELAPSE),
)

# -- Ph / BCR::ABL1 ----------------------------------------------------------------------------

declare(
    "ph_status",
    "enum",
    "Philadelphia chromosome / BCR::ABL1 status (results, t(9;22) by karyotype, FISH or ISCN, "
    "BCR::ABL1 fusion variants, report conclusions, wording).",
    ("positive", "negative", "unknown"),
    sources=(_OBS, _COND, _REPORT),
    reducer=R.PositiveWins(Ev.PH),
)
declare(
    "bcr_abl1.transcript",
    "enum",
    "BCR::ABL1 transcript type (latest; detail names others recorded).",
    ("p190", "p210", "other", "unknown"),
    sources=(_OBS,),
    reducer=R.LatestWins(Ev.TRANSCRIPT, ("p190", "p210", "other"), note_others=True),
)
declare(
    "bcr_abl1.latest",
    "number",
    "Latest quantitative BCR::ABL1 ratio (%), date = its effective date.",
    sources=(_OBS,),
    reducer=R.BcrAbl1Latest(),
)
declare(
    "bcr_abl1.trend",
    "enum",
    "Trend of the last two quantitative BCR::ABL1 results (factor in facts.yaml); date = latest.",
    ("rising", "falling", "stable", "unknown"),
    sources=(_OBS,),
    reducer=R.BcrAbl1Trend(),
)

# -- exposures ---------------------------------------------------------------------------------

for _drug in INGREDIENTS:
    declare(
        f"exposure.{_drug}",
        "enum",
        f"Exposure to {_drug.replace('_', ' ')}; date = start, end = stop, detail = stop reason "
        "or why an active record was not read as current." + _EXPOSURE_NOTE,
        _EXPOSURE,
        sources=(*_MEDS, _PROC, *((_COND,) if _drug == "cd19_cart_unnamed" else ())),
        reducer=R.Exposure(_drug),
    )
declare(
    "exposure.cd19_cart",
    "enum",
    "Exposure to any CD19 CAR-T product (named or not, or ICD-10-CM Z92.850)." + _EXPOSURE_NOTE,
    _EXPOSURE,
    reducer=R.ExposureGroup(CD19_CART),
)
declare(
    "tki.current", "set", "TKIs currently taken (canonical names).", TKIS, reducer=R.TkiCurrent()
)
declare("tki.any", "set", "TKIs ever recorded, current or past.", TKIS, reducer=R.TkiAny())
declare(
    "tki.switch",
    "tri",
    "A change from one TKI to another is recorded; date = start of the newest TKI.",
    _TRI,
    reducer=R.TkiSwitch(),
)
declare(
    "tki.switch_reason",
    "enum",
    "Why the TKI before the newest one was stopped (its statusReason): resistance, "
    "intolerance, or unknown.",
    ("resistance", "intolerance", "unknown"),
    sources=_MEDS,
    reducer=R.TkiSwitchReason(),
)
declare(
    "planned",
    "set",
    "Therapy planned but not yet given (proposal / plan / draft / future-dated "
    "MedicationRequests, open ServiceRequests), by ingredient.",
    INGREDIENTS,
    sources=("MedicationRequest", "ServiceRequest"),
    reducer=R.Planned(),
)
declare(
    "cd19_directed",
    "enum",
    "Latest exposure to any CD19-directed therapy (blinatumomab, CD19 CAR-T); date = its start."
    + _EXPOSURE_NOTE,
    _EXPOSURE,
    reducer=R.CD19Directed(),
)

# -- ABL1 kinase domain ------------------------------------------------------------------------

declare(
    "abl1.mutation_test",
    "tri",
    "An ABL1 kinase-domain mutation result exists (a BCR::ABL1 fusion finding is not one); "
    "date = latest result.",
    _YES,
    sources=(_OBS, _REPORT),
    reducer=R.MutationTest(),
)
declare(
    "abl1.mutations",
    "set",
    "ABL1 kinase-domain mutations ever reported detected, one-letter protein form (e.g. T315I).",
    sources=(_OBS, _REPORT),
    reducer=R.Mutations(),
)
declare(
    "abl1.t315i",
    "tri",
    "ABL1 T315I detected (yes, even if a later test reports none: the detail says so), tested "
    "and absent on a readable latest result (no), or unknown (no result, or the latest could "
    "not be interpreted).",
    _TRI,
    sources=(_OBS, _REPORT),
    reducer=R.Mutation("T315I"),
)
declare(
    "abl1.concurrent_mutations",
    "number",
    "The largest number of distinct kinase-domain mutations reported detected on one day (one "
    "sample: possibly compound mutations); detail = those mutations.",
    sources=(_OBS, _REPORT),
    reducer=R.ConcurrentMutations(),
)
declare(
    "tki.mutation_resistance",
    "set",
    "TKIs whose activity a detected mutation is reported to reduce, by the mutation x TKI table "
    "of rules/facts.yaml (T315I is left to abl1.t315i); detail = each TKI with its mutations "
    "and the source's words.",
    TKIS,
    sources=(_OBS, _REPORT),
    reducer=R.TkiMutationResistance(),
)

# -- CNS and extramedullary --------------------------------------------------------------------

declare(
    "intrathecal",
    "tri",
    "Intrathecal therapy given (a medication by the intrathecal route, or a completed Procedure "
    "or given medication worded as intrathecal chemotherapy); date = the latest.",
    _YES,
    sources=("MedicationAdministration", "MedicationStatement", _PROC),
    reducer=R.YesOnly(Ev.INTRATHECAL),
)

declare(
    "cns.involvement",
    "enum",
    "CNS leukemic involvement, latest assessment: yes (active), cleared (a later negative CSF or "
    "a resolved CNS Condition: date = last positive, end = clearance), no (only negative "
    "assessments). CSF blasts, cytology, flow, CNS status, CNS Condition or wording.",
    _STATUS,
    sources=(_OBS, _COND, _PROC),
    reducer=R.Status(Ev.CNS),
)
declare(
    "extramedullary.involvement",
    "enum",
    "Extramedullary involvement outside the CNS, latest assessment per site: yes (any site "
    "active), cleared, no.",
    _STATUS,
    sources=(_OBS, _COND),
    reducer=R.ExtramedullaryInvolvement(),
)
declare(
    "extramedullary.sites",
    "set",
    "Sites with active extramedullary involvement (the CNS included when active).",
    ("cns", "testis", "skin", "other"),
    sources=(_OBS, _COND),
    reducer=R.ExtramedullarySites(),
)

# -- CD19 --------------------------------------------------------------------------------------

declare(
    "cd19.status",
    "enum",
    "CD19 on the leukemic population (blasts), latest result; lymphocyte-subset and B-cell "
    "counts are not blast CD19 status. Date = its date.",
    ("positive", "negative", "dim", "unknown"),
    sources=(_OBS, _COND, _REPORT),
    reducer=R.CD19Status(),
)
declare(
    "cd19.population",
    "enum",
    "What the deciding CD19 result was measured on: blasts (named, or a leukemia "
    "immunophenotype) or unstated.",
    ("blasts", "unstated", "unknown"),
    sources=(_OBS, _COND, _REPORT),
    reducer=R.CD19Population(),
)
declare(
    "cd19.timing",
    "enum",
    "The deciding CD19 result against the latest relapse: after_latest_relapse (on or after "
    "it), before_latest_relapse, no_relapse_recorded, or unknown.",
    ("after_latest_relapse", "before_latest_relapse", "no_relapse_recorded", "unknown"),
    reducer=R.CD19Timing(),
)
declare(
    "blinatumomab.response",
    "enum",
    "Recorded response to blinatumomab (latest).",
    ("response", "no_response", "unknown"),
    sources=(_OBS, *_MEDS),
    reducer=R.LatestWins(Ev.BLINATUMOMAB_RESPONSE, ("no_response", "response")),
)

# -- transplant, MRD, risk, course -------------------------------------------------------------

declare(
    "hsct.allogeneic",
    "tri",
    "Allogeneic HSCT recorded (procedure, Z94.84); date = latest.",
    _YES,
    sources=(_PROC, _COND),
    reducer=R.YesOnly(Ev.HSCT_ALLOGENEIC),
)
declare(
    "hsct.haploidentical",
    "tri",
    "Haploidentical HSCT recorded.",
    _YES,
    sources=(_PROC, _COND),
    reducer=R.YesOnly(Ev.HSCT_HAPLOIDENTICAL),
)
declare(
    "hsct.treg_tcon",
    "tri",
    "T-cell-depleted HSCT with donor Treg/Tcon (no post-transplant immunosuppression).",
    _YES,
    sources=(_PROC, _COND),
    reducer=R.YesOnly(Ev.HSCT_TREG_TCON),
)
declare(
    "dli",
    "tri",
    "Donor lymphocyte infusion recorded.",
    _YES,
    sources=(_PROC, _COND),
    reducer=R.YesOnly(Ev.DLI),
)
declare(
    "mrd.status",
    "enum",
    "Latest measurable residual disease result.",
    ("negative", "positive", "unknown"),
    sources=(_OBS,),
    reducer=R.LatestWins(Ev.MRD, ("positive", "negative")),
)
declare(
    "arterial_risk",
    "tri",
    "Arterial risk factor recorded (hypertension, diabetes, dyslipidaemia, CAD, stroke, PAD, or "
    "current smoking by the latest smoking status).",
    _YES,
    sources=(_COND, _OBS),
    reducer=R.ArterialRisk(),
)
declare(
    "frontline",
    "tri",
    "Frontline B-ALL: ALL recorded with no record of relapse, HSCT or CAR-T (no = relapse/HSCT/"
    "CAR-T recorded; unknown = no ALL diagnosis).",
    _TRI,
    reducer=R.Frontline(),
)

# -- the orders of the call --------------------------------------------------------------------

declare("order.ingredients", "set", "Ingredients of the orders under decision.", INGREDIENTS)
declare(
    "order.context_ingredients",
    "set",
    "Ingredients of other draft orders (context only).",
    INGREDIENTS,
)

FACT_CATALOGUE: Mapping[str, FactSpec] = MappingProxyType(dict(_DECLARED))
FACT_SOURCES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {name: spec.sources for name, spec in FACT_CATALOGUE.items()}
)
"""FHIR resource types each fact is derived from; discovery builds prefetch templates from it."""

REDUCED_KEYS: frozenset[Ev] = frozenset(
    key for spec in FACT_CATALOGUE.values() if spec.reducer for key in spec.reducer.evidence
)
_unreduced = set(Ev) - REDUCED_KEYS
if _unreduced:  # an evidence key no fact reads would be dropped silently
    raise AssertionError(f"evidence keys with no reducer: {sorted(_unreduced)}")
_UNKNOWN: Mapping[str, Fact] = MappingProxyType(
    {name: spec.unknown() for name, spec in FACT_CATALOGUE.items()}
)
"""The no-evidence fact of each declared fact (facts are immutable: one instance serves all)."""
_REDUCERS: Mapping[str, R.Reducer] = MappingProxyType(
    {name: spec.reducer for name, spec in FACT_CATALOGUE.items() if spec.reducer is not None}
)


def unknown_fact(name: str) -> Fact:
    """The fact with no evidence, for its kind."""
    return _UNKNOWN[name]


def reduce_evidence(
    evidence: Sequence[Evidence], as_of: dt.date | None, parameters: FactParameters
) -> dict[str, Fact]:
    """Every declared fact that has evidence, reduced in declaration order."""
    return R.reduce_all(_REDUCERS, R.Inputs(evidence, as_of, parameters))


def build_facts(
    values: Mapping[str, Fact],
    orders: Iterable[OrderedItem] = (),
    context_orders: Iterable[OrderedItem] = (),
    issues: Iterable[str] = (),
    unrecognised_codes: Iterable[str] = (),
) -> Facts:
    """Fill every declared fact (unknown where absent) and check each value's kind."""
    orders = tuple(orders)
    context_orders = tuple(context_orders)
    unknown_names = set(values) - set(FACT_CATALOGUE)
    if unknown_names:
        raise KeyError(f"facts not in the catalogue: {sorted(unknown_names)}")
    full: dict[str, Fact] = {}
    for name, spec in FACT_CATALOGUE.items():
        fact = values.get(name)
        if fact is None:
            full[name] = _UNKNOWN[name]
            continue
        spec.check(name, fact)
        full[name] = fact
    full["order.ingredients"] = Fact(
        frozenset(o.ingredient for o in orders if o.ingredient),
        provenance=tuple(p for o in orders for p in o.provenance),
    )
    full["order.context_ingredients"] = Fact(
        frozenset(o.ingredient for o in context_orders if o.ingredient),
        provenance=tuple(p for o in context_orders for p in o.provenance),
    )
    return Facts(
        MappingProxyType(full),
        orders,
        context_orders,
        tuple(issues),
        tuple(dict.fromkeys(unrecognised_codes)),
    )
