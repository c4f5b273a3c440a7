"""A synthetic patient population as a FHIR Bulk Data export, for the dry-run's tests and benchmark.

Fictional patients of a haematology-oncology service, in realistic proportions
(`POPULATION_MIX`, overridable): most have no leukaemia at all (vital signs, routine labs,
supportive-care medication, minor problems, sometimes hypertension), a few have CML or
Ph-negative B-ALL, B-ALL with no Ph result, and about 1.5 % Ph+ ALL. The Ph+ ALL patients are
either variants of bench/generate.py's story (ABL1 T315I found / another mutation / never
tested; CNS involvement or not; on imatinib or dasatinib; with or without blinatumomab and a
relapse) or one of the rule-case scenarios of fhir_fixtures/rules (whatever is there, draft
orders dropped), re-keyed to a new patient. Every record is padded with generate.py's bulk.

Written as an `$export` folder (one NDJSON file per resource type, `Medication.ndjson`
holding the Medications that some TKI orders reference) or as a folder of patient Bundles.
Deterministic for a given (patients, seed, mix).

    python bench/population.py --patients 10000 --out /tmp/export            # NDJSON
    python bench/population.py --patients 200 --out /tmp/bundles --format bundles
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import random
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import generate as g
from cds_service.synth import noise

Resource = dict[str, Any]
REPO = Path(__file__).resolve().parent.parent
SCENARIOS_DIR = REPO / "fhir_fixtures" / "rules"

POPULATION_MIX: Mapping[str, float] = {
    "other": 0.915,
    "cml": 0.03,
    "ph_negative_all": 0.02,
    "b_all_no_ph_result": 0.02,
    "ph_all": 0.015,
}
"""Share of each kind of patient. Ph+ ALL is ~25 % of adult B-ALL and rare overall; a
haematology-oncology export holds a few percent leukaemia patients."""

SCENARIO_SHARE = 0.3
"""Share of Ph+ ALL patients drawn from the rule-case scenarios (the rest: story variants)."""
BULK_RANGE = (12, 70)
"""Bulk resources (vitals, labs, supportive care) per patient, uniformly drawn."""
MEDICATION_REFERENCE_SHARE = 0.3
"""Share of story patients whose TKI orders name a Medication resource instead of a code."""


# -- one patient --------------------------------------------------------------------------------


def _prefix_references(value: Any, pid: str, old_pid: str | None) -> Any:
    """Rewrite every literal reference "Type/id" to this patient's ids ("Patient/x" → pid)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and "/" in item:
                rtype, _, rid = item.partition("/")
                if rtype == "Patient":
                    out[key] = f"Patient/{pid}" if old_pid in (None, rid) else item
                elif rtype == "Medication" and rid.startswith("shared-"):
                    out[key] = item
                else:
                    out[key] = f"{rtype}/{pid}-{rid}"
            else:
                out[key] = _prefix_references(item, pid, old_pid)
        return out
    if isinstance(value, list):
        return [_prefix_references(v, pid, old_pid) for v in value]
    return value


def rekey(resources: list[Resource], pid: str, old_pid: str | None = None) -> list[Resource]:
    """The resources as another patient's: Patient id `pid`, other ids prefixed with it."""
    out = []
    for resource in resources:
        r = _prefix_references(copy.deepcopy(resource), pid, old_pid)
        if r["resourceType"] == "Patient":
            r["id"] = pid
        elif "id" in r:
            r["id"] = f"{pid}-{r['id']}"
        out.append(r)
    return out


def _patient(pid: str, rng: random.Random) -> Resource:
    p = g.patient(pid)
    p["gender"] = rng.choice(("female", "male"))
    p["birthDate"] = f"{rng.randint(1940, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    p["identifier"] = [{"system": "https://ehr.example.org/ids/mrn", "value": f"MRN-{pid}"}]
    return p


def _bulk(pid: str, rng: random.Random) -> list[Resource]:
    count = rng.randint(*BULK_RANGE)
    kinds = [k for k, share in g.BULK_MIX for _ in range(round(share * 100))]
    span = (g.RECORD_END - g.DIAGNOSIS).days
    out = []
    for i in range(count):
        n = 1000 + i
        day = g.DIAGNOSIS + dt.timedelta(days=rng.randrange(span))
        out.append(g._bulk(pid, rng.choice(kinds), n, day, rng))
    return out


