"""Builders of synthetic, valid R4 resources for the facts tests (and a check that they are valid)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from cds_service.facts.extract import extract_facts
from cds_service.facts.model import Facts
from cds_service.fhir_input import build_record

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
ICDO = "http://terminology.hl7.org/CodeSystem/icd-o-3"
HGNC = "http://www.genenames.org"
HGVS = "http://varnomen.hgvs.org"
PID = "p1"
AS_OF = dt.date(2024, 6, 1)

Res = dict[str, Any]


def cc(text: str | None = None, *codings: tuple[str, str] | tuple[str, str, str]) -> Res:
    out: Res = {}
    if codings:
        out["coding"] = [
            {"system": c[0], "code": c[1], **({"display": c[2]} if len(c) > 2 else {})}
            for c in codings
        ]
    if text:
        out["text"] = text
    return out


def subject(pid: str = PID) -> Res:
    return {"reference": f"Patient/{pid}"}


def patient(pid: str = PID) -> Res:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1980-01-01"}


def condition(
    id: str,
    code: Res,
    onset: str | None = "2024-01-01",
    *,
    ver: str | None = None,
    clinical: str | None = None,
    body: list[Res] | None = None,
    stage: Res | None = None,
    pid: str = PID,
    extra: Res | None = None,
) -> Res:
    r: Res = {"resourceType": "Condition", "id": id, "code": code, "subject": subject(pid)}
    r.update(extra or {})
    if onset:
        r["onsetDateTime"] = onset
    if ver:
        r["verificationStatus"] = cc(
            None, ("http://terminology.hl7.org/CodeSystem/condition-ver-status", ver)
        )
    if clinical:
        r["clinicalStatus"] = cc(
            None, ("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical)
        )
    if body:
        r["bodySite"] = body
    if stage:
        r["stage"] = [{"summary": stage}]
    return r


def observation(
    id: str,
    code: Res,
    date: str | None = "2024-01-01",
    *,
    status: str = "final",
    pid: str = PID,
    **value: Any,
) -> Res:
    r: Res = {
        "resourceType": "Observation",
        "id": id,
        "status": status,
        "code": code,
        "subject": subject(pid),
    }
    if date:
        r["effectiveDateTime"] = date
    r.update(value)
    return r


def qty(value: float, unit: str = "%", comparator: str | None = None) -> Res:
    q: Res = {"value": value, "unit": unit}
    if comparator:
        q["comparator"] = comparator
    return q


def med(text: str | None = None, *codings: tuple[str, str] | tuple[str, str, str]) -> Res:
    return {"medicationCodeableConcept": cc(text, *codings)}


def med_request(
    id: str,
    medication: Res,
    status: str = "active",
    authored: str | None = "2024-01-01",
    **extra: Any,
) -> Res:
    r: Res = {
        "resourceType": "MedicationRequest",
        "id": id,
        "status": status,
        "intent": "order",
        "subject": subject(),
    }
    r.update(medication)
    if authored:
        r["authoredOn"] = authored
    r.update(extra)
    return r


def med_statement(
    id: str,
    medication: Res,
    status: str,
    start: str | None = None,
    end: str | None = None,
    **extra: Any,
) -> Res:
    r: Res = {
        "resourceType": "MedicationStatement",
        "id": id,
        "status": status,
        "subject": subject(),
    }
    r.update(medication)
    if start or end:
        r["effectivePeriod"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    r.update(extra)
    return r


def med_admin(
    id: str,
    medication: Res,
    status: str = "completed",
    when: str | None = "2024-01-01",
    **extra: Any,
) -> Res:
    r: Res = {
        "resourceType": "MedicationAdministration",
        "id": id,
        "status": status,
        "subject": subject(),
    }
    r.update(medication)
    if when:
        r["effectiveDateTime"] = when
    r.update(extra)
    return r


def procedure(
    id: str, code: Res, status: str = "completed", when: str | None = "2023-01-01"
) -> Res:
    r: Res = {
        "resourceType": "Procedure",
        "id": id,
        "status": status,
        "code": code,
        "subject": subject(),
    }
    if when:
        r["performedDateTime"] = when
    return r


def variant(
    id: str,
    *,
    p: str | None = None,
    c: str | None = None,
    transcript: str | None = None,
    gene: tuple[str, str, str] | None = (HGNC, "HGNC:76", "ABL1"),
    value: Res | None = None,
    date: str = "2024-02-01",
) -> Res:
    comps: list[Res] = []
    if gene:
        comps.append({"code": cc(None, (LOINC, "48018-6")), "valueCodeableConcept": cc(None, gene)})
    if transcript:
        comps.append(
            {
                "code": cc(None, (LOINC, "51958-7")),
                "valueCodeableConcept": cc(
                    None, ("http://www.ncbi.nlm.nih.gov/refseq", transcript)
                ),
            }
        )
    if c:
        comps.append(
            {"code": cc(None, (LOINC, "48004-6")), "valueCodeableConcept": cc(None, (HGVS, c))}
        )
    if p:
        comps.append(
            {"code": cc(None, (LOINC, "48005-3")), "valueCodeableConcept": cc(None, (HGVS, p))}
        )
    obs = observation(
        id, cc(None, (LOINC, "69548-6", "Genetic variant assessment")), date, component=comps
    )
    obs["valueCodeableConcept"] = value or cc(None, (LOINC, "LA9633-4", "Present"))
    return obs


def bundle(*resources: Res, btype: str = "collection") -> Res:
    return {
        "resourceType": "Bundle",
        "type": btype,
        "entry": [{"resource": r} for r in (patient(), *resources)],
    }


def facts_of(*resources: Res, as_of: dt.date | None = AS_OF, orders: tuple[Res, ...] = ()) -> Facts:
    return extract_facts(build_record([bundle(*resources)], PID), orders=orders, as_of=as_of)


def value(facts: Facts, name: str) -> Any:
    return facts.get(name).value


SAMPLES: list[Res] = [
    condition(
        "c",
        cc("B-ALL", (SCT, "91857003")),
        ver="confirmed",
        clinical="active",
        body=[cc("Testis")],
        stage=cc("x"),
    ),
    observation("o", cc(None, (LOINC, "46434-7")), valueQuantity=qty(0.1, comparator="<")),
    med_request("mr", med("Sprycel")),
    med_statement(
        "ms",
        med(None, (RX, "475342")),
        "stopped",
        "2023",
        "2023-06",
        statusReason=[cc("resistance")],
    ),
    med_admin("ma", med("blinatumomab")),
    procedure("pr", cc("Allogeneic HSCT")),
    variant("v", p="p.(Thr315Ile)", c="NM_005157.6:c.944C>T"),
]


@pytest.mark.parametrize("resource", SAMPLES, ids=lambda r: str(r["resourceType"]))
def test_builders_make_valid_r4(resource: Res) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    get_fhir_model_class("Bundle").model_validate(bundle(resource))
