"""Writing the kit: the patients (transaction Bundles or a Bulk Data export) and expected.json.

``bundle``: ``bundles/<patient id>.json``, one FHIR transaction per patient (``PUT Type/id``,
so ids and references survive loading: ``POST`` it to the FHIR server's base URL).

``ndjson``: a FHIR Bulk Data export as ``$export`` writes it: one ``<Type>.ndjson`` file per
resource type, one resource per line, and ``manifest.json`` shaped like the export's
completion response (``transactionTime``, ``request``, ``requiresAccessToken``, ``output``
with type, url and count, ``error``).

Both: ``expected.json`` — per patient × hook × order, the cards (rule id, version, indicator,
summary) this rule set gives on `as_of`, with the draft orders to enter — and ``README.md``.
Output is deterministic: the same rule set, seed and as_of give the same bytes.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from .kit import Kit, KitPatient, draft_order

Format = Literal["bundle", "ndjson"]
FORMATS: tuple[str, ...] = ("bundle", "ndjson")
_NAMESPACE = uuid.UUID("5b8e1f0c-4c1e-4d39-9d0e-6f1b7a9c2e11")
"""Namespace of the deterministic urn:uuid fullUrls."""


def _dump(data: Any) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def _line(resource: dict[str, Any]) -> str:
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False)


def transaction(patient: KitPatient) -> dict[str, Any]:
    entries = []
    for r in patient.resources:
        key = f"{r['resourceType']}/{r['id']}"
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(_NAMESPACE, key)}",
                "resource": r,
                "request": {"method": "PUT", "url": key},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def expected(kit: Kit, fmt: Format) -> dict[str, Any]:
    options = kit.options
    return {
        "generator": "phall-cds synth",
        "as_of": options.as_of.isoformat(),
        "seed": options.seed,
        "format": fmt,
        "note": (
            "The cards this rule set gives each patient when an EHR calls the service on "
            "as_of. Dates in the records are placed relative to as_of; regenerate with the "
            "same seed and --as-of for another day."
        ),
        "rules": [
            {"id": r.id, "version": r.version, "hooks": list(r.hooks)}
            for r in kit.ruleset.rules
            if r.enabled
        ],
        "hooks": list(kit.hooks),
        "orders": {
            name: draft_order(kit.ruleset, name, "{patientId}", options.as_of) for name in kit.menu
        },
        "coverage": kit.coverage(),
        "patients": [
            {
                "id": p.id,
                "kind": p.kind,
                "source": p.source,
                "shape": p.shape,
                "noise": p.noise,
                **({"rebuilt": p.rebuilt} if p.rebuilt else {}),
                **({"replays": p.replays} if p.replays else {}),
                "calls": [
                    {
                        "hook": c.hook,
                        "order": c.order,
                        **({"draftOrders": c.draft_orders} if c.draft_orders else {}),
                        "cards": [vars(card) for card in c.cards],
                    }
                    for c in p.calls
                ],
            }
            for p in kit.patients
        ],
    }


_README = """# phall-cds synthetic test kit

Fictional patients (Ph+ ALL scenarios from the rule set's own test cases, and controls
without leukemia) and `expected.json`: the cards this rule set gives each of them.

- as_of: {as_of} (records are dated relative to it; the cards hold for calls made that day)
- seed: {seed}, patients: {patients}, format: {fmt}

Load the patients into the EHR's test FHIR server, call the service from the EHR for each
patient (patient-view; order-select / order-sign with the draft orders listed under
`orders` in expected.json, `{{patientId}}` replaced), and compare the cards the EHR shows with
`patients[].calls[].cards` (rule id, indicator, summary).

{how}
"""

_HOW = {
    "bundle": (
        "Each `bundles/<id>.json` is a transaction: "
        "`curl -X POST -H 'Content-Type: application/fhir+json' --data @bundles/<id>.json "
        "$FHIR_BASE`."
    ),
    "ndjson": (
        "The `*.ndjson` files and `manifest.json` are a FHIR Bulk Data export (one resource "
        "type per file); load them with the server's bulk import, or read them with "
        "`cds-service dry-run`."
    ),
}


def write_kit(kit: Kit, out: Path, fmt: Format) -> list[Path]:
    """Write the kit into `out` (created; must be empty); the files written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    if out.exists() and any(out.iterdir()):
        from .kit import SynthError

        raise SynthError(f"{out} is not empty; write the kit into a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    if fmt == "bundle":
        for p in kit.patients:
            put(out / "bundles" / f"{p.id}.json", _dump(transaction(p)))
    else:
        by_type: dict[str, list[str]] = defaultdict(list)
        for p in kit.patients:
            for r in p.resources:
                by_type[str(r["resourceType"])].append(_line(r))
        for rtype in sorted(by_type):
            put(out / f"{rtype}.ndjson", "\n".join(by_type[rtype]) + "\n")
        manifest = {
            "transactionTime": f"{kit.options.as_of.isoformat()}T00:00:00Z",
            "request": "Patient/$export",
            "requiresAccessToken": False,
            "output": [
                {"type": t, "url": f"{t}.ndjson", "count": len(by_type[t])} for t in sorted(by_type)
            ],
            "error": [],
        }
        put(out / "manifest.json", _dump(manifest))
    put(out / "expected.json", _dump(expected(kit, fmt)))
    options = kit.options
    put(
        out / "README.md",
        _README.format(
            as_of=options.as_of.isoformat(),
            seed=options.seed,
            patients=len(kit.patients),
            fmt=fmt,
            how=_HOW[fmt],
        ),
    )
    return written