def _hypertension(pid: str, rng: random.Random) -> list[Resource]:
    if rng.random() < 0.3:
        return [g._condition(pid, "dx-htn", 3, {"text": "Essential hypertension"}, g.DIAGNOSIS)]
    return []


def _b_all(pid: str) -> Resource:
    """The story's B-ALL Condition (SNOMED 91857003, ICD-10-CM C91.00), without "Ph+" in it."""
    condition = g._core(pid, 1, 0)[1]
    condition["code"]["text"] = "B-cell acute lymphoblastic leukemia"
    return condition


def _cml(pid: str, rng: random.Random) -> list[Resource]:
    dx = g._condition(
        pid,
        "dx-cml",
        5,
        {
            "coding": [g._coding(g.SNOMED, "92818009", "Chronic myeloid leukemia")],
            "text": "Chronic myeloid leukemia, chronic phase",
        },
        g.DIAGNOSIS,
    )
    drug = rng.choice(("imatinib", "dasatinib"))
    return [
        dx,
        g._med_request(pid, f"mr-{drug}", 500, drug, g.DASATINIB_START, "active"),
        g._med_statement(pid, f"ms-{drug}", 503, drug, g.DASATINIB_START, "active"),
    ]


def _ph_negative_all(pid: str) -> list[Resource]:
    condition = _b_all(pid)
    condition["code"]["text"] = "Ph-negative B-cell acute lymphoblastic leukemia"
    pcr = g._observation(
        pid,
        "bcr-abl1-qual",
        4,
        g.DIAGNOSIS,
        ("laboratory", "Laboratory"),
        {"text": "BCR-ABL1 qualitative PCR"},
        {"valueCodeableConcept": {"text": "Not detected"}},
    )
    return [condition, pcr]


def _ph_all_story(pid: str, rng: random.Random) -> list[Resource]:
    """generate.py's Ph+ ALL story with its parts varied."""
    series = rng.randint(3, 10)
    core = [r for r in g._core(pid, series, rng.randint(1, 3)) if r["resourceType"] != "Patient"]
    mutation = rng.choices(("t315i", "other", "untested"), weights=(0.3, 0.3, 0.4))[0]
    relapsed = rng.random() < 0.5
    on_dasatinib = rng.random() < 0.6
    blinatumomab = rng.random() < 0.5
    cns = rng.random() < 0.1
    out = []
    for r in core:
        rid = r["id"]
        if rid in ("abl1-kd-2024", "variant-t315i") and (mutation != "t315i" or not relapsed):
            if mutation == "other" and rid == "abl1-kd-2024":
                r["valueString"] = "ABL1 kinase domain: no T315I; p.Glu255Lys (E255K) detected"
                out.append(r)
            continue
        if rid == "dx-relapse" and not relapsed:
            continue
        if rid == "dx-htn":
            continue  # hypertension is drawn for every patient alike
        if rid in ("mr-dasatinib", "ms-dasatinib") and not on_dasatinib:
            continue
        if rid in ("mr-imatinib", "ms-imatinib") and not on_dasatinib:
            r["status"] = "active"
            r.get("dispenseRequest", {}).get("validityPeriod", {}).pop("end", None)
            r.get("effectivePeriod", {}).pop("end", None)
        if rid.startswith("ma-blin") and not blinatumomab:
            continue
        if rid.startswith("csf-blasts") and cns:
            r["valueQuantity"] = g._quantity(rng.choice((8.0, 22.0, 41.0)), "%", "%")
        out.append(r)
    if rng.random() < MEDICATION_REFERENCE_SHARE:
        for r in out:
            name = r.get("medicationCodeableConcept", {}).get("text")
            if r["resourceType"] == "MedicationRequest" and name in noise.DRUGS:
                del r["medicationCodeableConcept"]
                r["medicationReference"] = {"reference": f"Medication/shared-{name}"}
    return out


def shared_medications() -> list[Resource]:
    """The Medication resources story orders may reference (Medication.ndjson)."""
    return [
        {
            "resourceType": "Medication",
            "id": f"shared-{name}",
            "code": {"coding": [g._coding(noise.RXNORM, code, display)], "text": display},
        }
        for name, (code, display) in noise.DRUGS.items()
    ]


