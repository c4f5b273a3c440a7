"""The services we offer, and their prefetch templates derived from what the rules read.

Templates are never a hand-kept list: each enabled rule of a hook names facts, each fact
names the FHIR resource types it is derived from (facts.catalogue.FACT_SOURCES), and each type
becomes one patient-scoped search. The queries keep to the CDS Hooks 2.0 recommended subset
(req 58): type-level search on `patient` with a `{{context.patientId}}` token, no modifiers,
no `:in` with our own value sets (an EHR's FHIR server knows nothing of them), so they work on
any R4 server. Narrowing by category is deliberately not done: disease-status, smoking and
variant Observations live in several categories and a missed one would read as "unknown".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .facts.catalogue import FACT_SOURCES
from .wire import Discovery, ServiceDescriptor

PATIENT_TOKEN = "{{context.patientId}}"


@dataclass(frozen=True, slots=True)
class ServiceDef:
    id: str
    hook: str
    title: str
    description: str
    usage: str


SERVICES: tuple[ServiceDef, ...] = (
    ServiceDef(
        id="phall-order-select",
        hook="order-select",
        title="Ph+ ALL therapy check (order select)",
        description=(
            "Reviews the tyrosine kinase inhibitor, blinatumomab or CD19 CAR-T order being "
            "selected against the patient's BCR::ABL1 status, ABL1 kinase mutations (T315I), "
            "CNS and extramedullary disease, CD19 status and transplant history, with cited "
            "evidence."
        ),
        usage="Decides on context.selections; other draft orders are read as context.",
    ),
    ServiceDef(
        id="phall-order-sign",
        hook="order-sign",
        title="Ph+ ALL therapy check (order sign)",
        description=(
            "Reviews every draft order being signed for a Ph+ ALL patient: ineffective TKIs "
            "for ABL1 T315I, CD19-directed therapy without CD19, CNS disease and boxed "
            "warnings, with cited evidence."
        ),
        usage="Decides on every order in context.draftOrders.",
    ),
    ServiceDef(
        id="phall-patient-view",
        hook="patient-view",
        title="Ph+ ALL record review",
        description=(
            "When a Ph+ ALL chart opens, points out gaps such as a relapse, rising BCR::ABL1 "
            "or TKI switch without an ABL1 kinase-domain mutation result."
        ),
        usage="Reads the patient's record; no orders involved.",
    ),
)


def _key(resource_type: str) -> str:
    return resource_type[0].lower() + resource_type[1:] + "s"


def prefetch_templates(fact_names: Iterable[str]) -> dict[str, str]:
    """Prefetch templates (key → query) covering the resource types the facts are read from."""
    types = sorted({t for name in fact_names for t in FACT_SOURCES[name]})
    templates = {"patient": f"Patient/{PATIENT_TOKEN}"}
    for rtype in types:
        templates[_key(rtype)] = f"{rtype}?patient={PATIENT_TOKEN}"
    return templates


@dataclass(frozen=True)
class Catalogue:
    """The services with their derived templates, built once at start-up."""

    services: Mapping[str, ServiceDef]
    templates: Mapping[str, Mapping[str, str]]
    document: dict[str, object]

    @staticmethod
    def build(facts_for_hook: Mapping[str, frozenset[str]]) -> Catalogue:
        services = {s.id: s for s in SERVICES}
        templates = {
            s.id: MappingProxyType(prefetch_templates(facts_for_hook.get(s.hook, frozenset())))
            for s in SERVICES
        }
        document = Discovery(
            services=[
                ServiceDescriptor(
                    hook=s.hook,
                    title=s.title,
                    description=s.description,
                    id=s.id,
                    prefetch=dict(templates[s.id]),
                    usageRequirements=s.usage,
                )
                for s in SERVICES
            ]
        ).dump()
        return Catalogue(MappingProxyType(services), MappingProxyType(templates), document)
