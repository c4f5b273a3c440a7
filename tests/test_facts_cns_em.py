"""CNS and other extramedullary involvement: each shape both ways."""

from __future__ import annotations

import pytest

from tests.test_facts_builders import LOINC, SCT, cc, condition, facts_of, observation, qty, value

CSF_BLASTS = cc(None, (LOINC, "35068-6"))


@pytest.mark.parametrize(
    "res",
    [
        observation("o", CSF_BLASTS, valueQuantity=qty(12)),
        observation("o", cc("CSF blasts (local)"), valueString="present"),
        observation("o", cc("CSF cytology"), valueString="Leukemic blasts present"),
        observation(
            "o",
            cc("Cerebrospinal fluid cytology"),
            valueCodeableConcept=cc("Positive", (SCT, "10828004")),
        ),
        observation("o", cc("CSF flow cytometry"), valueString="Abnormal population detected"),
        observation("o", cc("CNS status"), valueString="CNS3"),
        observation(
            "o",
            cc(None, (LOINC, "34563-7")),
            component=[{"code": CSF_BLASTS, "valueQuantity": qty(4)}],
        ),
        condition("o", cc("CNS leukemia")),
        condition("o", cc("Leptomeningeal leukemia")),
        condition("o", cc(None, (SCT, "91857003")), body=[cc("Brain")]),
        condition("o", cc("B-ALL, CNS relapse")),
    ],
    ids=[
        "csf-blasts",
        "local-csf-blasts",
        "cytology-text",
        "cytology-coded",
        "flow",
        "cns3",
        "panel",
        "wording",
        "leptomeningeal",
        "body-site",
        "cns-relapse",
    ],
)
def test_cns_yes(res: dict[str, object]) -> None:
    f = facts_of(res)
    assert value(f, "cns.involvement") == "yes"
    assert "cns" in value(f, "extramedullary.sites")  # type: ignore[operator]
    assert value(f, "extramedullary.involvement") == "unknown"  # CNS is not "outside the CNS"


@pytest.mark.parametrize(
    "res",
    [
        observation("o", CSF_BLASTS, valueQuantity=qty(0)),
        observation("o", cc("CSF cytology"), valueString="Negative for malignant cells"),
        observation(
            "o",
            cc("CSF flow cytometry"),
            valueCodeableConcept=cc("Not detected", (SCT, "260415000")),
        ),
        observation("o", cc("CNS status"), valueString="CNS1"),
    ],
    ids=["blasts-0", "cytology-negative", "flow-negative", "cns1"],
)
def test_cns_no(res: dict[str, object]) -> None:
    assert value(facts_of(res), "cns.involvement") == "no"


@pytest.mark.parametrize(
    "res",
    [
        condition("o", cc("B-ALL without CNS involvement")),
        condition("o", cc("Headache"), body=[cc("Brain")]),
        observation("o", CSF_BLASTS, status="entered-in-error", valueQuantity=qty(30)),
        observation("o", cc(None, (LOINC, "58470-6")), valueQuantity=qty(50, "/uL")),
    ],
    ids=["negated", "not-leukemia", "entered-in-error", "nucleated-cells-only"],
)
def test_cns_unknown(res: dict[str, object]) -> None:
    assert value(facts_of(res), "cns.involvement") == "unknown"


def test_cns_positive_then_later_negative_is_cleared_not_active() -> None:
    f = facts_of(
        observation("a", CSF_BLASTS, "2023-01-01", valueQuantity=qty(20)),
        observation("b", CSF_BLASTS, "2023-03-01", valueQuantity=qty(0)),
    )
    fact = f.get("cns.involvement")
    assert fact.value == "cleared"
    assert str(fact.date) == "2023-01-01" and str(fact.end) == "2023-03-01"
    assert fact.detail == "involvement 2023-01-01; cleared 2023-03-01"
    assert "cns" not in value(f, "extramedullary.sites")


@pytest.mark.parametrize(
    ("res", "site"),
    [
        (condition("o", cc("Testicular relapse")), "testis"),
        (condition("o", cc(None, (SCT, "91857003")), body=[cc("Left testis")]), "testis"),
        (condition("o", cc("Leukemia cutis")), "skin"),
        (condition("o", cc("B-ALL skin infiltrates")), "skin"),
        (condition("o", cc("Relapsed ALL"), body=[cc("Skin of trunk")]), "skin"),
        (condition("o", cc("Extramedullary relapse")), "other"),
        (condition("o", cc("Myeloid sarcoma"), body=[cc("Orbit")]), "other"),
        (
            observation(
                "o",
                cc("Testicular biopsy pathology"),
                valueString="Testicular infiltration by leukemic blasts",
            ),
            "testis",
        ),
        (
            observation(
                "o",
                cc("Skin biopsy"),
                valueString="Infiltration by leukemia blasts, positive",
                bodySite=cc("Skin"),
            ),
            "skin",
        ),
    ],
    ids=[
        "testis-wording",
        "testis-body-site",
        "cutis",
        "skin-infiltrates",
        "skin-body-site",
        "em-unspecified",
        "sarcoma-orbit",
        "testis-biopsy",
        "skin-biopsy-body-site",
    ],
)
def test_extramedullary_sites(res: dict[str, object], site: str) -> None:
    f = facts_of(res)
    assert value(f, "extramedullary.involvement") == "yes"
    assert site in value(f, "extramedullary.sites")  # type: ignore[operator]


@pytest.mark.parametrize(
    "res",
    [
        condition("o", cc("Eczema"), body=[cc("Skin")]),
        condition("o", cc("Testicular torsion")),
        condition("o", cc("No testicular involvement")),
        observation("o", cc("Skin swab culture"), valueString="positive", bodySite=cc("Skin")),
    ],
    ids=["eczema", "torsion", "negated", "culture"],
)
def test_not_extramedullary(res: dict[str, object]) -> None:
    f = facts_of(res)
    assert value(f, "extramedullary.involvement") == "unknown"
    assert value(f, "extramedullary.sites") == frozenset()
