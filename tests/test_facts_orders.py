"""The orders under decision: every resolution path, recorded in provenance.via."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.facts.extract import extract_facts
from cds_service.fhir_input import build_record
from tests.test_facts_builders import ATC, PID, RX, bundle, cc, facts_of, subject, value

FIXTURE = Path(__file__).resolve().parent.parent / "fhir_fixtures" / "facts" / "draft-orders.json"


def draft(id: str, **kw: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": id,
        "status": "draft",
        "intent": "order",
        "subject": subject(),
        **kw,
    }


@pytest.mark.parametrize(
    ("order", "ingredient", "vias"),
    [
        (draft("a", medicationCodeableConcept=cc(None, (RX, "475342"))), "dasatinib", ["code"]),
        (
            draft(
                "a", medicationCodeableConcept=cc(None, ("urn:oid:2.16.840.1.113883.6.88", 1597258))
            ),
            "blinatumomab",
            ["code"],
        ),
        (draft("a", medicationCodeableConcept=cc(None, (ATC, "L01EA06"))), "asciminib", ["atc"]),
        (draft("a", medicationCodeableConcept=cc("Bosulif 500 mg tablet")), "bosutinib", ["text"]),
        (
            draft(
                "a",
                medicationCodeableConcept=cc(
                    None, ("http://example.org/formulary", "F12", "ICLUSIG 45MG TAB")
                ),
            ),
            "ponatinib",
            ["text"],
        ),
        (
            draft(
                "a",
                contained=[
                    {"resourceType": "Medication", "id": "m", "code": cc(None, (RX, "282388"))}
                ],
                medicationReference={"reference": "#m"},
            ),
            "imatinib",
            ["reference", "code"],
        ),
        (
            draft(
                "a",
                contained=[
                    {
                        "resourceType": "Medication",
                        "id": "m",
                        "code": cc("compounded"),
                        "ingredient": [{"itemCodeableConcept": cc(None, (RX, "1307619"))}],
                    }
                ],
                medicationReference={"reference": "#m"},
            ),
            "bosutinib",
            ["reference", "ingredient"],
        ),
        (
            draft(
                "a", medicationReference={"reference": "Medication/x", "display": "Tasigna 200 mg"}
            ),
            "nilotinib",
            ["text"],
        ),
        (draft("a", medication={"concept": cc("Blincyto")}), "blinatumomab", ["text"]),
        (
            {
                "resourceType": "ServiceRequest",
                "id": "s",
                "status": "draft",
                "intent": "order",
                "subject": subject(),
                "code": cc("Tecartus infusion"),
            },
            "brexucabtagene_autoleucel",
            ["text"],
        ),
    ],
    ids=[
        "rxnorm-in",
        "oid-numeric",
        "atc",
        "brand",
        "display",
        "contained",
        "contained-ingredient",
        "display-of-missing-ref",
        "r5-codeable-reference",
        "service-request",
    ],
)
def test_order_paths(order: dict[str, Any], ingredient: str, vias: list[str]) -> None:
    f = facts_of(orders=(order,))
    assert value(f, "order.ingredients") == frozenset({ingredient})
    (item,) = f.orders
    assert item.ingredient == ingredient
    assert [p.via for p in item.provenance] == vias


def test_bundled_medication_reference() -> None:
    medication = {"resourceType": "Medication", "id": "pon", "code": cc("Iclusig 15 mg")}
    rec = build_record([bundle(medication)], PID)
    order = draft("o", medicationReference={"reference": "Medication/pon"})
    f = extract_facts(rec, orders=[order])
    assert f.orders[0].ingredient == "ponatinib"
    assert f.orders[0].provenance[1].resource == "Medication/pon"


def test_unmatched_and_generic_orders() -> None:
    generic = {
        "resourceType": "ServiceRequest",
        "id": "s",
        "status": "draft",
        "intent": "order",
        "subject": subject(),
        "code": cc("CAR-T cell therapy"),
    }
    f = facts_of(orders=(draft("a", medicationCodeableConcept=cc("ondansetron")), generic))
    # an unnamed CAR-T order is still CD19-directed in B-ALL: CD19 checks must see it
    assert [o.ingredient for o in f.orders] == [None, "cd19_cart_unnamed"]
    assert value(f, "order.ingredients") == frozenset({"cd19_cart_unnamed"})
    assert any("CAR-T order without a named product" in i for i in f.issues)
    cd22 = {**generic, "code": cc("CD22 CAR-T cell therapy")}
    assert [o.ingredient for o in facts_of(orders=(cd22,)).orders] == [None]


def test_two_ingredients_make_two_items() -> None:
    f = facts_of(orders=(draft("a", medicationCodeableConcept=cc("ponatinib + blinatumomab")),))
    assert value(f, "order.ingredients") == frozenset({"ponatinib", "blinatumomab"})
    assert {o.resource for o in f.orders} == {"MedicationRequest/a"}


def test_context_orders_are_separate() -> None:
    rec = build_record([bundle()], PID)
    f = extract_facts(
        rec,
        orders=[draft("a", medicationCodeableConcept=cc("dasatinib"))],
        context_orders=[draft("b", medicationCodeableConcept=cc("blinatumomab"))],
    )
    assert value(f, "order.ingredients") == frozenset({"dasatinib"})
    assert value(f, "order.context_ingredients") == frozenset({"blinatumomab"})


def test_orders_are_not_exposure() -> None:
    f = facts_of(orders=(draft("a", medicationCodeableConcept=cc("dasatinib")),))
    assert value(f, "exposure.dasatinib") == "never"


def test_stu3_shapes_in_orders() -> None:
    order = draft(
        "a",
        medicationCodeableConcept={"coding": {"system": RX, "code": 475342}},
        dosageInstruction={"doseQuantity": {"value": 100, "unit": "mg"}},
    )
    f = facts_of(orders=(order,))
    assert f.orders[0].ingredient == "dasatinib"


def test_draft_orders_fixture() -> None:
    doc = json.loads(FIXTURE.read_text(encoding="utf-8"))
    orders = [
        e["resource"]
        for e in doc["entry"]
        if e["resource"]["resourceType"] in ("MedicationRequest", "ServiceRequest")
    ]
    f = extract_facts(build_record([doc], None), orders=orders)
    got = {
        o.resource: (o.ingredient, o.provenance[-1].via if o.provenance else None) for o in f.orders
    }
    assert got == {
        "MedicationRequest/by-in": ("dasatinib", "code"),
        "MedicationRequest/by-atc": ("bosutinib", "atc"),
        "MedicationRequest/by-brand": ("imatinib", "text"),
        "MedicationRequest/by-contained": ("inotuzumab_ozogamicin", "code"),
        "MedicationRequest/by-bundled": ("ponatinib", "text"),
        "MedicationRequest/unmatched": (None, None),
        "ServiceRequest/cart": ("tisagenlecleucel", "text"),
    }


def test_product_code_path_through_the_curated_map(tmp_path: Path) -> None:
    """A deployment may add its own product codes to drugs.yaml: the mechanism works."""
    import shutil

    from cds_service.terminology import default_valueset_dir, load_valuesets

    for f in default_valueset_dir().glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    drugs = (tmp_path / "drugs.yaml").read_text(encoding="utf-8")
    product = (
        '      - {system: "http://www.nlm.nih.gov/research/umls/rxnorm", code: "TEST-SCD-1", '
        'type: SCD, verified: "unverified (test-only code)"}\n'
    )
    anchor = '      - {system: "http://www.whocc.no/atc", code: L01EA02'
    (tmp_path / "drugs.yaml").write_text(
        drugs.replace(anchor, product + anchor, 1), encoding="utf-8"
    )
    term = load_valuesets(tmp_path)
    order = draft(
        "a", medicationCodeableConcept=cc("dasatinib 100 MG Oral Tablet", (RX, "TEST-SCD-1"))
    )
    f = extract_facts(build_record([bundle()], PID), orders=[order], terminology=term)
    assert f.orders[0].ingredient == "dasatinib"
    assert [p.via for p in f.orders[0].provenance] == ["product-code"]


@pytest.mark.parametrize(
    ("code", "ingredient"),
    [
        ("799047", "dasatinib"),  # SCD dasatinib 100 MG Oral Tablet
        ("799830", "dasatinib"),  # SBD ... [Sprycel]
        ("404589", "imatinib"),  # SBD imatinib 400 MG Oral Tablet [Gleevec]
        ("576514", "imatinib"),  # SBDC imatinib 400 MG [Gleevec] (the sandbox picks these)
        ("1002300", "nilotinib"),
        ("1307630", "bosutinib"),
        ("1364362", "ponatinib"),
        ("2473042", "ponatinib"),  # product-level RxCUI of the Iclusig NDC record
        ("1597262", "blinatumomab"),
    ],
)
def test_shipped_product_codes_resolve_with_no_text(code: str, ingredient: str) -> None:
    order = draft("a", medicationCodeableConcept={"coding": [{"system": RX, "code": code}]})
    f = facts_of(orders=(order,))
    assert f.orders[0].ingredient == ingredient
    assert [p.via for p in f.orders[0].provenance] == ["product-code"]
    assert f.unrecognised_codes == ()


def test_an_order_code_that_resolves_to_nothing_is_recorded_never_silent() -> None:
    order = draft(
        "a",
        medicationCodeableConcept={
            "coding": [{"system": RX, "code": "9999999"}, {"system": "http://example.org/local", "code": "TKI-9"}]
        },
    )
    f = facts_of(orders=(order,))
    assert f.orders[0].ingredient is None
    assert f.unrecognised_codes == (f"{RX}|9999999", "http://example.org/local|TKI-9")
    assert f"MedicationRequest/a: unrecognised order code {RX}|9999999" in f.issues
