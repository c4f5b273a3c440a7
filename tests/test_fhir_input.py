"""Tolerant FHIR input: flattening, patient filtering, STU3/messy shapes, never raising."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.fhir_input import Record, build_record, normalise_resource, reference_key
from tests.test_facts_builders import (
    PID,
    RX,
    SCT,
    bundle,
    cc,
    condition,
    facts_of,
    med,
    med_request,
    observation,
    patient,
    value,
)


def obs(id: str, pid: str = PID) -> dict[str, Any]:
    return observation(id, cc("x"), pid=pid)


def ids(rec: Record, rtype: str = "Observation") -> list[str]:
    return [r["id"] for r in rec.by_type.get(rtype, [])]


def test_sources_of_every_shape_are_flattened() -> None:
    nested = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": bundle(obs("b"))}],
    }
    no_type = {"resourceType": "Bundle", "entry": [{"resource": obs("c")}]}
    single_entry = {"resourceType": "Bundle", "type": "searchset", "entry": {"resource": obs("d")}}
    rec = build_record([None, obs("a"), [nested, [no_type]], single_entry, "junk", 3], PID)
    assert sorted(ids(rec)) == ["a", "b", "c", "d"]
    assert any("non-object" in i for i in rec.issues)


def test_entries_without_resources_and_outcomes_are_skipped() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing"}],
    }
    src = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"fullUrl": "x"},
            "not an entry",
            {"resource": outcome, "search": {"mode": "outcome"}},
            {"resource": outcome},
            {"resource": {"no": "type"}},
            {"resource": obs("a")},
        ],
    }
    rec = build_record([src], PID)
    assert ids(rec) == ["a"]
    assert "OperationOutcome" not in rec.by_type
    assert len(rec.issues) == 3


def test_other_patients_dropped_in_every_reference_form() -> None:
    others = [
        obs("rel", "p2"),
        {**obs("abs"), "subject": {"reference": "https://ehr.example/fhir/Patient/p2"}},
        {**obs("hist"), "subject": {"reference": "Patient/p2/_history/3"}},
        {**obs("urn"), "subject": {"reference": "urn:uuid:other"}},
        patient("p2"),
    ]
    mine = [
        obs("ok"),
        {**obs("ok-abs"), "subject": {"reference": "https://ehr.example/fhir/Patient/p1"}},
        {**obs("ok-urn"), "subject": {"reference": "urn:uuid:me"}},
        {**obs("ok-nosubj"), "subject": None},
        {**obs("ok-ident"), "subject": {"identifier": {"value": "123"}}},
    ]
    src = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:me", "resource": patient()},
            {"fullUrl": "urn:uuid:other", "resource": patient("p2")},
            *({"resource": r} for r in [*others, *mine]),
        ],
    }
    rec = build_record([src], PID)
    assert sorted(ids(rec)) == sorted(r["id"] for r in mine)
    assert ids(rec, "Patient") == [PID]
    assert sum("another patient" in i for i in rec.issues) == 6  # p2 twice


def test_patient_inferred_when_single() -> None:
    rec = build_record([bundle(obs("a"), obs("b", "p2"))], None)
    assert rec.patient_id == PID
    assert ids(rec) == ["a"]
    both = build_record([patient("x"), patient("y"), obs("a")], None)
    assert both.patient_id is None


def test_duplicates_keep_the_first() -> None:
    rec = build_record([obs("a"), {**obs("a"), "status": "amended"}], PID)
    assert [r["status"] for r in rec.by_type["Observation"]] == ["final"]
    assert any("more than once" in i for i in rec.issues)


def test_record_get_by_reference_forms() -> None:
    medication = {"resourceType": "Medication", "id": "m1"}
    src = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": "urn:uuid:abc", "resource": medication}],
    }
    rec = build_record([src], PID)
    for ref in (
        "Medication/m1",
        "urn:uuid:abc",
        "https://x.example/fhir/Medication/m1",
        "Medication/m1/_history/2",
    ):
        got = rec.get(ref)
        assert got is not None and got["id"] == "m1"
    assert rec.get("Medication/none") is None
    assert rec.get("#m1") is None
    assert reference_key("Patient?identifier=1") is None


def test_singletons_become_lists_and_codes_strings() -> None:
    r = normalise_resource(
        {
            "resourceType": "Observation",
            "category": {"coding": {"code": "laboratory"}},
            "code": {"coding": {"system": "http://loinc.org", "code": 46434}},
            "component": {"code": {"text": "x"}},
            "interpretation": {"coding": [{"code": "POS"}]},
        }
    )
    assert r["category"] == [{"coding": [{"code": "laboratory"}]}]
    assert r["code"]["coding"] == [{"system": "http://loinc.org", "code": "46434"}]
    assert r["component"][0]["code"]["coding"] == []
    assert isinstance(r["interpretation"], list)


def test_stu3_shapes() -> None:
    cond = normalise_resource(
        {
            "resourceType": "Condition",
            "clinicalStatus": "active",
            "verificationStatus": "refuted",
            "assertedDate": "2017",
        }
    )
    assert cond["verificationStatus"]["coding"][0]["code"] == "refuted"
    assert cond["recordedDate"] == "2017"
    mr = normalise_resource(
        {"resourceType": "MedicationRequest", "dosageInstruction": [{"doseQuantity": {"value": 1}}]}
    )
    assert mr["dosageInstruction"][0]["doseAndRate"] == [{"doseQuantity": {"value": 1}}]
    ms = normalise_resource(
        {"resourceType": "MedicationStatement", "status": "completed", "taken": "n"}
    )
    assert ms["status"] == "not-taken"
    ma = normalise_resource(
        {"resourceType": "MedicationAdministration", "status": "completed", "notGiven": True}
    )
    assert ma["status"] == "not-done"
    pr = normalise_resource({"resourceType": "Procedure", "status": "completed", "notDone": True})
    assert pr["status"] == "not-done"


def test_stu3_refuted_condition_is_not_evidence() -> None:
    c = {**condition("dx", cc(None, (SCT, "91857003"))), "verificationStatus": "refuted"}
    assert value(facts_of(c), "diagnosis.b_all") == "unknown"


def test_stu3_medication_statement_not_taken_is_not_exposure() -> None:
    ms = {
        "resourceType": "MedicationStatement",
        "id": "s",
        "status": "completed",
        "taken": "n",
        "subject": {"reference": f"Patient/{PID}"},
        **med("dasatinib"),
    }
    assert value(facts_of(ms), "exposure.dasatinib") == "never"


def test_input_is_not_mutated() -> None:
    original = med_request(
        "r", {"medicationCodeableConcept": {"coding": {"system": RX, "code": 475342}}}
    )
    snapshot = repr(original)
    normalise_resource(original)
    build_record([original], PID)
    assert repr(original) == snapshot


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceType",
                    "id",
                    "code",
                    "coding",
                    "category",
                    "subject",
                    "entry",
                    "resource",
                    "status",
                    "component",
                    "valueQuantity",
                    "value",
                    "text",
                    "reference",
                    "medicationReference",
                    "contained",
                    "effectiveDateTime",
                    "dosageInstruction",
                    "verificationStatus",
                    "bodySite",
                    "focus",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)
resource_types = st.sampled_from(
    [
        "Observation",
        "Condition",
        "MedicationRequest",
        "MedicationStatement",
        "MedicationAdministration",
        "Procedure",
        "Bundle",
        "Medication",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    types=st.lists(resource_types, min_size=1, max_size=5),
    bodies=st.lists(json_values, min_size=1, max_size=5),
)
def test_never_raises_on_messy_resources(types: list[str], bodies: list[Any]) -> None:
    sources: list[Any] = []
    for t, body in zip(types, bodies, strict=False):
        sources.append({**body, "resourceType": t} if isinstance(body, dict) else body)
    rec = build_record(sources, PID)
    facts = facts_of_record(rec)
    assert facts.get("ph_status").value in ("positive", "negative", "unknown")
    assert not [i for i in facts.issues if "could not be read" in i]


def facts_of_record(rec: Record) -> Any:
    from cds_service.facts.extract import extract_facts

    return extract_facts(rec, orders=[b for b in rec.by_type.get("MedicationRequest", [])])


def _seed_resources() -> list[dict[str, Any]]:
    import json
    from pathlib import Path

    out: list[dict[str, Any]] = []
    for path in sorted(
        (Path(__file__).resolve().parent.parent / "fhir_fixtures" / "facts").glob("*.json")
    ):
        doc = json.loads(path.read_text(encoding="utf-8"))
        out.extend(
            e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] != "Patient"
        )
    return out


SEEDS = _seed_resources()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in ("resourceType", "subject"):
                out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _replace(node: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {**node, head: _replace(node[head], rest, new)}
    copy = list(node)
    copy[head] = _replace(copy[head], rest, new)
    return copy


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_any_field_of_a_real_resource_may_be_garbage(data: st.DataObject) -> None:
    resource = data.draw(st.sampled_from(SEEDS))
    paths = _paths(resource)
    path = data.draw(st.sampled_from(paths))
    garbage = data.draw(json_values)
    broken = _replace(resource, path, garbage)
    rec = build_record([patient(), broken], PID)
    facts = facts_of_record(rec)
    assert not [i for i in facts.issues if "could not be read" in i], (path, garbage)
