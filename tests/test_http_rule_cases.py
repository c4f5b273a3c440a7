"""Every rule case, replayed over HTTP as an EHR would send it, and every card checked
against the CDS Hooks 2.0 card requirements.

The rule cases live in the rule files (rules/*.yaml: fixture, hook, order, fires/silent); here
each becomes a real CDS Hooks request (prefetch filled from the fixture through the discovery
templates, draft orders in context) against the in-process app, so what `cds-service check`
proves offline is proven again through the HTTP path.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from cds_service.paths import bundled_dir
from cds_service.ruleset.loader import load_ruleset
from cds_service.wire import CDSResponse
from tests.support.app import TestClient, assert_no_null_or_empty, make_client
from tests.support.cases import case_request

RULESET = load_ruleset(bundled_dir("rules"), bundled_dir("cards"))
CASES = [
    pytest.param(rule, case, id=f"{rule.id}[{i}]-{case.expect}")
    for rule in RULESET.rules
    for i, case in enumerate(rule.cases)
]
ABSOLUTE = re.compile(r"^https?://[^\s/]+\S*$")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    return make_client(tmp_path_factory.mktemp("http-cases"))


def _request(client: TestClient, rule: Any, case: Any) -> tuple[str, dict[str, Any]]:
    return case_request(case, client.get("/cds-services").json())


def check_card(card: dict[str, Any], patient_id: str) -> None:
    """The CDS Hooks 2.0 requirements on one emitted card, checked on the wire JSON."""
    assert isinstance(card["uuid"], str) and card["uuid"]  # 80
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140  # 83
    if "detail" in card:  # 85: GitHub-flavoured Markdown, no raw HTML
        assert isinstance(card["detail"], str) and not re.search(r"<[a-zA-Z/!]", card["detail"])
    assert card["indicator"] in ("info", "warning", "critical")  # 87, 88
    source = card["source"]  # 90, 105, 107, 111, 115
    assert isinstance(source["label"], str) and source["label"]
    if "url" in source:
        assert ABSOLUTE.match(source["url"])
        assert patient_id not in source["url"]  # 109: not a patient drill-down
    assert "icon" not in source or ABSOLUTE.match(source["icon"])
    if "topic" in source:
        assert source["topic"]["code"] and source["topic"]["system"]
    if "suggestions" in card:  # 92, 93, 95, 96, 117-135
        assert card["selectionBehavior"] in ("at-most-one", "any")
        for s in card["suggestions"]:
            assert isinstance(s["label"], str) and s["label"]
            assert isinstance(s["uuid"], str) and s["uuid"]
            assert "isRecommended" not in s or isinstance(s["isRecommended"], bool)
            for a in s.get("actions", []):
                assert a["type"] in ("create", "update", "delete")
                assert isinstance(a["description"], str) and a["description"]
                if a["type"] == "delete":
                    assert "resource" not in a and isinstance(a["resourceId"], str)
                else:
                    assert a["resource"]["resourceType"]
                    subject = a["resource"].get("subject", {}).get("reference")
                    assert subject in (None, f"Patient/{patient_id}")
    else:
        assert "selectionBehavior" not in card
    for reason in card.get("overrideReasons", []):  # 98, 100, 136, 216-220
        assert reason["code"] and reason["system"] and reason["display"]
    for link in card.get("links", []):  # 103, 138-147
        assert link["label"] and ABSOLUTE.match(link["url"])
        assert link["type"] in ("absolute", "smart")
        if link["type"] == "absolute":
            assert "appContext" not in link


@pytest.mark.req(
    "3", "16", "74", "75", "80", "83", "85", "87", "88", "90", "92", "93", "95", "96", "98",
    "100", "103", "105", "107", "109", "110", "111", "115", "117", "119", "121", "124", "125",
    "127", "128", "130", "131", "132", "133", "134", "135", "136", "138", "139", "141", "142",
    "144", "146", "147", "216", "217", "218", "219", "220",
)
@pytest.mark.parametrize(("rule", "case"), CASES)
def test_rule_case_over_http(client: TestClient, rule: Any, case: Any) -> None:
    service = client.app.state.service
    service.today = lambda: case.as_of
    path, body = _request(client, rule, case)
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert_no_null_or_empty(data)
    CDSResponse.model_validate(data)  # strict: unknown fields, empty values, FHIR resources
    assert "systemActions" not in data  # 75: we send none
    uuids = [c["uuid"] for c in data["cards"]]
    assert len(set(uuids)) == len(uuids)
    for card in data["cards"]:
        check_card(card, body["context"]["patientId"])
    fired = {service.store.card_rule(u)[0] for u in uuids}
    if case.expect == "fires":
        assert rule.id in fired, f"{rule.id} did not fire over HTTP; got {sorted(fired)}"
    else:
        assert rule.id not in fired, f"{rule.id} fired over HTTP but the case says silent"
    indicators = [c["indicator"] for c in data["cards"]]
    order = {"critical": 0, "warning": 1, "info": 2}
    assert indicators == sorted(indicators, key=order.__getitem__)  # critical first
