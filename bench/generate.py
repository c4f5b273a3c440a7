"""Synthetic Ph+ ALL patient records and CDS Hooks requests of a chosen size, for the benchmark.

A record is a list of FHIR R4 resources about one fictional patient: a fixed clinical core
(Patient; B-ALL, relapse and hypertension Conditions; a t(9;22) karyotype; a BCR::ABL1 p190
result series; an ABL1 mutation analysis and a Genomics Reporting variant Observation with
ABL1 p.Thr315Ile; CSF blasts and nucleated-cell counts; imatinib then dasatinib as
MedicationRequest and MedicationStatement; blinatumomab and intrathecal methotrexate as
MedicationAdministration; marrow and lumbar-puncture Procedures) filled up to the asked number of
entries with bulk: vital signs and routine labs (most of a real chart), supportive-care
medication orders, statements and administrations, transfusions and a few minor problems.
Resources are shaped like an EHR's (meta, identifiers, displays, performers, reference
ranges): about 1 KB each in a searchset, so 500 entries make a ~0.6 MB prefetch.

Codes: the Ph+ ALL core uses only codes EVIDENCE.md lists as verified (SNOMED 91857003,
ICD-10-CM C91.00 / C91.02, LOINC 52132-8, 55135-8, 69548-6, 48018-6, 48004-6, 48005-3,
35068-6, 58470-6, RxNorm 282388 / 475342 / 1597258, HGNC:76). Vital-sign codes are those of
the FHIR R4 vital-signs value set. Routine-lab LOINC codes were checked against published FHIR
implementation guides (VERIFIED_NOTE below); platelets and everything supportive are sent
as text or a local code only, as many EHRs do — which also exercises the text matcher.

Requests: `hook_request` builds order-select (a dasatinib draft order selected, another draft
order as context), order-sign (both drafts signed) and patient-view bodies; `prefetch_for`
fills the service's prefetch templates — read from its discovery document at run time, never
hard-coded here — with a Patient read and one searchset Bundle per template.

Run as a script to write a record or a request to a file (see --help).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cds_service.synth import noise

Resource = dict[str, Any]

HOOKS: tuple[str, ...] = ("order-select", "order-sign", "patient-view")
SIZES: tuple[int, ...] = (50, 500, 5000)
PATIENT_ID = "pt-bench-1"
EHR_BASE = "https://ehr.example.org/fhir"
SELECTED_DRUG = "dasatinib"

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
HGNC = "http://www.genenames.org"

# The record noise (vitals, routine labs, supportive medication, minor problems) and the
# resource builders live in the package, shared with `cds-service synth`.
LOINC, VERIFIED_NOTE = noise.LOINC, noise.VERIFIED_NOTE
SUPPORTIVE_MEDS, MINOR_PROBLEMS, BULK_MIX = (
    noise.SUPPORTIVE_MEDS,
    noise.MINOR_PROBLEMS,
    noise.BULK_MIX,
)
_meta, _coding, _quantity = noise.meta, noise.coding, noise.quantity
_observation, _condition, _procedure = noise.observation, noise.condition, noise.procedure
_med_request, _med_statement, _med_admin = noise.med_request, noise.med_statement, noise.med_admin

# The story ends here; every date in a record lies before it.
RECORD_END = dt.date(2025, 5, 31)
DIAGNOSIS = dt.date(2022, 3, 14)
DASATINIB_START = dt.date(2023, 1, 9)
RELAPSE = dt.date(2024, 11, 2)

# -- the clinical core -------------------------------------------------------------------------


def patient(pid: str = PATIENT_ID) -> Resource:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": _meta(DIAGNOSIS, 0),
        "identifier": [{"system": "https://ehr.example.org/ids/mrn", "value": "MRN-0000001"}],
        "active": True,
        "name": [{"use": "official", "family": "Testperson", "given": ["Alex"]}],
        "gender": "female",
        "birthDate": "1979-04-02",
        "address": [{"city": "Springfield", "country": "US"}],
    }


def _core(pid: str, series: int, csf: int) -> list[Resource]:
    out: list[Resource] = [patient(pid)]
    out.append(
        _condition(
            pid,
            "dx-ball",
            1,
            {
                "coding": [
                    _coding(SNOMED, "91857003", "Acute lymphoblastic leukemia"),
                    _coding(
                        ICD10CM,
                        "C91.00",
                        "Acute lymphoblastic leukemia not having achieved remission",
                    ),
                ],
                "text": "Ph+ B-cell acute lymphoblastic leukemia",
            },
            DIAGNOSIS,
        )
    )
    out.append(
        _condition(
            pid,
            "dx-relapse",
            2,
            {
                "coding": [_coding(ICD10CM, "C91.02", "Acute lymphoblastic leukemia, in relapse")],
                "text": "B-ALL, first relapse",
            },
            RELAPSE,
        )
    )
    out.append(
        _condition(pid, "dx-htn", 3, {"text": "Essential hypertension"}, dt.date(2019, 6, 1))
    )
    out.append(
        _observation(
            pid,
            "karyotype-dx",
            4,
            DIAGNOSIS,
            ("laboratory", "Laboratory"),
            {"text": "Bone marrow karyotype"},
            {"valueString": "46,XX,t(9;22)(q34;q11.2)[18]/46,XX[2]"},
        )
    )
    # BCR::ABL1 p190 series: deep response on dasatinib, then a rise before the relapse.
    days = (RELAPSE - DIAGNOSIS).days
    for i in range(series):
        day = DIAGNOSIS + dt.timedelta(days=7 + days * i // max(series, 1))
        frac = i / max(series - 1, 1)
        value = 45.0 * (0.02 ** (frac / 0.7)) if frac < 0.7 else 0.0009 * 10 ** ((frac - 0.7) * 12)
        out.append(
            _observation(
                pid,
                f"bcr-abl1-{i:03d}",
                10 + i,
                day,
                ("laboratory", "Laboratory"),
                {
                    "coding": [
                        _coding(
                            LOINC, "52132-8", "BCR-ABL1 p190 (e1a2) fusion transcript/control ratio"
                        )
                    ],
                    "text": "BCR::ABL1 p190 / ABL1 ratio (%)",
                },
                {"valueQuantity": _quantity(value, "%", "%")},
            )
        )
    out.append(
        _observation(
            pid,
            "abl1-kd-2024",
            200,
            RELAPSE + dt.timedelta(days=6),
            ("laboratory", "Laboratory"),
            {
                "coding": [_coding(LOINC, "55135-8", "ABL1 gene mutations found")],
                "text": "ABL1 kinase domain mutation analysis",
            },
            {"valueString": "ABL1 p.Thr315Ile (c.944C>T) detected, variant allele fraction 38%"},
        )
    )
    variant = _observation(
        pid,
        "variant-t315i",
        201,
        RELAPSE + dt.timedelta(days=6),
        ("laboratory", "Laboratory"),
        {
            "coding": [_coding(LOINC, "69548-6", "Genetic variant assessment")],
            "text": "Genetic variant assessment",
        },
        {
            "valueCodeableConcept": {"text": "Present"},
            "component": [
                {
                    "code": {"coding": [_coding(LOINC, "48018-6", "Gene studied [ID]")]},
                    "valueCodeableConcept": {"coding": [_coding(HGNC, "HGNC:76", "ABL1")]},
                },
                {
                    "code": {"coding": [_coding(LOINC, "48004-6", "DNA change (c.HGVS)")]},
                    "valueCodeableConcept": {"text": "NM_005157.6:c.944C>T"},
                },
                {
                    "code": {"coding": [_coding(LOINC, "48005-3", "Amino acid change (pHGVS)")]},
                    "valueCodeableConcept": {"text": "p.Thr315Ile"},
                },
            ],
        },
    )
    out.append(variant)
    for i in range(csf):
        day = DIAGNOSIS + dt.timedelta(days=3 + 90 * i)
        out.append(
            _observation(
                pid,
                f"csf-blasts-{i:03d}",
                300 + i,
                day,
                ("laboratory", "Laboratory"),
                {
                    "coding": [
                        _coding(LOINC, "35068-6", "Blasts/100 leukocytes in Cerebral spinal fluid")
                    ],
                    "text": "CSF blasts",
                },
                {"valueQuantity": _quantity(0.0, "%", "%")},
            )
        )
        out.append(
            _observation(
                pid,
                f"csf-cells-{i:03d}",
                400 + i,
                day,
                ("laboratory", "Laboratory"),
                {
                    "coding": [
                        _coding(
                            LOINC, "58470-6", "Nucleated cells [#/volume] in Cerebral spinal fluid"
                        )
                    ],
                    "text": "CSF nucleated cells",
                },
                {"valueQuantity": _quantity(2.0, "/uL", "/uL")},
            )
        )
    out.append(
        _med_request(pid, "mr-imatinib", 500, "imatinib", DIAGNOSIS, "stopped", DASATINIB_START)
    )
    out.append(_med_request(pid, "mr-dasatinib", 501, "dasatinib", DASATINIB_START, "active"))
    out.append(
        _med_statement(pid, "ms-imatinib", 502, "imatinib", DIAGNOSIS, "completed", DASATINIB_START)
    )
    out.append(_med_statement(pid, "ms-dasatinib", 503, "dasatinib", DASATINIB_START, "active"))
    for c in range(2):
        out.append(
            _med_admin(
                pid,
                f"ma-blin-{c}",
                510 + c,
                "blinatumomab",
                DIAGNOSIS + dt.timedelta(days=120 + 42 * c),
            )
        )
    out.append(
        _med_admin(
            pid,
            "ma-it-mtx",
            520,
            "methotrexate 12 mg intrathecal",
            DIAGNOSIS + dt.timedelta(days=3),
        )
    )
    out.append(_procedure(pid, "proc-bm-dx", 530, "Bone marrow aspiration and biopsy", DIAGNOSIS))
    out.append(
        _procedure(
            pid,
            "proc-lp-dx",
            531,
            "Lumbar puncture with intrathecal chemotherapy",
            DIAGNOSIS + dt.timedelta(days=3),
        )
    )
    return out


def _bulk(pid: str, kind: str, n: int, day: dt.date, rng: random.Random) -> Resource:
    return noise.bulk(pid, kind, n, day, rng, active_after=RECORD_END - dt.timedelta(days=60))


def generate_record(entries: int, *, seed: int = 0, patient_id: str = PATIENT_ID) -> list[Resource]:
    """`entries` resources about one fictional Ph+ B-ALL patient with ABL1 T315I on dasatinib.

    Deterministic for a given (entries, seed). The core grows slowly with size (longer
    BCR::ABL1 series, more CSF results); the rest is bulk in BULK_MIX proportions.
    """
    if entries < 30:
        raise ValueError("a record needs at least 30 entries to hold the clinical core")
    rng = random.Random(seed * 1_000_003 + entries)
    series = min(4 + entries // 60, 60)
    csf = min(1 + entries // 250, 12)
    record = _core(patient_id, series, csf)
    bulk = entries - len(record)
    span = (RECORD_END - DIAGNOSIS).days
    kinds = [k for k, share in BULK_MIX for _ in range(round(share * 1000))]
    for i in range(bulk):
        n = 1000 + i
        day = DIAGNOSIS + dt.timedelta(days=span * i // max(bulk, 1))
        record.append(_bulk(patient_id, kinds[(i * 389) % len(kinds)], n, day, rng))
    return record


# -- requests ----------------------------------------------------------------------------------


def searchset(resources: list[Resource]) -> Resource:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": f"{EHR_BASE}/search"}],
        "entry": [
            {
                "fullUrl": f"{EHR_BASE}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def template_type(query: str) -> tuple[str, bool]:
    """(resource type, is a search) of a prefetch template such as 'Observation?patient=…'."""
    head = query.split("?", 1)[0]
    return head.split("/", 1)[0], "?" in query


def prefetch_for(resources: list[Resource], templates: Mapping[str, str]) -> dict[str, Any]:
    """Every template key filled as an EHR would: a read gives the resource, a search a
    searchset of that type's resources (other search parameters are patient-scoped here)."""
    by_type: dict[str, list[Resource]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    out: dict[str, Any] = {}
    for key, query in templates.items():
        rtype, is_search = template_type(query)
        found = by_type.get(rtype, [])
        out[key] = searchset(found) if is_search else (found[0] if found else None)
    return out


def draft_order(drug: str, oid: str, pid: str = PATIENT_ID) -> Resource:
    order = _med_request(pid, oid, 9000, drug, RECORD_END, "draft")
    order.pop("identifier")
    order.pop("meta")
    return order


def draft_orders(hook: str, pid: str = PATIENT_ID) -> list[Resource]:
    """The draft orders of a hook: the selected TKI plus a supportive-care order."""
    if hook == "patient-view":
        return []
    return [
        draft_order(SELECTED_DRUG, f"draft-{SELECTED_DRUG}", pid),
        draft_order("allopurinol 300 mg oral tablet", "draft-allopurinol", pid),
    ]


def hook_request(
    hook: str,
    resources: list[Resource],
    templates: Mapping[str, str] | None,
    *,
    patient_id: str = PATIENT_ID,
    fhir_server: str | None = None,
    token: str | None = None,
    hook_instance: str | None = None,
) -> dict[str, Any]:
    """A CDS Hooks request; with `templates` every key is prefetched, with None the service
    must fetch from `fhir_server` with `token`."""
    if hook not in HOOKS:
        raise ValueError(f"unknown hook {hook!r}; one of {HOOKS}")
    context: dict[str, Any] = {"userId": "Practitioner/doc-1", "patientId": patient_id}
    orders = draft_orders(hook, patient_id)
    if orders:
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": o} for o in orders],
        }
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/draft-{SELECTED_DRUG}"]
    body: dict[str, Any] = {
        "hookInstance": hook_instance or str(uuid.uuid4()),
        "hook": hook,
        "context": context,
    }
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if token is not None:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read user/Condition.read",
            "subject": "cds-service",
        }
    if templates is not None:
        body["prefetch"] = prefetch_for(resources, templates)
    return body


