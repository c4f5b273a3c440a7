"""Diagnosis, relapse, frontline and arterial-risk facts: each shape both ways."""

from __future__ import annotations

import pytest

from tests.test_facts_builders import (
    ICD,
    LOINC,
    SCT,
    cc,
    condition,
    facts_of,
    observation,
    procedure,
    value,
)


@pytest.mark.parametrize(
    "code",
    [
        cc(None, (SCT, "91857003")),
        cc(None, (ICD, "C91.00")),
        cc(None, (ICD, "C91.01")),
        cc(None, (ICD, "C9102")),  # sent without the dot
        cc(None, ("urn:oid:2.16.840.1.113883.6.90", "C91.00")),  # OID system
        cc("B-cell acute lymphoblastic leukaemia"),
        cc("Ph+ B-ALL"),
        cc("ALL"),
    ],
    ids=[
        "snomed",
        "icd-c91.00",
        "icd-c91.01",
        "icd-no-dot",
        "icd-oid",
        "text",
        "ph+ b-all",
        "all-exact",
    ],
)
def test_b_all_recognised(code: dict[str, object]) -> None:
    f = facts_of(condition("dx", code, onset="2023-05"))
    assert value(f, "diagnosis.b_all") == "yes"
    assert str(f.get("diagnosis.b_all").date) == "2023-05"
    assert f.get("diagnosis.b_all").provenance[0].resource == "Condition/dx"


@pytest.mark.parametrize(
    "code",
    [
        cc("T-cell acute lymphoblastic leukemia"),
        cc("Acute leukemia", (SCT, "91855006")),  # acute leukemia, not ALL
        cc("All other conditions"),
        cc(None, (ICD, "C92.00")),
    ],
)
def test_b_all_not_claimed(code: dict[str, object]) -> None:
    assert value(facts_of(condition("dx", code)), "diagnosis.b_all") == "unknown"


@pytest.mark.parametrize("ver", ["refuted", "entered-in-error"])
def test_refuted_or_erroneous_condition_is_not_evidence(ver: str) -> None:
    f = facts_of(condition("dx", cc(None, (SCT, "91857003")), ver=ver))
    assert value(f, "diagnosis.b_all") == "unknown"


def test_no_condition_is_unknown_not_negative() -> None:
    f = facts_of()
    for name in ("diagnosis.b_all", "diagnosis.cml", "relapse", "frontline", "arterial_risk"):
        assert value(f, name) == "unknown"
        assert f.get(name).provenance == ()


def test_diagnosis_dated_by_earliest_evidence() -> None:
    f = facts_of(
        condition("a", cc(None, (ICD, "C91.00")), onset="2022"),
        condition("b", cc(None, (SCT, "91857003")), onset="2021-03-04"),
    )
    assert str(f.get("diagnosis.b_all").date) == "2021-03-04"


@pytest.mark.parametrize(
    "code", [cc(None, (SCT, "92818009")), cc(None, (ICD, "C92.10")), cc("Chronic myeloid leukemia")]
)
def test_cml(code: dict[str, object]) -> None:
    f = facts_of(condition("cml", code))
    assert value(f, "diagnosis.cml") == "yes"
    assert value(f, "diagnosis.cml_lymphoid_blast") == "unknown"


def test_atypical_cml_is_not_cml() -> None:
    f = facts_of(condition("a", cc("Atypical chronic myeloid leukemia, BCR-ABL1 negative")))
    assert value(f, "diagnosis.cml") == "unknown"


def test_cml_icd10_is_ph_positive_evidence_but_snomed_is_not() -> None:
    assert value(facts_of(condition("a", cc(None, (ICD, "C92.12")))), "ph_status") == "positive"
    assert value(facts_of(condition("a", cc(None, (SCT, "92818009")))), "ph_status") == "unknown"


@pytest.mark.parametrize(
    ("code", "stage"),
    [
        (cc("CML in lymphoid blast crisis"), None),
        (cc(None, (SCT, "92818009")), cc("Lymphoid blast phase")),
    ],
    ids=["code-text", "stage-summary"],
)
def test_cml_lymphoid_blast_phase(code: dict[str, object], stage: dict[str, object] | None) -> None:
    f = facts_of(condition("lbp", code, stage=stage))
    assert value(f, "diagnosis.cml_lymphoid_blast") == "yes"
    assert value(f, "diagnosis.cml") == "yes"


