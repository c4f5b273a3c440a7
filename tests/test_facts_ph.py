"""Ph / BCR::ABL1 status, transcript, latest ratio and trend: each shape both ways."""

from __future__ import annotations

import pytest

from tests.test_facts_builders import (
    ICDO,
    LOINC,
    SCT,
    cc,
    condition,
    facts_of,
    observation,
    qty,
    value,
)

RATIO = cc(None, (LOINC, "46434-7"))
NOT_DETECTED = cc("Not detected", (SCT, "260415000"))
DETECTED = cc(None, (SCT, "260373001", "Detected"))


@pytest.mark.parametrize(
    "res",
    [
        observation("o", RATIO, valueQuantity=qty(0.5)),
        observation("o", cc(None, (LOINC, "55147-3")), valueQuantity=qty(12)),
        observation("o", cc(None, (LOINC, "50195-7")), valueQuantity=qty(-1.3, "{log}")),
        observation("o", cc("BCR::ABL1 qualitative PCR"), valueCodeableConcept=DETECTED),
        observation(
            "o", cc("BCR-ABL (local)", ("urn:oid:1.2.3", "LAB123")), valueString="Positive"
        ),
        observation(
            "o",
            cc("BCR-ABL1 FISH"),
            interpretation=[
                cc(
                    None,
                    ("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "POS"),
                )
            ],
        ),
        observation("o", cc("Karyotype"), valueString="46,XY,t(9;22)(q34;q11.2)[20]"),
        observation(
            "o", cc("t(9;22) FISH"), valueCodeableConcept=cc("Positive", (SCT, "10828004"))
        ),
        observation("o", cc("Histology"), valueCodeableConcept=cc(None, (ICDO, "9812/3"))),
        condition("o", cc("Philadelphia chromosome positive acute lymphoblastic leukemia")),
        condition("o", cc("BCR-ABL1-positive B-ALL")),
    ],
    ids=[
        "ratio>0",
        "p210",
        "log-ratio",
        "qualitative-coded",
        "local-code-text",
        "interpretation",
        "karyotype",
        "fish",
        "icd-o-3",
        "wording",
        "bcr-abl1-positive-wording",
    ],
)
def test_ph_positive(res: dict[str, object]) -> None:
    f = facts_of(res)
    assert value(f, "ph_status") == "positive"
    assert f.get("ph_status").provenance


@pytest.mark.parametrize(
    "res",
    [
        observation("o", cc("BCR-ABL1 qualitative"), valueCodeableConcept=NOT_DETECTED),
        observation("o", cc("BCR::ABL1"), valueString="not detected"),
        observation("o", cc("Karyotype"), valueString="46,XX; no t(9;22) detected"),
        observation(
            "o", cc("t(9;22) FISH"), valueCodeableConcept=cc("Negative", (SCT, "260385009"))
        ),
        condition("o", cc("Ph-negative B-ALL")),
        condition("o", cc("Ph-like acute lymphoblastic leukemia")),
    ],
    ids=[
        "qualitative-coded",
        "qualitative-text",
        "karyotype-negated",
        "fish-negative",
        "wording",
        "ph-like",
    ],
)
def test_ph_negative(res: dict[str, object]) -> None:
    assert value(facts_of(res), "ph_status") == "negative"


def test_quantitative_zero_alone_is_not_ph_negative() -> None:
    f = facts_of(observation("o", RATIO, valueQuantity=qty(0)))
    assert value(f, "ph_status") == "unknown"
    assert value(f, "bcr_abl1.latest") == 0.0


def test_positive_history_outweighs_later_negative() -> None:
    f = facts_of(
        observation("a", RATIO, "2022-01-01", valueQuantity=qty(30)),
        observation(
            "b", cc("BCR-ABL1 qualitative"), "2023-01-01", valueCodeableConcept=NOT_DETECTED
        ),
    )
    assert value(f, "ph_status") == "positive"
    assert "later" in (f.get("ph_status").detail or "")


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_erroneous_results_are_not_evidence(status: str) -> None:
    f = facts_of(observation("o", RATIO, status=status, valueQuantity=qty(10)))
    assert value(f, "ph_status") == "unknown"
    assert value(f, "bcr_abl1.latest") is None


@pytest.mark.parametrize(
    ("res", "expected"),
    [
        (observation("o", cc(None, (LOINC, "52132-8")), valueQuantity=qty(1)), "p190"),
        (observation("o", cc(None, (LOINC, "55147-3")), valueQuantity=qty(1)), "p210"),
        (observation("o", cc("BCR-ABL1 e13a2 (b2a2) quantitative"), valueQuantity=qty(1)), "p210"),
        (observation("o", cc("BCR-ABL1 p230 / e19a2"), valueCodeableConcept=DETECTED), "other"),
        (observation("o", cc("BCR-ABL1 transcript type"), valueString="e1a2 (p190)"), "p190"),
    ],
    ids=["p190-loinc", "p210-loinc", "e13a2-text", "p230", "transcript-value"],
)
def test_transcript(res: dict[str, object], expected: str) -> None:
    assert value(facts_of(res), "bcr_abl1.transcript") == expected


def test_transcript_unknown_when_assay_negative() -> None:
    f = facts_of(observation("o", cc(None, (LOINC, "52132-8")), valueQuantity=qty(0)))
    assert value(f, "bcr_abl1.transcript") == "unknown"


@pytest.mark.parametrize(
    ("values", "trend"),
    [
        ((0.01, 0.5), "rising"),
        ((5.0, 0.1), "falling"),
        ((0.1, 0.15), "stable"),
        ((0.0, 0.01), "rising"),
        ((0.2, 0.0), "falling"),
    ],
)
def test_latest_and_trend(values: tuple[float, float], trend: str) -> None:
    f = facts_of(
        observation("b", RATIO, "2024-03-01", valueQuantity=qty(values[1])),
        observation("a", RATIO, "2024-01-01", valueQuantity=qty(values[0])),
    )
    assert value(f, "bcr_abl1.latest") == values[1]
    assert str(f.get("bcr_abl1.latest").date) == "2024-03-01"
    assert value(f, "bcr_abl1.trend") == trend


def test_trend_needs_two_results() -> None:
    f = facts_of(observation("a", RATIO, valueQuantity=qty(1)))
    assert value(f, "bcr_abl1.trend") == "unknown"
    assert value(f, "bcr_abl1.latest") == 1.0


def test_below_limit_reads_as_zero_with_detail() -> None:
    f = facts_of(observation("a", RATIO, valueQuantity=qty(0.001, comparator="<")))
    assert value(f, "bcr_abl1.latest") == 0.0
    assert f.get("bcr_abl1.latest").detail == "<0.001 %"
    assert value(f, "ph_status") == "unknown"


def test_ratio_in_other_units_is_not_read() -> None:
    f = facts_of(observation("a", RATIO, valueQuantity=qty(12000, "copies/mL")))
    assert value(f, "bcr_abl1.latest") is None
    assert any("unit" in i for i in f.issues)


def test_component_of_a_panel() -> None:
    panel = observation(
        "panel",
        cc("Leukemia molecular panel"),
        component=[{"code": RATIO, "valueQuantity": qty(2.5)}],
    )
    f = facts_of(panel)
    assert value(f, "bcr_abl1.latest") == 2.5
    assert f.get("ph_status").provenance[0].via == "component"


def test_partial_dates_order_results() -> None:
    f = facts_of(
        observation("a", RATIO, "2023", valueQuantity=qty(1)),
        observation("b", RATIO, "2024-02", valueQuantity=qty(4)),
    )
    assert str(f.get("bcr_abl1.latest").date) == "2024-02"
