"""Transplant history: allogeneic, haploidentical, Treg/Tcon HSCT and DLI, both ways."""

from __future__ import annotations

import pytest

from tests.test_facts_builders import ICD, cc, condition, facts_of, procedure, value


@pytest.mark.parametrize(
    ("text", "haplo", "treg"),
    [
        ("Allogeneic hematopoietic stem cell transplantation", "unknown", "unknown"),
        ("Allo-HSCT (matched unrelated donor)", "unknown", "unknown"),
        ("Haploidentical bone marrow transplant", "yes", "unknown"),
        ("Haplo-HSCT with Treg/Tcon adoptive immunotherapy", "yes", "yes"),
        ("T-cell depleted transplant with donor Treg and Tcon", "unknown", "yes"),
    ],
)
def test_allogeneic_variants(text: str, haplo: str, treg: str) -> None:
    f = facts_of(procedure("tx", cc(text), when="2021-05-02"))
    assert value(f, "hsct.allogeneic") == "yes"
    assert str(f.get("hsct.allogeneic").date) == "2021-05-02"
    assert value(f, "hsct.haploidentical") == haplo
    assert value(f, "hsct.treg_tcon") == treg


def test_unqualified_transplant_counts_with_a_hedge() -> None:
    f = facts_of(procedure("tx", cc("Bone marrow transplant")))
    assert value(f, "hsct.allogeneic") == "yes"
    assert f.get("hsct.allogeneic").detail == "type not stated"


def test_z94_84_condition() -> None:
    f = facts_of(condition("z", cc(None, (ICD, "Z94.84"))))
    assert value(f, "hsct.allogeneic") == "yes"
    assert "Z94.84" in (f.get("hsct.allogeneic").detail or "")


@pytest.mark.parametrize(
    "res",
    [
        procedure("tx", cc("Autologous stem cell transplant")),
        procedure("tx", cc("Allogeneic stem cell transplant"), status="not-done"),
        procedure("tx", cc("Allogeneic stem cell transplant"), status="entered-in-error"),
        procedure("tx", cc("Allogeneic stem cell transplant"), status="preparation"),
        procedure("tx", cc("Kidney transplant")),
        condition("z", cc(None, (ICD, "Z94.84")), ver="refuted"),
    ],
    ids=["autologous", "not-done", "entered-in-error", "preparation", "kidney", "refuted-z94.84"],
)
def test_not_allogeneic(res: dict[str, object]) -> None:
    assert value(facts_of(res), "hsct.allogeneic") == "unknown"


@pytest.mark.parametrize(
    "text", ["Donor lymphocyte infusion", "DLI #2", "Donor leukocyte infusion"]
)
def test_dli(text: str) -> None:
    assert value(facts_of(procedure("d", cc(text))), "dli") == "yes"


def test_no_transplant_record_is_unknown() -> None:
    f = facts_of()
    for name in ("hsct.allogeneic", "hsct.haploidentical", "hsct.treg_tcon", "dli"):
        assert value(f, name) == "unknown"
