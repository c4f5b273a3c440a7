"""`cds-service demo` end to end: a real process with the service and the node FHIR server.

The scripted calls give the cards the rules' own cases expect (computed here independently,
from the original fixtures); the sandbox's exact requests — its published key, its POST
_search prefetch, its CORS preflights — work against the running demo; the log says loudly
that the trusted key is public; Ctrl-C stops everything the demo started; it refuses any bind
that is not loopback.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cds_service.cards import CardRenderer
from cds_service.case_patients import fhir_id, scenarios, tki_ingredients
from cds_service.decide import evaluate_bundle
from cds_service.demo import DemoError, demo_patients, ingredient_of, loopback_host
from cds_service.paths import cards_dir, rules_dir
from cds_service.ruleset.loader import RuleSet, load_ruleset
from cds_service.sandbox import RXNORM, SANDBOX_MEDICATIONS
from cds_service.settings import Settings
from tests.support import cds_hooks_sandbox as sbx

STARTUP_SECONDS = 120.0
SERVING = "Serving until Ctrl-C."


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    settings = Settings()
    return load_ruleset(rules_dir(settings), cards_dir(settings))


def _command() -> list[str]:
    exe = shutil.which("cds-service")
    return [exe] if exe else [sys.executable, "-m", "cds_service"]


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({"CDS_DATA_DIR": str(tmp / "data"), "NO_COLOR": "1"})
    return env


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {p for p, pp in parents.items() if pp in frontier}
        frontier = children - found
        found |= children
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- without starting anything -------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1"])
def test_loopback_addresses_are_accepted(host: str) -> None:
    assert loopback_host(host) == host
    assert loopback_host("localhost") == "127.0.0.1"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.7", "example.org", ""])
def test_any_other_bind_is_refused(host: str) -> None:
    with pytest.raises(DemoError, match="refusing to bind"):
        loopback_host(host)


def test_the_command_refuses_a_public_bind_before_starting_anything(tmp_path: Path) -> None:
    run = subprocess.run(
        [*_command(), "demo", "--host", "0.0.0.0", "--no-serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(tmp_path),
    )
    assert run.returncode == 2
    assert "refusing to bind '0.0.0.0'" in run.stderr
    assert "FHIR server" not in run.stdout
    assert not (tmp_path / "data").exists()


def test_demo_patients_show_every_rule_a_patient_view_or_a_tki_order_can_show(
    ruleset: RuleSet,
) -> None:
    today = dt.date(2031, 2, 3)
    patients = demo_patients(ruleset, today)
    shown = {
        (u.rule_id, sc.fixture)
        for sc in scenarios(ruleset)
        for u in sc.fires()
        if u.hook == "patient-view"
        or (u.hook == "order-select" and ingredient_of(ruleset, u.order, tki_ingredients()))
    }
    assert shown, "the rule set has cases a demo can show"
    assert {(r, p.scenario.fixture) for p in patients for r in p.rules} == shown
    ids = [p.id for p in patients]
    assert len(set(ids)) == len(ids) and all(fhir_id(i) == i for i in ids)
    keys = [f"{r['resourceType']}/{r['id']}" for p in patients for r in p.record]
    assert len(set(keys)) == len(keys), "resources of different patients would overwrite"
    for p in patients:
        assert p.tki in tki_ingredients()
        mine = {f"{r['resourceType']}/{r['id']}" for r in p.record}
        for r in p.record:
            assert r.get("status") != "draft"
            for ref in _references(r):
                if ref.startswith("Patient/"):
                    assert ref == f"Patient/{p.id}"
                elif not ref.startswith("#"):
                    assert ref in mine, (p.id, ref)


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


# -- the running demo ----------------------------------------------------------------------------


@dataclass
class RunningDemo:
    proc: subprocess.Popen[bytes]
    stdout: str
    stderr: Path
    report: dict[str, Any]

    def patient(self, pid: str) -> dict[str, Any]:
        return next(p for p in self.report["patients"] if p["id"] == pid)


def _read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                line = proc.stdout.readline().decode("utf-8", "replace")
                if not line:
                    break
                seen.append(line)
                if marker in line:
                    return "".join(seen)
            elif proc.poll() is not None:
                break
    raise AssertionError(f"the demo never printed {marker!r}:\n{''.join(seen)}")


def _start_demo(tmp: Path) -> RunningDemo:
    report = tmp / "report.json"
    stderr = tmp / "demo.log"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*_command(), "demo", "--port", "0", "--fhir-port", "0", "--report", str(report)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=_clean_env(tmp),
            bufsize=0,  # unbuffered: select() must see every line the demo writes
        )
    try:
        out = _read_until(proc, SERVING, STARTUP_SECONDS)
    except AssertionError as exc:
        _end(proc)
        raise AssertionError(f"{exc}\n--- log ---\n{stderr.read_text()[-4000:]}") from None
    return RunningDemo(proc, out, stderr, json.loads(report.read_text("utf-8")))


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def _stops_cleanly(demo: RunningDemo, sig: signal.Signals) -> None:
    started = _descendants(demo.proc.pid)
    assert started, "the demo runs the FHIR server as a child process"
    service = urlsplit(demo.report["discovery"])
    fhir = urlsplit(demo.report["fhirServer"])
    demo.proc.send_signal(sig)
    assert demo.proc.wait(timeout=30) == 0
    assert demo.proc.stdout is not None
    tail = demo.proc.stdout.read().decode()
    assert "stopped." in tail
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in started if _alive(p)], "a process the demo started is still running"
    for parts in (service, fhir):
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(2)
            s.connect((parts.hostname or "", parts.port or 0))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    running = _start_demo(tmp_path_factory.mktemp("demo"))
    try:
        yield running
    finally:
        _end(running.proc)


@pytest.mark.e2e
def test_every_scripted_call_gives_the_cards_of_the_offline_evaluation(demo: RunningDemo) -> None:
    calls = demo.report["calls"]
    assert demo.report["ok"] is True
    assert len(calls) == 2 * len(demo.report["patients"])
    for call in calls:
        assert call["status"] == 200, call
        assert call["matched"], call
        assert all(card["rule"] for card in call["cards"]), call


@pytest.mark.e2e
def test_the_scripted_calls_give_what_the_rules_own_cases_expect(
    demo: RunningDemo, ruleset: RuleSet
) -> None:
    """Independent of the demo's own comparison: each rule case the demo's calls replay."""
    renderer = CardRenderer(ruleset, cards_dir(Settings()))
    by_fixture = {p["fixture"]: p for p in demo.report["patients"]}
    calls = {(c["patient"], c["hook"]): c for c in demo.report["calls"]}
    checked = {"fires": 0, "silent": 0}
    for sc in scenarios(ruleset):
        patient = by_fixture.get(sc.fixture)
        if patient is None or patient["case_as_of"] != sc.as_of.isoformat():
            continue  # not a demo patient, or the same record read at another date
        bundle = json.loads(sc.path.read_text("utf-8"))
        for use in sc.uses:
            if use.hook == "patient-view":
                call = calls[(patient["id"], "patient-view")]
            elif use.hook == "order-select" and (
                ingredient_of(ruleset, use.order, tki_ingredients()) == patient["tki"]
            ):
                call = calls[(patient["id"], "order-select")]
            else:
                continue
            shown = {(c["indicator"], c["summary"]) for c in call["cards"]}
            rules = {c["rule"] for c in call["cards"]}
            if use.expect == "fires":
                decision = evaluate_bundle(ruleset, renderer, bundle, use.hook, use.order, use.as_of)
                mine = [
                    c
                    for c in decision.cards
                    if decision.card_rules[c.uuid][0] == use.rule_id
                ]
                assert mine, (sc.fixture, use)
                assert (mine[0].indicator, mine[0].summary) in shown, (sc.fixture, use, shown)
            else:
                assert use.rule_id not in rules, (sc.fixture, use, shown)
            checked[use.expect] += 1
    assert checked["fires"] >= len(demo.report["patients"])
    assert checked["silent"] >= 1


@pytest.mark.e2e
def test_the_terminal_shows_the_cards_and_sandbox_urls(demo: RunningDemo) -> None:
    out = demo.stdout
    assert "PUBLISHED" in out and "sandbox" in out
    for call in demo.report["calls"]:
        for card in call["cards"]:
            assert f"[{card['indicator'].upper()}] {card['summary']}" in out
    discovery = demo.report["discovery"]
    fhir = demo.report["fhirServer"]
    for patient in demo.report["patients"]:
        for hook, url in patient["sandbox"].items():
            assert url in out
            parts = urlsplit(url)
            assert f"{parts.scheme}://{parts.netloc}" == sbx.ORIGIN
            query = parse_qs(parts.query)
            assert query["fhirServiceUrl"] == [fhir]
            assert query["serviceDiscoveryURL"] == [discovery]
            assert query["patientId"] == [patient["id"]]
            if hook == "order-select":
                assert query["screen"] == ["rx-view"] and query["hook"] == ["order-select"]


@pytest.mark.e2e
def test_the_log_says_loudly_that_the_trusted_key_is_public(demo: RunningDemo) -> None:
    lines = [json.loads(line) for line in demo.stderr.read_text().splitlines() if line.startswith("{")]
    warnings = [r for r in lines if r["level"] == "WARNING" and "PUBLISHED" in r["msg"]]
    assert warnings and "sandbox.cds-hooks.org" in warnings[0]["msg"]
    assert "demos" in warnings[0]["msg"].lower()
    assert not any("Thr315Ile" in line for line in demo.stderr.read_text().splitlines())


def _sandbox_prefetch(fhir: str, templates: dict[str, str], patient_id: str) -> dict[str, Any]:
    """What the sandbox's prefetchDataPromises does: a read by GET, a search by POST _search."""
    headers = {"Origin": sbx.ORIGIN, "Accept": "application/json+fhir"}
    out: dict[str, Any] = {}
    for key, template in templates.items():
        query = template.replace("{{context.patientId}}", patient_id)
        path, _, params = query.partition("?")
        if not params:
            r = httpx.get(f"{fhir}/{path}", headers=headers)
        else:
            r = httpx.post(
                f"{fhir}/{path}/_search",
                content=params,
                headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
            )
        assert r.status_code == 200, (query, r.text)
        assert r.headers["access-control-allow-origin"] == sbx.ORIGIN
        out[key] = r.json()
    return out