def test_blast_stage_without_cml_is_not_lbp() -> None:
    f = facts_of(condition("x", cc("Lymphoma"), stage=cc("lymphoid blast phase")))
    assert value(f, "diagnosis.cml_lymphoid_blast") == "unknown"


@pytest.mark.parametrize(
    "cond",
    [
        condition("r", cc(None, (ICD, "C91.02")), onset="2021-05"),
        condition("r", cc("Relapsed B-ALL"), onset="2021-05"),
        condition("r", cc("Testicular relapse"), onset="2021-05"),
        condition("r", cc("Relapse"), onset="2021-05"),
        condition("r", cc(None, (SCT, "91857003")), onset="2021-05", clinical="relapse"),
        condition("r", cc(None, (SCT, "91857003")), onset="2021-05", clinical="recurrence"),
    ],
    ids=["c91.02", "text", "em-relapse", "exact", "clinical-relapse", "clinical-recurrence"],
)
def test_relapse(cond: dict[str, object]) -> None:
    """Dated by when the relapse was recorded, not by the onset (the original diagnosis)."""
    f = facts_of({**cond, "recordedDate": "2023-02"})
    assert value(f, "relapse") == "yes"
    assert str(f.get("relapse").date) == "2023-02"
    assert value(f, "frontline") == "no"


@pytest.mark.parametrize(
    "cond",
    [
        condition("r", cc("Relapsing-remitting multiple sclerosis")),
        condition("r", cc("B-ALL, no relapse")),
        condition("r", cc(None, (ICD, "C91.01"))),
        condition("r", cc(None, (ICD, "C91.02")), ver="refuted"),
    ],
    ids=["not-leukemia", "negated", "in-remission", "refuted"],
)
def test_not_relapse(cond: dict[str, object]) -> None:
    assert value(facts_of(cond), "relapse") == "unknown"


def test_relapse_from_disease_status_observation() -> None:
    obs = observation(
        "ds", cc(None, (LOINC, "97509-4")), "2024-03-01", valueCodeableConcept=cc("Relapse")
    )
    f = facts_of(obs)
    assert value(f, "relapse") == "yes"
    assert f.get("relapse").provenance[0].resource == "Observation/ds"


def test_relapse_date_is_latest() -> None:
    f = facts_of(
        condition("a", cc(None, (ICD, "C91.02")), onset="2020"),
        condition("b", cc("Second relapse of ALL"), onset="2023-07-01"),
    )
    assert str(f.get("relapse").date) == "2023-07-01"


def test_frontline_yes_no_unknown() -> None:
    ball = condition("dx", cc(None, (SCT, "91857003")), onset="2024-01")
    assert value(facts_of(ball), "frontline") == "yes"
    assert value(facts_of(), "frontline") == "unknown"
    hsct = procedure("tx", cc("Allogeneic stem cell transplantation"))
    f = facts_of(ball, hsct)
    assert value(f, "frontline") == "no"
    assert "allogeneic HSCT" in (f.get("frontline").detail or "")
    cart = condition("h", cc(None, (ICD, "Z92.850")))
    assert value(facts_of(ball, cart), "frontline") == "no"


@pytest.mark.parametrize(
    "text",
    [
        "Essential hypertension",
        "Type 2 diabetes mellitus",
        "Hypercholesterolaemia",
        "Current every day smoker",
        "Coronary artery disease",
        "History of stroke",
        "Peripheral arterial disease",
    ],
)
def test_arterial_risk_factors(text: str) -> None:
    f = facts_of(condition("rf", cc(text)))
    assert value(f, "arterial_risk") == "yes"


@pytest.mark.parametrize(
    "text",
    [
        "Pulmonary hypertension",
        "Diabetes insipidus",
        "Never smoker",
        "No history of hypertension",
        "Heat stroke",
    ],
)
def test_not_arterial_risk(text: str) -> None:
    assert value(facts_of(condition("rf", cc(text))), "arterial_risk") == "unknown"


def test_arterial_risk_coded_condition_matches_by_display() -> None:
    f = facts_of(condition("rf", cc(None, (SCT, "38341003", "Hypertensive disorder"))))
    assert value(f, "arterial_risk") == "yes"