def templates_from_discovery(document: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """hook → prefetch templates, from a CDS Hooks discovery document (first service per hook)."""
    out: dict[str, dict[str, str]] = {}
    for service in document.get("services", []):
        hook = service.get("hook")
        if isinstance(hook, str) and hook not in out:
            out[hook] = {str(k): str(v) for k, v in (service.get("prefetch") or {}).items()}
    return out


def service_ids_from_discovery(document: Mapping[str, Any]) -> dict[str, str]:
    """hook → service id, from a discovery document (first service per hook)."""
    out: dict[str, str] = {}
    for service in document.get("services", []):
        if isinstance(service.get("hook"), str) and service["hook"] not in out:
            out[service["hook"]] = str(service["id"])
    return out


# -- command line ------------------------------------------------------------------------------


def _load_discovery(source: str) -> dict[str, Any]:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=10) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    loaded: dict[str, Any] = json.loads(Path(source).read_text("utf-8"))
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a synthetic Ph+ ALL record (a collection Bundle) or a CDS Hooks request."
    )
    parser.add_argument("--entries", type=int, default=500, help="resources in the record")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hook", choices=HOOKS, help="write a request for this hook")
    parser.add_argument(
        "--discovery",
        help="discovery URL (http://127.0.0.1:8080/cds-services) or JSON file; needed with --hook",
    )
    parser.add_argument("--out", type=Path, help="output file (default: stdout)")
    args = parser.parse_args(argv)
    record = generate_record(args.entries, seed=args.seed)
    output: dict[str, Any]
    if args.hook:
        if not args.discovery:
            parser.error("--hook needs --discovery (prefetch templates are read from it)")
        templates = templates_from_discovery(_load_discovery(args.discovery)).get(args.hook)
        if templates is None:
            parser.error(f"the discovery document offers no {args.hook} service")
        output = hook_request(args.hook, record, templates)
    else:
        output = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in record],
        }
    text = json.dumps(output, indent=1)
    if args.out:
        args.out.write_text(text, "utf-8")
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