def _scenarios() -> list[tuple[str, list[Resource]]]:
    """(old patient id, resources) of every rule-case fixture, draft orders dropped."""
    out = []
    for path in sorted(SCENARIOS_DIR.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        resources = [
            e["resource"]
            for e in bundle.get("entry", [])
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
        patients = [r["id"] for r in resources if r.get("resourceType") == "Patient"]
        if len(patients) != 1:
            continue
        kept = [
            r for r in resources if r.get("status") != "draft" and r["resourceType"] != "Patient"
        ]
        out.append((patients[0], kept))
    return out


def population(
    patients: int, *, seed: int = 0, mix: Mapping[str, float] = POPULATION_MIX
) -> Iterator[tuple[str, list[Resource]]]:
    """(kind, resources) for each fictional patient, in patient-id order."""
    kinds = list(mix)
    weights = [mix[k] for k in kinds]
    scenarios = _scenarios()
    for i in range(patients):
        rng = random.Random(seed * 1_000_003 + i)
        pid = f"pop-{i:06d}"
        kind = rng.choices(kinds, weights)[0]
        clinical: list[Resource]
        if kind == "ph_all" and scenarios and rng.random() < SCENARIO_SHARE:
            old, resources = scenarios[rng.randrange(len(scenarios))]
            clinical = rekey(resources, pid, old)
            kind = "ph_all_scenario"
        elif kind == "ph_all":
            clinical = rekey(_ph_all_story(pid, rng), pid)
        elif kind == "cml":
            clinical = rekey(_cml(pid, rng), pid)
        elif kind == "ph_negative_all":
            clinical = rekey(_ph_negative_all(pid), pid)
        elif kind == "b_all_no_ph_result":
            clinical = rekey([_b_all(pid)], pid)
        else:
            clinical = []
        extra = rekey([*_hypertension(pid, rng), *_bulk(pid, rng)], pid)
        yield kind, [_patient(pid, rng), *clinical, *extra]


# -- writers ------------------------------------------------------------------------------------


def write_ndjson_export(
    out: Path, patients: int, *, seed: int = 0, mix: Mapping[str, float] = POPULATION_MIX
) -> dict[str, int]:
    """An `$export`-style folder: <Type>.ndjson per resource type. Returns patients per kind."""
    out.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, int] = {}
    with ExitStack() as stack:
        files: dict[str, IO[str]] = {}

        def write(resource: Resource) -> None:
            rtype = resource["resourceType"]
            fh = files.get(rtype)
            if fh is None:
                fh = files[rtype] = stack.enter_context(
                    (out / f"{rtype}.ndjson").open("w", encoding="utf-8")
                )
            fh.write(json.dumps(resource, separators=(",", ":")) + "\n")

        for medication in shared_medications():
            write(medication)
        for kind, resources in population(patients, seed=seed, mix=mix):
            kinds[kind] = kinds.get(kind, 0) + 1
            for resource in resources:
                write(resource)
    return kinds


def write_bundles(
    out: Path, patients: int, *, seed: int = 0, mix: Mapping[str, float] = POPULATION_MIX
) -> dict[str, int]:
    """One collection Bundle per patient (with the Medications its orders reference)."""
    out.mkdir(parents=True, exist_ok=True)
    medications = {f"Medication/{m['id']}": m for m in shared_medications()}
    kinds: dict[str, int] = {}
    for kind, resources in population(patients, seed=seed, mix=mix):
        kinds[kind] = kinds.get(kind, 0) + 1
        refs = {
            r["medicationReference"]["reference"]
            for r in resources
            if isinstance(r.get("medicationReference"), dict)
        }
        entries = [*resources, *(medications[ref] for ref in sorted(refs) if ref in medications)]
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": f"{g.EHR_BASE}/{r['resourceType']}/{r['id']}", "resource": r}
                for r in entries
            ],
        }
        pid = resources[0]["id"]
        (out / f"{pid}.json").write_text(json.dumps(bundle), encoding="utf-8")
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic patient population export.")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("ndjson", "bundles"), default="ndjson")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    writer = write_ndjson_export if args.format == "ndjson" else write_bundles
    kinds = writer(args.out, args.patients, seed=args.seed)
    print(json.dumps({"patients": args.patients, "kinds": dict(sorted(kinds.items()))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
