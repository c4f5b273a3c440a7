"""Tolerant normalisation of the FHIR data real clients send, into one indexed patient record.

`build_record` flattens prefetch values (Bundles of any or no type, nested Bundles, single
resources, lists, None) into resources indexed by type and by reference, and drops what is not
about the patient. It never raises on a messy resource: each problem becomes a note in
`Record.issues` (resource type, id and field only, never a value).

`normalise_resource` returns a shallow copy with the shapes the fact extractors rely on:

* list-valued elements sent as a single object become one-item lists (category, coding,
  dosageInstruction, component, bodySite, …);
* CodeableConcepts get a `coding` list whose codes are strings (numeric codes are common);
* STU3 shapes: `dosageInstruction[].doseQuantity` / `rateQuantity` move into `doseAndRate`,
  Condition `clinicalStatus` / `verificationStatus` sent as plain codes become
  CodeableConcepts, MedicationStatement `taken: "n"` becomes status `not-taken`,
  MedicationAdministration `notGiven: true` and Procedure `notDone: true` become `not-done`,
  Condition `assertedDate` becomes `recordedDate`;
* R5 `medication: {concept | reference}` (CodeableReference) is read as
  medicationCodeableConcept / medicationReference.

Resources whose `subject` / `patient` points to a different Patient are dropped; so are
Patient resources with another id, OperationOutcomes and entries that are not resources.
When `patient_id` is None and the sources hold exactly one Patient, that Patient's id is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_MAX_DEPTH = 8

# Elements that are lists in R4, per resource type (and for every type).
_LIST_FIELDS_ALL = ("identifier", "contained", "note", "extension")
_LIST_FIELDS: dict[str, tuple[str, ...]] = {
    "Condition": ("category", "bodySite", "stage", "evidence"),
    "Observation": (
        "category",
        "component",
        "interpretation",
        "performer",
        "hasMember",
        "derivedFrom",
        "basedOn",
        "partOf",
        "focus",
        "referenceRange",
    ),
    "MedicationRequest": ("category", "dosageInstruction", "reasonCode", "basedOn"),
    "MedicationStatement": ("dosage", "reasonCode", "statusReason", "partOf", "derivedFrom"),
    "MedicationAdministration": ("reasonCode", "statusReason", "performer", "partOf"),
    "Procedure": ("bodySite", "reasonCode", "complication", "usedCode", "focalDevice"),
    "Medication": ("ingredient",),
    "ServiceRequest": ("category", "reasonCode", "bodySite", "orderDetail", "basedOn"),
    "DiagnosticReport": ("category", "result", "conclusionCode"),
}
# CodeableConcept elements (single) and CodeableConcept lists, per resource type.
_CC_FIELDS = (
    "code",
    "valueCodeableConcept",
    "medicationCodeableConcept",
    "clinicalStatus",
    "verificationStatus",
    "method",
    "outcome",
    "form",
    "dataAbsentReason",
)
_CC_SINGLE_OR_LIST_FIELDS = (
    "category",
    "bodySite",
    "interpretation",
    "reasonCode",
    "statusReason",
    "conclusionCode",
    "usedCode",
)

_SCALAR_STRINGS = ("id", "status", "intent", "authoredOn", "issued", "recordedDate")

_CLINICAL_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_STU3_VERIFICATION = {"differential": "differential", "provisional": "provisional"}


@dataclass
class Record:
    """One patient's resources, normalised and indexed by type and by reference."""

    patient_id: str | None
    by_type: dict[str, list[dict[str, Any]]]
    issues: list[str]
    index: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    """Reference → resource: "Type/id", fullUrl (urn:uuid:… or absolute URL)."""
    skipped: int = 0
    """Resources left out because the caller's `skip` said no reader uses them."""

    def get(self, reference: str) -> dict[str, Any] | None:
        """The resource a reference points to ("Medication/1", a fullUrl, an absolute URL)."""
        if not isinstance(reference, str) or not reference:
            return None
        hit = self.index.get(reference)
        if hit is not None:
            return hit
        key = reference_key(reference)
        return self.index.get(key) if key else None

    def resources(self, *types: str) -> Iterator[dict[str, Any]]:
        for t in types:
            yield from self.by_type.get(t, ())

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_type.values())