@pytest.mark.e2e
@pytest.mark.req("208")
def test_the_sandbox_itself_gets_the_critical_card(demo: RunningDemo) -> None:
    """The requests the sandbox's browser code makes, with its published key."""
    discovery, fhir = demo.report["discovery"], demo.report["fhirServer"]
    origin = {"Origin": sbx.ORIGIN}
    preflight = httpx.options(
        discovery,
        headers={
            **origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-private-network"] == "true"
    meta = httpx.get(f"{fhir}/metadata", headers=origin)
    assert meta.json()["fhirVersion"].startswith("4.")
    services = httpx.get(
        discovery, headers={**origin, "Authorization": sbx.sandbox_bearer(discovery)}
    )
    assert services.status_code == 200 and services.headers["access-control-allow-origin"]
    select = next(s for s in services.json()["services"] if s["hook"] == "order-select")
    critical = [
        c
        for c in demo.report["calls"]
        if c["hook"] == "order-select" and any(x["indicator"] == "critical" for x in c["cards"])
    ]
    assert critical, "the demo shows a critical card at order-select"
    call = critical[0]
    patient = demo.patient(call["patient"])
    rxnorm, name = SANDBOX_MEDICATIONS[patient["tki"]]
    order = {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "subject": {"reference": f"Patient/{patient['id']}"},
        "authoredOn": dt.date.today().isoformat(),
        "medicationCodeableConcept": {
            "text": name,
            "coding": [{"display": name, "system": RXNORM, "code": rxnorm}],
        },
    }
    url = f"{discovery}/{select['id']}"
    body = {
        "hookInstance": "4f1f7c4e-4d2a-4b8a-9b7f-0c7e6f1d2a3b",
        "hook": "order-select",
        "fhirServer": fhir,
        "context": {
            "patientId": patient["id"],
            "userId": "Practitioner/specialty-1",
            "selections": ["MedicationRequest/request-123"],
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]},
        },
        "prefetch": _sandbox_prefetch(fhir, select["prefetch"], patient["id"]),
    }
    r = httpx.post(url, json=body, headers={**origin, "Authorization": sbx.sandbox_bearer(url)})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == sbx.ORIGIN
    got = {(c["indicator"], c["summary"]) for c in r.json()["cards"]}
    assert {(c["indicator"], c["summary"]) for c in call["cards"]} <= got


@pytest.mark.e2e
def test_ctrl_c_stops_everything_the_demo_started(demo: RunningDemo) -> None:
    """Last of the tests on the shared demo: it ends it."""
    _stops_cleanly(demo, signal.SIGINT)


@pytest.mark.e2e
def test_sigterm_stops_everything_too(tmp_path: Path) -> None:
    running = _start_demo(tmp_path)
    try:
        _stops_cleanly(running, signal.SIGTERM)
    finally:
        _end(running.proc)
