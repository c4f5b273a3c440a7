"""Rule test cases (rules/*.yaml `cases`) turned into what an EHR would send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cds_service.decide import bundle_resources, select_orders
from cds_service.ruleset.schema import CaseSpec
from tests.support.patients import hook_request, prefetch_for

ROOT = Path(__file__).resolve().parent.parent.parent
SERVICE_FOR_HOOK = {
    "order-select": "phall-order-select",
    "order-sign": "phall-order-sign",
    "patient-view": "phall-patient-view",
}


def case_bundle(case: CaseSpec) -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads((ROOT / case.fixture).read_text(encoding="utf-8"))
    return bundle


def case_request(case: CaseSpec, discovery: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(path, body) of the CDS Hooks call for a case: prefetch filled from the fixture through
    the discovery document's templates, draft orders in context, the case's order selected."""
    service_id = SERVICE_FOR_HOOK[case.hook]
    resources = bundle_resources(case_bundle(case))
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    orders, context_orders = select_orders(resources, case.hook, case.order, pid)
    drafts = {id(o) for o in (*orders, *context_orders)}
    record = [r for r in resources if id(r) not in drafts]
    templates = next(s for s in discovery["services"] if s["id"] == service_id)["prefetch"]
    body = hook_request(
        case.hook,
        prefetch=prefetch_for(record, templates),
        orders=[*orders, *context_orders],
        selections=[f"{o['resourceType']}/{o['id']}" for o in orders],
        pid=pid,
    )
    return f"/cds-services/{service_id}", body