def reference_key(reference: str) -> str | None:
    """ "Type/id" for a relative or absolute literal reference, ignoring _history; else None."""
    ref = reference.strip()
    if not ref or ref.startswith(("#", "urn:")):
        return None
    parts = [p for p in ref.split("?")[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        return None
    rtype, rid = parts[-2], parts[-1]
    if not rtype[:1].isupper():
        return None
    return f"{rtype}/{rid}"


def as_list(value: Any) -> list[Any]:
    """A list for a list, [value] for a single value, [] for None."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _norm_coding(coding: Any) -> dict[str, Any] | None:
    if not isinstance(coding, dict):
        return None
    out: dict[str, Any] = coding
    code = coding.get("code")
    if isinstance(code, int | float) and not isinstance(code, bool):
        out = dict(coding)
        out["code"] = str(int(code)) if float(code).is_integer() else str(code)
    return out


def normalise_cc(cc: Any) -> dict[str, Any] | None:
    """A CodeableConcept with a `coding` list of dicts; a bare string becomes its text."""
    if isinstance(cc, str):
        return {"text": cc, "coding": []}
    if not isinstance(cc, dict):
        return None
    codings = cc.get("coding")
    if isinstance(codings, list) and all(
        isinstance(c, dict) and isinstance(c.get("code", ""), str) for c in codings
    ):
        return cc
    out = dict(cc)
    out["coding"] = [c for c in (_norm_coding(x) for x in as_list(codings)) if c is not None]
    if "code" in cc and "system" in cc and not codings:
        # a Coding sent where a CodeableConcept belongs
        coding = _norm_coding({k: cc[k] for k in ("system", "code", "display") if k in cc})
        if coding:
            out["coding"] = [coding]
    return out


def _status_cc(value: Any, system: str) -> Any:
    if isinstance(value, str):
        return {"coding": [{"system": system, "code": value}], "text": value}
    return normalise_cc(value)


def normalise_resource(resource: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of resource in the R4 shapes the extractors expect (never raises)."""
    if not isinstance(resource, dict):
        return {}
    r = dict(resource)
    for name in _SCALAR_STRINGS:
        if name in r and not isinstance(r[name], str):
            del r[name]  # a status that is not a code cannot be read; treated as absent
    rtype = r.get("resourceType")
    if not isinstance(rtype, str):
        rtype = ""
    for name in (*_LIST_FIELDS_ALL, *_LIST_FIELDS.get(rtype, ())):
        if name in r and not isinstance(r[name], list):
            r[name] = as_list(r[name])
    for name in _CC_FIELDS:
        if name in r:
            if rtype == "Condition" and name == "clinicalStatus":
                r[name] = _status_cc(r[name], _CLINICAL_STATUS_SYSTEM)
            elif rtype == "Condition" and name == "verificationStatus":
                r[name] = _status_cc(r[name], _VERIFICATION_STATUS_SYSTEM)
            else:
                r[name] = normalise_cc(r[name])
    for name in _CC_SINGLE_OR_LIST_FIELDS:
        if name in r:
            value = r[name]
            if isinstance(value, list):
                r[name] = [c for c in (normalise_cc(x) for x in value) if c is not None]
            else:
                r[name] = normalise_cc(value)
    # R5 CodeableReference medication
    med = r.get("medication")
    has_med = "medicationCodeableConcept" in r or "medicationReference" in r
    if isinstance(med, dict) and not has_med:
        if isinstance(med.get("concept"), dict):
            r["medicationCodeableConcept"] = normalise_cc(med["concept"])
        if isinstance(med.get("reference"), dict):
            r["medicationReference"] = med["reference"]
    if "component" in r:
        r["component"] = [_normalise_component(c) for c in r["component"] if isinstance(c, dict)]
    if rtype == "Medication" and "ingredient" in r:
        r["ingredient"] = [_normalise_ingredient(i) for i in r["ingredient"] if isinstance(i, dict)]
    if rtype == "MedicationRequest" and "dosageInstruction" in r:
        r["dosageInstruction"] = [_normalise_dosage(d) for d in r["dosageInstruction"]]
    if rtype == "MedicationStatement":
        if "dosage" in r:
            r["dosage"] = [_normalise_dosage(d) for d in r["dosage"]]
        taken = r.get("taken")
        not_taken = isinstance(taken, str) and taken.lower() == "n"
        if not_taken and r.get("status") != "entered-in-error":
            r["status"] = "not-taken"
    if rtype == "MedicationAdministration" and r.get("notGiven") is True:
        r["status"] = "not-done"
    if rtype == "Procedure" and r.get("notDone") is True:
        r["status"] = "not-done"
    if rtype == "Condition" and "recordedDate" not in r and isinstance(r.get("assertedDate"), str):
        r["recordedDate"] = r["assertedDate"]
    if "contained" in r:
        r["contained"] = [normalise_resource(c) for c in r["contained"] if isinstance(c, dict)]
    return r


def _normalise_component(c: dict[str, Any]) -> dict[str, Any]:
    out = dict(c)
    for name in ("code", "valueCodeableConcept"):
        if name in out:
            out[name] = normalise_cc(out[name])
    if "interpretation" in out:
        out["interpretation"] = [
            x for x in (normalise_cc(i) for i in as_list(out["interpretation"])) if x is not None
        ]
    return out


def _normalise_ingredient(i: dict[str, Any]) -> dict[str, Any]:
    out = dict(i)
    if "itemCodeableConcept" in out:
        out["itemCodeableConcept"] = normalise_cc(out["itemCodeableConcept"])
    return out


def _normalise_dosage(d: Any) -> Any:
    if not isinstance(d, dict):
        return d
    if "doseQuantity" not in d and "rateQuantity" not in d and "doseRange" not in d:
        return d
    out = dict(d)
    dar: dict[str, Any] = {}
    for name in ("doseQuantity", "doseRange", "rateQuantity", "rateRatio", "rateRange"):
        if name in out:
            dar[name] = out.pop(name)
    out["doseAndRate"] = [*as_list(out.get("doseAndRate")), dar]
    return out


def _flatten(
    source: Any, issues: list[str], depth: int = 0, full_url: str | None = None
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Resources (with their Bundle fullUrl) in document order; a loop with an explicit stack,
    not recursive generators: a 5,000-entry prefetch goes through here on every request."""
    stack: list[tuple[Any, int, str | None]] = [(source, depth, full_url)]
    while stack:
        item, level, url = stack.pop()
        if item is None:
            continue
        if level > _MAX_DEPTH:
            issues.append("input nested too deeply; the rest was ignored")
            continue
        if isinstance(item, list | tuple):
            stack.extend((child, level + 1, None) for child in reversed(item))
            continue
        if not isinstance(item, dict):
            issues.append(f"ignored a non-object input of type {type(item).__name__}")
            continue
        rtype = item.get("resourceType")
        if rtype == "Bundle" or (rtype is None and "entry" in item):
            children: list[tuple[Any, int, str | None]] = []
            for k, entry in enumerate(as_list(item.get("entry"))):
                if not isinstance(entry, dict):
                    issues.append(f"Bundle entry {k}: not an object, ignored")
                    continue
                search = entry.get("search")
                if isinstance(search, dict) and search.get("mode") == "outcome":
                    continue
                request = entry.get("request")
                if isinstance(request, dict) and request.get("method") == "DELETE":
                    continue
                resource = entry.get("resource")
                if resource is None:
                    continue
                entry_url = entry.get("fullUrl")
                children.append(
                    (resource, level + 1, entry_url if isinstance(entry_url, str) else None)
                )
            stack.extend(reversed(children))
            continue
        if not isinstance(rtype, str) or not rtype:
            issues.append("ignored an object without resourceType")
            continue
        yield item, url


def iter_resources(source: Any) -> Iterator[dict[str, Any]]:
    """Every resource in source (Bundles of any type, lists, single resources), in order; the
    same walk build_record makes, without normalising or filtering by patient."""
    for resource, _ in _flatten(source, []):
        yield resource


def _subject_ref(resource: dict[str, Any]) -> str | None:
    for name in ("subject", "patient"):
        value = resource.get(name)
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str) and ref:
                return ref
    return None


def build_record(
    sources: Iterable[Any],
    patient_id: str | None,
    *,
    skip: Callable[[dict[str, Any]], bool] | None = None,
) -> Record:
    """Normalise and index the resources in sources; drop those about another patient.

    `skip(resource)` (given by the caller that knows what its readers use) is asked about
    each resource as sent; a resource it answers True for is counted in `Record.skipped`
    and neither normalised nor indexed — in a real record most Observations are vital signs
    and routine chemistry that no reader looks at, and normalising them cost as much as
    parsing the whole request.
    """
    issues: list[str] = []
    items: list[tuple[dict[str, Any], str | None]] = []
    try:
        iterator = iter(sources)
    except TypeError:
        iterator = iter([sources])
    for source in iterator:
        for resource, url in _flatten(source, issues):
            items.append((resource, url))

    # who is the patient, and which urn:uuid / URL means them
    patient_urls: dict[str, str] = {}
    patient_ids: set[str] = set()
    for resource, url in items:
        if resource.get("resourceType") == "Patient":
            rid = resource.get("id")
            if isinstance(rid, str) and rid:
                patient_ids.add(rid)
                if url:
                    patient_urls[url] = rid
    if patient_id is None and len(patient_ids) == 1:
        patient_id = next(iter(patient_ids))

    by_type: dict[str, list[dict[str, Any]]] = {}
    index: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    ours: dict[str, bool] = {}  # subject reference → about this patient (checked once per string)
    skipped = 0
    for resource, url in items:
        rtype = resource["resourceType"]
        rid = resource.get("id")
        if rtype == "OperationOutcome":
            issues.append("an OperationOutcome was supplied in place of data and was ignored")
            continue
        if patient_id is not None:
            if rtype == "Patient" and isinstance(rid, str) and rid != patient_id:
                issues.append(f"{rtype}/{rid}: another patient, ignored")
                continue
            ref = _subject_ref(resource)
            if ref is not None:
                mine = ours.get(ref)
                if mine is None:
                    mine = ours[ref] = _is_patient(ref, patient_id, patient_urls)
                if not mine:
                    label = f"{rtype}/{rid}" if isinstance(rid, str) and rid else rtype
                    issues.append(f"{label}: about another patient, ignored")
                    continue
        if skip is not None and skip(resource):
            skipped += 1
            continue
        key = f"{rtype}/{rid}" if isinstance(rid, str) and rid else None
        try:
            norm = normalise_resource(resource)
        except Exception as exc:  # pragma: no cover - defensive: never fail on a messy resource
            label = key or rtype
            issues.append(f"{label}: could not be normalised ({type(exc).__name__}), ignored")
            continue
        if key is not None:
            if key in seen:
                issues.append(f"{key}: supplied more than once; the first copy is used")
                continue
            seen.add(key)
            index[key] = norm
        if url:
            index.setdefault(url, norm)
        by_type.setdefault(rtype, []).append(norm)
    return Record(
        patient_id=patient_id, by_type=by_type, issues=issues, index=index, skipped=skipped
    )


def _is_patient(ref: str, patient_id: str, patient_urls: dict[str, str]) -> bool:
    """False only when ref surely names a Patient other than patient_id."""
    if ref in patient_urls:
        return patient_urls[ref] == patient_id
    key = reference_key(ref)
    if key is None:
        return True  # urn:uuid we cannot resolve, contained, or malformed: keep
    rtype, _, rid = key.partition("/")
    if rtype != "Patient":
        return True
    return rid == patient_id
