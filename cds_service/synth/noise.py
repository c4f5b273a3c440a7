"""Realistic record noise: the bulk of a real chart around the clinical core.

Vital signs and routine labs (most of a chart), supportive-care medication orders, statements
and administrations, transfusions and minor problems, shaped like an EHR's resources (meta,
identifiers, displays, performers, reference ranges). The benchmark (bench/generate.py) and
`cds-service synth` both build their records with it.

Codes: vital signs from the FHIR R4 vital-signs value set; routine-lab LOINC codes checked
against published FHIR implementation guides (VERIFIED_NOTE); platelets and everything
supportive are sent as text or a local code only, as many EHRs do. The three drugs in DRUGS
carry RxNorm ingredient codes EVIDENCE.md lists as verified.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Resource = dict[str, Any]

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LOCAL_LAB = "urn:oid:2.16.840.1.113883.19.5.99999.1"  # example.org-style local code system
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIF = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

VERIFIED_NOTE = (
    "routine-lab LOINC codes seen in published FHIR IGs: 6690-2, 718-7, 2160-0, 2951-2, "
    "2823-3, 1742-6, 1920-8, 1975-2; vital signs from the FHIR R4 vital-signs value set"
)

DRUGS: Mapping[str, tuple[str, str]] = {
    "imatinib": ("282388", "imatinib"),
    "dasatinib": ("475342", "dasatinib"),
    "blinatumomab": ("1597258", "blinatumomab"),
}

# (code or None for a local code, display, unit, UCUM unit, low, high, typical, spread)
LABS: tuple[tuple[str | None, str, str, str, float, float, float, float], ...] = (
    (
        "6690-2",
        "Leukocytes [#/volume] in Blood by Automated count",
        "10*3/uL",
        "10*3/uL",
        4.0,
        11.0,
        3.2,
        1.5,
    ),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", "g/dL", 12.0, 16.0, 10.1, 1.2),
    (None, "Platelets (PLT), blood", "10*3/uL", "10*3/uL", 150.0, 400.0, 120.0, 40.0),
    (
        "2160-0",
        "Creatinine [Mass/volume] in Serum or Plasma",
        "mg/dL",
        "mg/dL",
        0.6,
        1.2,
        0.9,
        0.15,
    ),
    (
        "2951-2",
        "Sodium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        "mmol/L",
        135.0,
        145.0,
        139.0,
        2.0,
    ),
    (
        "2823-3",
        "Potassium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        "mmol/L",
        3.5,
        5.1,
        4.1,
        0.3,
    ),
    (
        "1742-6",
        "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        "U/L",
        7.0,
        56.0,
        31.0,
        9.0,
    ),
    (
        "1920-8",
        "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        "U/L",
        10.0,
        40.0,
        27.0,
        7.0,
    ),
    (
        "1975-2",
        "Bilirubin.total [Mass/volume] in Serum or Plasma",
        "mg/dL",
        "mg/dL",
        0.1,
        1.2,
        0.6,
        0.2,
    ),
)

# (LOINC, display, unit, UCUM unit, typical, spread)
VITALS: tuple[tuple[str, str, str, str, float, float], ...] = (
    ("8867-4", "Heart rate", "beats/minute", "/min", 78.0, 9.0),
    ("9279-1", "Respiratory rate", "breaths/minute", "/min", 16.0, 2.0),
    ("8310-5", "Body temperature", "Cel", "Cel", 36.9, 0.4),
    ("29463-7", "Body weight", "kg", "kg", 71.0, 1.5),
)

SUPPORTIVE_MEDS: tuple[str, ...] = (
    "ondansetron 8 mg oral tablet",
    "acyclovir 400 mg oral tablet",
    "sulfamethoxazole 800 mg / trimethoprim 160 mg oral tablet",
    "allopurinol 300 mg oral tablet",
    "pantoprazole 40 mg delayed release oral tablet",
    "posaconazole 100 mg delayed release oral tablet",
    "levofloxacin 500 mg oral tablet",
    "amlodipine 5 mg oral tablet",
    "potassium chloride 20 mEq extended release oral tablet",
    "dexamethasone 4 mg oral tablet",
)

MINOR_PROBLEMS: tuple[str, ...] = (
    "Febrile neutropenia",
    "Chemotherapy-induced nausea",
    "Oral mucositis",
    "Iron deficiency",
    "Insomnia",
)

# Share of the bulk per kind; the rest of the record is the fixed clinical core.
BULK_MIX: tuple[tuple[str, float], ...] = (
    ("vital", 0.42),
    ("lab", 0.33),
    ("med_admin", 0.12),
    ("med_request", 0.06),
    ("med_statement", 0.02),
    ("procedure", 0.03),
    ("condition", 0.02),
)


@dataclass(frozen=True)
class Style:
    """What an EHR stamps on every resource: identifier systems, meta.source, the display of
    the patient reference."""

    ids_base: str = "https://ehr.example.org/ids"
    meta_source: str = "#ehr-bench"
    patient_display: str = "Testperson, Alex"


DEFAULT_STYLE = Style()


def ref(pid: str, style: Style = DEFAULT_STYLE) -> dict[str, str]:
    return {"reference": f"Patient/{pid}", "display": style.patient_display}


def meta(day: dt.date, n: int, style: Style = DEFAULT_STYLE) -> dict[str, Any]:
    return {
        "versionId": str(1 + n % 3),
        "lastUpdated": f"{day.isoformat()}T{8 + n % 10:02d}:{n % 60:02d}:00Z",
        "source": style.meta_source,
    }


def ident(kind: str, n: int, style: Style = DEFAULT_STYLE) -> list[dict[str, str]]:
    return [{"system": f"{style.ids_base}/{kind}", "value": f"{kind}-{n:07d}"}]


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def when(day: dt.date, n: int) -> str:
    return f"{day.isoformat()}T{7 + n % 12:02d}:{(n * 7) % 60:02d}:00Z"


def category(code: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [coding(OBS_CAT, code, display)], "text": display}]


def observation(
    pid: str,
    oid: str,
    n: int,
    day: dt.date,
    cat: tuple[str, str],
    code: dict[str, Any],
    value: dict[str, Any],
    style: Style = DEFAULT_STYLE,
) -> Resource:
    return {
        "resourceType": "Observation",
        "id": oid,
        "meta": meta(day, n, style),
        "identifier": ident("obs", n, style),
        "status": "final",
        "category": category(*cat),
        "code": code,
        "subject": ref(pid, style),
        "encounter": {"reference": f"Encounter/enc-{n // 6:05d}"},
        "effectiveDateTime": when(day, n),
        "issued": f"{day.isoformat()}T18:30:00Z",
        "performer": [{"reference": "Organization/lab-1", "display": "Central Laboratory"}],
        **value,
    }


def quantity(value: float, unit: str, ucum: str) -> dict[str, Any]:
    return {"value": round(value, 2), "unit": unit, "system": UCUM, "code": ucum}


def med_concept(drug: str) -> dict[str, Any]:
    if drug in DRUGS:
        code, name = DRUGS[drug]
        return {"coding": [coding(RXNORM, code, name)], "text": name}
    return {"text": drug}


def condition(
    pid: str,
    cid: str,
    n: int,
    code: dict[str, Any],
    onset: dt.date,
    status: str = "active",
    style: Style = DEFAULT_STYLE,
) -> Resource:
    return {
        "resourceType": "Condition",
        "id": cid,
        "meta": meta(onset, n, style),
        "identifier": ident("cond", n, style),
        "clinicalStatus": {"coding": [coding(COND_CLINICAL, status, status.title())]},
        "verificationStatus": {"coding": [coding(COND_VERIF, "confirmed", "Confirmed")]},
        "category": [
            {
                "coding": [
                    coding(
                        "http://terminology.hl7.org/CodeSystem/condition-category",
                        "problem-list-item",
                        "Problem List Item",
                    )
                ]
            }
        ],
        "code": code,
        "subject": ref(pid, style),
        "onsetDateTime": onset.isoformat(),
        "recordedDate": onset.isoformat(),
    }


def med_request(
    pid: str,
    rid: str,
    n: int,
    drug: str,
    start: dt.date,
    status: str,
    end: dt.date | None = None,
    style: Style = DEFAULT_STYLE,
) -> Resource:
    period: dict[str, str] = {"start": start.isoformat()}
    if end is not None:
        period["end"] = end.isoformat()
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "meta": meta(start, n, style),
        "identifier": ident("rx", n, style),
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": med_concept(drug),
        "subject": ref(pid, style),
        "authoredOn": start.isoformat(),
        "requester": {"reference": "Practitioner/doc-1", "display": "Dr. Example"},
        "dosageInstruction": [
            {
                "text": "take as directed, once daily",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": {"text": "oral"},
            }
        ],
        "dispenseRequest": {"validityPeriod": period, "numberOfRepeatsAllowed": 3},
    }


def med_statement(
    pid: str,
    sid: str,
    n: int,
    drug: str,
    start: dt.date,
    status: str,
    end: dt.date | None = None,
    style: Style = DEFAULT_STYLE,
) -> Resource:
    period: dict[str, str] = {"start": start.isoformat()}
    if end is not None:
        period["end"] = end.isoformat()
    return {
        "resourceType": "MedicationStatement",
        "id": sid,
        "meta": meta(start, n, style),
        "identifier": ident("ms", n, style),
        "status": status,
        "medicationCodeableConcept": med_concept(drug),
        "subject": ref(pid, style),
        "effectivePeriod": period,
        "dateAsserted": start.isoformat(),
        "informationSource": {"reference": "Practitioner/doc-1", "display": "Dr. Example"},
        "dosage": [{"text": "as directed", "route": {"text": "oral"}}],
    }


def med_admin(
    pid: str, aid: str, n: int, drug: str, day: dt.date, style: Style = DEFAULT_STYLE
) -> Resource:
    return {
        "resourceType": "MedicationAdministration",
        "id": aid,
        "meta": meta(day, n, style),
        "identifier": ident("mar", n, style),
        "status": "completed",
        "medicationCodeableConcept": med_concept(drug),
        "subject": ref(pid, style),
        "context": {"reference": f"Encounter/enc-{n // 6:05d}"},
        "effectiveDateTime": when(day, n),
        "performer": [{"actor": {"reference": "Practitioner/rn-2", "display": "Nurse Example"}}],
        "dosage": {"text": "given as ordered", "route": {"text": "per protocol"}},
    }


def procedure(
    pid: str, pid_: str, n: int, text: str, day: dt.date, style: Style = DEFAULT_STYLE
) -> Resource:
    return {
        "resourceType": "Procedure",
        "id": pid_,
        "meta": meta(day, n, style),
        "identifier": ident("proc", n, style),
        "status": "completed",
        "code": {"text": text},
        "subject": ref(pid, style),
        "performedDateTime": when(day, n),
        "performer": [{"actor": {"reference": "Practitioner/doc-1", "display": "Dr. Example"}}],
        "location": {"display": "Hematology day unit"},
    }


def bulk_kinds() -> list[str]:
    """BULK_MIX as a list of 1,000 kinds to draw from."""
    return [k for k, share in BULK_MIX for _ in range(round(share * 1000))]


def bulk(
    pid: str,
    kind: str,
    n: int,
    day: dt.date,
    rng: random.Random,
    *,
    active_after: dt.date,
    style: Style = DEFAULT_STYLE,
) -> Resource:
    """One resource of bulk: `kind` is one of BULK_MIX; a supportive order written after
    `active_after` is still active."""
    if kind == "vital":
        code, display, unit, ucum, typical, spread = VITALS[n % len(VITALS)]
        return observation(
            pid,
            f"vital-{n:06d}",
            n,
            day,
            ("vital-signs", "Vital Signs"),
            {"coding": [coding(LOINC, code, display)], "text": display},
            {"valueQuantity": quantity(rng.gauss(typical, spread), unit, ucum)},
            style,
        )
    if kind == "lab":
        lcode, display, unit, ucum, low, high, typical, spread = LABS[n % len(LABS)]
        value = max(rng.gauss(typical, spread), 0.01)
        flag = "L" if value < low else "H" if value > high else "N"
        lab = coding(LOINC, lcode, display) if lcode else coding(LOCAL_LAB, f"PLT{n % 3}", display)
        return observation(
            pid,
            f"lab-{n:06d}",
            n,
            day,
            ("laboratory", "Laboratory"),
            {"coding": [lab], "text": display.split(" [")[0]},
            {
                "valueQuantity": quantity(value, unit, ucum),
                "interpretation": [{"coding": [coding(INTERP, flag, flag)]}],
                "referenceRange": [
                    {"low": quantity(low, unit, ucum), "high": quantity(high, unit, ucum)}
                ],
            },
            style,
        )
    drug = SUPPORTIVE_MEDS[n % len(SUPPORTIVE_MEDS)]
    if kind == "med_admin":
        return med_admin(pid, f"mar-{n:06d}", n, drug, day, style)
    if kind == "med_request":
        status = "active" if day > active_after else "completed"
        return med_request(pid, f"rx-{n:06d}", n, drug, day, status, style=style)
    if kind == "med_statement":
        return med_statement(pid, f"ms-{n:06d}", n, drug, day, "completed", day, style=style)
    if kind == "procedure":
        text = "Transfusion of red blood cells" if n % 2 else "Transfusion of platelets"
        return procedure(pid, f"proc-{n:06d}", n, text, day, style)
    problem = MINOR_PROBLEMS[n % len(MINOR_PROBLEMS)]
    return condition(pid, f"cond-{n:06d}", n, {"text": problem}, day, "resolved", style)
