"""The shapes real EHRs give the same clinical facts, as meaning-preserving rewrites.

Each shape rewrites a patient's resources (deep copies) without changing what they say:

* ``as-written`` — the rule case's fixture as its author wrote it;
* ``local-codes`` — a local code beside every standard one (as EHRs send their own build
  codes next to LOINC / SNOMED / RxNorm), date-only clinical timestamps given a local time
  and UTC offset (kept within the same calendar day in UTC), medications as a contained
  Medication resource referenced from the order or statement;
* ``stamped`` — what a FHIR server adds on export: meta (versionId, lastUpdated, source) and
  a business identifier on every resource, problem-list categories on Conditions.

Every shape also drops references to resources the patient's record does not hold (a chart's
Encounter, Practitioner or Organization), keeping their display, so the record loads into a
FHIR server that checks referential integrity.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import re
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..fhir_input import reference_key

Resource = dict[str, Any]
LOCAL_SYSTEM = "urn:oid:2.16.840.1.113883.19.5.99999.2"
"""An example.org-style local code system (HL7's example OID root), never a real EHR's."""
IDS_BASE = "https://ehr.example.org/ids"
SHAPES: tuple[str, ...] = ("as-written", "local-codes", "stamped")

_DATETIME_KEYS = frozenset(
    {
        "effectiveDateTime",
        "onsetDateTime",
        "abatementDateTime",
        "performedDateTime",
        "occurrenceDateTime",
        "authoredOn",
        "recordedDate",
        "dateAsserted",
        "valueDateTime",
    }
)
_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
_CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"


def apply(
    shape: str, resources: Sequence[Resource], rng: random.Random, as_of: dt.date
) -> list[Resource]:
    """`resources` in `shape` (see the module docstring)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")
    out = drop_dangling_references([copy.deepcopy(r) for r in resources])
    if shape == "local-codes":
        offset = rng.choice(["-05:00", "-04:00", "+00:00", "+01:00"])
        for r in out:
            _add_local_codes(r)
            _timestamp(r, offset, rng)
            _contain_medication(r)
    elif shape == "stamped":
        for n, r in enumerate(out):
            _stamp(r, n, as_of)
    return out


# -- all shapes ----------------------------------------------------------------------------------


def _references(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for key, value in node.items():
            if key != "contained":
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def drop_dangling_references(resources: list[Resource]) -> list[Resource]:
    """Remove `reference` from Reference elements whose target is not among `resources`
    (a display is kept, or made from the target's type, so the element stays valid)."""
    present = {f"{r.get('resourceType')}/{r.get('id')}" for r in resources}
    for r in resources:
        for ref in _references(r):
            value = ref["reference"]
            if value.startswith("#"):
                continue
            target = reference_key(value)
            if target is not None and target not in present:
                del ref["reference"]
                ref.setdefault("display", target.split("/", 1)[0])
    return resources


# -- local-codes ---------------------------------------------------------------------------------


def _coded(resource: Resource) -> Iterator[dict[str, Any]]:
    """The CodeableConcepts naming what a resource is about (not its values)."""
    for key in ("code", "medicationCodeableConcept"):
        cc = resource.get(key)
        if isinstance(cc, dict):
            yield cc
    for component in resource.get("component") or []:
        if isinstance(component, dict) and isinstance(component.get("code"), dict):
            yield component["code"]


def _label(cc: dict[str, Any]) -> str | None:
    if isinstance(cc.get("text"), str) and cc["text"].strip():
        return str(cc["text"])
    for coding in cc.get("coding") or []:
        if isinstance(coding, dict) and isinstance(coding.get("display"), str):
            return str(coding["display"])
    return None


def _add_local_codes(resource: Resource) -> None:
    for cc in _coded(resource):
        label = _label(cc)
        codings = cc.get("coding")
        if label is None or not isinstance(codings, list) or not codings:
            continue  # text-only stays text-only: that shape is real too
        code = f"L{zlib.crc32(label.encode()) % 10**7:07d}"
        codings.append({"system": LOCAL_SYSTEM, "code": code, "display": label})


def _timestamp(resource: Resource, offset: str, rng: random.Random) -> None:
    for key, value in list(resource.items()):  # resource order: deterministic draws
        if key in _DATETIME_KEYS and isinstance(value, str) and _FULL_DATE.match(value):
            # 09:00-13:59 local at offsets -05:00..+01:00 is the same day in UTC
            resource[key] = f"{value}T{rng.randint(9, 13):02d}:{rng.randint(0, 59):02d}:00{offset}"


def _contain_medication(resource: Resource) -> None:
    if resource.get("resourceType") not in _MEDICATION_TYPES or resource.get("status") == "draft":
        return
    cc = resource.get("medicationCodeableConcept")
    if not isinstance(cc, dict) or "contained" in resource:
        return
    medication = {"resourceType": "Medication", "id": "med", "code": cc}
    reference: dict[str, Any] = {"reference": "#med"}
    label = _label(cc)
    if label:
        reference["display"] = label
    del resource["medicationCodeableConcept"]
    resource["contained"] = [medication]
    resource["medicationReference"] = reference


# -- stamped -------------------------------------------------------------------------------------


def _stamp(resource: Resource, n: int, as_of: dt.date) -> None:
    rtype = str(resource.get("resourceType"))
    resource.setdefault(
        "meta",
        {
            "versionId": str(1 + n % 4),
            "lastUpdated": f"{as_of.isoformat()}T06:{n % 60:02d}:00Z",
            "source": "#synth-ehr",
        },
    )
    if rtype != "Patient" and "identifier" not in resource and rtype != "Medication":
        resource["identifier"] = [
            {"system": f"{IDS_BASE}/{rtype.lower()}", "value": str(resource.get("id"))}
        ]
    if rtype == "Condition" and not resource.get("category"):
        resource["category"] = [
            {
                "coding": [
                    {
                        "system": _CONDITION_CATEGORY,
                        "code": "problem-list-item",
                        "display": "Problem List Item",
                    }
                ]
            }
        ]
