"""`cds-service demo`: the service, a FHIR server with demo patients, and the CDS Hooks sandbox.

One command, on this machine only:

1. the node test FHIR server on 127.0.0.1 (its npm packages installed on first use), loaded
   with demo patients: the fixtures of the enabled rules' own `fires` cases that a
   patient-view or an order-select of a TKI shows, each relabelled so they can share one server
   (`case_patients`), with CORS for the sandbox's origin;
2. the service on embedded defaults plus the demo profile (examples/sandbox/: auth on,
   trusting the sandbox's published key — logged loudly as public — and a key made for this
   run's scripted calls; CORS for the sandbox; `CDS_PUBLIC_BASE_URL` = its own loopback URL);
3. per demo patient, a scripted patient-view and an order-select of a TKI, made like the
   sandbox makes them (prefetch from the FHIR server, a signed JWT), with the cards printed
   and compared with the offline evaluation of the same record (`decide.evaluate_bundle`);
4. the sandbox URLs with `fhirServiceUrl`, `serviceDiscoveryURL` and the patient filled in;
5. serving until Ctrl-C (or SIGTERM), then stopping everything it started.

It refuses to bind anything but a loopback address: the profile trusts a key anyone can use.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import yaml

from . import sandbox
from .cards import CardRenderer
from .case_patients import (
    Resource,
    Scenario,
    fhir_id,
    relabel,
    scenarios,
    shift_dates,
    split_drafts,
    tki_ingredients,
)
from .decide import evaluate_bundle
from .ehr_client import ClientKey, HookResult, ScriptedClient
from .errors import ConfigError
from .fhir_testserver import start_fhir_server
from .paths import cards_dir, rules_dir
from .ruleset.loader import RuleSet, load_ruleset
from .settings import Settings
from .terminology import concept_ids

log = logging.getLogger("cds_service.demo")

TERMINAL_ISS = "https://demo-terminal.phall-cds.invalid"
"""The iss of the demo's own scripted calls (a reserved .invalid name: it resolves nowhere)."""
USER_ID = "Practitioner/demo-clinician"
DEFAULT_PORT = 8080
DEFAULT_FHIR_PORT = 8081
START_TIMEOUT_SECONDS = 30.0


class DemoError(ConfigError):
    """The demo cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    fhir_port: int = DEFAULT_FHIR_PORT
    data_dir: Path | None = None
    report: Path | None = None
    serve: bool = True
    """False: make the scripted calls, print, stop (scripts and CI)."""
    sandbox_url: str = sandbox.SANDBOX_URL
    """The sandbox to print URLs for (a locally built one: http://localhost:8080/); its
    origin is allowed by CORS besides the profile's."""


@dataclass(frozen=True)
class DemoPatient:
    id: str
    scenario: Scenario
    record: list[Resource]
    tki: str
    """The TKI ordered at order-select (canonical ingredient name)."""
    rules: tuple[str, ...]
    """The rules whose fires cases this patient comes from."""


@dataclass(frozen=True)
class ShownCard:
    indicator: str
    summary: str
    rule: str | None = None


@dataclass
class CallReport:
    patient: str
    hook: str
    order: str | None
    status: int
    cards: list[ShownCard]
    expected: list[ShownCard]
    error: str | None = None

    @property
    def matched(self) -> bool:
        return self.status == 200 and _key(self.cards) == _key(self.expected)


@dataclass
class DemoReport:
    service: str
    discovery: str
    fhir_server: str
    as_of: str
    patients: list[dict[str, Any]] = field(default_factory=list)
    calls: list[CallReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.calls) and all(c.matched for c in self.calls)

    def dump(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "discovery": self.discovery,
            "fhirServer": self.fhir_server,
            "as_of": self.as_of,
            "ok": self.ok,
            "patients": self.patients,
            "calls": [
                {
                    "patient": c.patient,
                    "hook": c.hook,
                    "order": c.order,
                    "status": c.status,
                    "error": c.error,
                    "matched": c.matched,
                    "cards": [vars(x) for x in c.cards],
                    "expected": [vars(x) for x in c.expected],
                }
                for c in self.calls
            ],
        }


def _key(cards: Sequence[ShownCard]) -> list[tuple[str, str]]:
    return sorted((c.indicator, c.summary) for c in cards)


# -- what the demo shows ------------------------------------------------------------------------


def ingredient_of(ruleset: RuleSet, text: str | None, among: Sequence[str]) -> str | None:
    """The first of `among` that the text of an order names (by the rule set's terminology)."""
    if not text:
        return None
    found = concept_ids(ruleset.terminology.match_text(text.replace("_", " ")))
    return next((i for i in among if i in found), None)


def demo_patients(ruleset: RuleSet, today: dt.date) -> list[DemoPatient]:
    """One patient per fixture of an enabled rule's `fires` case on patient-view, or on
    order-select with a TKI; the TKI ordered is the one its cases order first. Each record's
    dates are moved so that `today` stands where its cases' evaluation date stood."""
    tkis = tki_ingredients()
    out: list[DemoPatient] = []
    for index, scenario in enumerate(scenarios(ruleset)):
        shown = [
            u
            for u in scenario.fires()
            if u.hook == "patient-view"
            or (u.hook == "order-select" and ingredient_of(ruleset, u.order, tkis))
        ]
        if not shown:
            continue
        ordered = [ingredient_of(ruleset, u.order, tkis) for u in (*shown, *scenario.uses)]
        tki = next((i for i in ordered if i), tkis[0])
        stem = scenario.stem.removeprefix("fires-").removeprefix("silent-")
        patient_id = fhir_id(f"demo-{stem}")
        relabelled = relabel(scenario.resources(), patient_id, f"d{index:02d}")
        moved = shift_dates(relabelled, (today - scenario.as_of).days)
        record, _drafts = split_drafts(moved)
        rules = tuple(dict.fromkeys(u.rule_id for u in shown))
        out.append(DemoPatient(patient_id, scenario, record, tki, rules))
    return out


def expected_cards(
    ruleset: RuleSet,
    renderer: CardRenderer,
    record: Sequence[Resource],
    hook: str,
    order: Resource | None,
    as_of: dt.date,
) -> list[ShownCard]:
    """The cards the offline evaluation gives for the same record and order."""
    resources = [*record, *([order] if order is not None else [])]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }
    decision = evaluate_bundle(
        ruleset, renderer, bundle, hook, order["id"] if order is not None else None, as_of
    )
    return [
        ShownCard(c.indicator, c.summary, decision.card_rules.get(c.uuid, ("?", "?"))[0])
        for c in decision.cards
    ]


# -- the process: bind, start, serve, stop ------------------------------------------------------


def loopback_host(host: str) -> str:
    """`host` if it is a loopback address ('localhost' means 127.0.0.1); DemoError otherwise."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise DemoError(
            f"refusing to bind {host!r}: the demo trusts the CDS Hooks sandbox's PUBLIC key "
            "and serves fictional patients without TLS, so it binds a loopback address only "
            "(127.0.0.1 or ::1). For a real deployment use `cds-service serve` with your own "
            "trusted clients."
        )
    return host


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise DemoError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --port "
            "(0 picks a free one)"
        ) from None
    return sock


class ServiceRunner:
    """The ASGI app under uvicorn in the main thread, on an already bound socket.

    uvicorn handles Ctrl-C and SIGTERM there (graceful shutdown), SIGHUP is routed to the same
    shutdown; `work` runs in a thread once the server is serving (the scripted calls)."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.sock = sock

    def stop(self) -> None:
        self.server.should_exit = True

    def serve(self, work: Callable[[], None], timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Serve until stopped; raise _Stop when a signal stopped it, or what `work` raised."""
        errors: list[BaseException] = []
        signals: list[int] = []

        def run_work() -> None:
            deadline = time.monotonic() + timeout
            while not self.server.started:
                if self.server.should_exit or time.monotonic() > deadline:
                    errors.append(DemoError("the CDS service did not start; see the log above"))
                    self.stop()
                    return
                time.sleep(0.05)
            try:
                work()
            except Exception as exc:
                errors.append(exc)
                self.stop()

        def noted(signum: int, _frame: FrameType | None) -> None:
            signals.append(signum)  # uvicorn re-raises the signals it shut down on
            self.stop()

        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, noted) for s in handled}
        worker = threading.Thread(target=run_work, name="demo-calls", daemon=True)
        worker.start()
        try:
            self.server.run(sockets=[self.sock])
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            worker.join(10)
        if signals:
            raise _Stop(signal.Signals(signals[0]).name)
        if errors:
            raise errors[0]


class _Stop(Exception):
    """SIGTERM or SIGHUP: stop like Ctrl-C."""


@contextmanager
def _stop_signals() -> Iterator[None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def runtime_trusted_clients(
    profile: sandbox.Profile, key: ClientKey, fhir_server: str
) -> dict[str, Any]:
    """The profile's trusted clients plus this run's scripted client, each with the demo's
    FHIR server as its only allowed FHIR server (`fhir_servers`: the egress policy then lets
    the service reach that loopback address, and nothing else, with the client's token)."""
    clients = [dict(c) for c in profile.trusted_clients.get("clients", [])]
    clients.append(key.trusted_entry("cds-service demo: scripted calls (key made for this run)"))
    for client in clients:
        client["fhir_servers"] = [fhir_server]
    return {"clients": clients}


def apply_profile(
    profile: sandbox.Profile,
    *,
    base_url: str,
    trusted_clients: Path,
    data_dir: Path,
    cors_origins: Sequence[str],
) -> Settings:
    """Settings = the environment, overridden by the profile and this run's own values.

    Set through the environment, as `cds-service serve` reads it, so the profile file and the
    demo mean the same settings."""
    env = dict(profile.env)
    env.update(
        {
            "CDS_TRUSTED_CLIENTS": str(trusted_clients),
            "CDS_PUBLIC_BASE_URL": base_url,
            "CDS_DATA_DIR": str(data_dir),
            "CDS_CORS_ORIGINS": ",".join(cors_origins),
        }
    )
    os.environ.update(env)
    settings = Settings()
    if settings.auth != "on":
        raise DemoError(f"the demo profile in {profile.folder} must keep CDS_AUTH=on")
    return settings


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.color = out.isatty() and not os.environ.get("NO_COLOR")

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def card(self, card: ShownCard) -> None:
        colour = {"critical": "1;31", "warning": "33", "info": "36"}.get(card.indicator, "0")
        tag = self.paint(f"[{card.indicator.upper()}]", colour)
        rule = f"  ({card.rule})" if card.rule else ""
        self.line(f"      {tag} {card.summary}{rule}")


def run_demo(
    options: DemoOptions, out: TextIO = sys.stdout, err: Callable[[str], None] | None = None
) -> int:
    """Run the demo; 0 when every scripted call gave the offline evaluation's cards.

    Ctrl-C (or SIGTERM / SIGHUP) stops the service and the FHIR server; 130 when that comes
    before the scripted calls are done."""
    say = err or (lambda text: print(text, file=sys.stderr, flush=True))
    printer = _Printer(out)
    host = loopback_host(options.host)
    base_settings = Settings()
    data_dir = options.data_dir or base_settings.data_dir / "demo"
    ruleset = load_ruleset(rules_dir(base_settings), cards_dir(base_settings))
    renderer = CardRenderer(ruleset, cards_dir(base_settings))
    today = dt.datetime.now(dt.UTC).date()
    patients = demo_patients(ruleset, today)
    if not patients:
        raise DemoError("the rule set has no fires case on patient-view or a TKI order to show")
    profile = sandbox.load_profile()
    origins = tuple(dict.fromkeys([*profile.cors_origins, sandbox.origin_of(options.sandbox_url)]))
    demo = _Demo(
        options, printer, say, host, data_dir, ruleset, renderer, patients, profile, origins, today
    )
    done: list[DemoReport] = []
    with _stop_signals(), ExitStack() as stack:
        try:
            runner, calls = demo.start(stack)

            def work() -> None:
                done.append(calls())
                if options.serve:
                    printer.line()
                    printer.line(printer.paint("Serving until Ctrl-C.", "1"))
                else:
                    runner.stop()

            runner.serve(work)
        except (KeyboardInterrupt, _Stop):
            printer.line()
        printer.line("stopping the CDS service and the FHIR server ...")
    printer.line("stopped.")
    if not done:
        return 130
    return 0 if done[0].ok else 1


@dataclass
class _Demo:
    options: DemoOptions
    printer: _Printer
    say: Callable[[str], None]
    host: str
    data_dir: Path
    ruleset: RuleSet
    renderer: CardRenderer
    patients: list[DemoPatient]
    profile: sandbox.Profile
    cors_origins: tuple[str, ...]
    today: dt.date

    def start(self, stack: ExitStack) -> tuple[ServiceRunner, Callable[[], DemoReport]]:
        """Start the FHIR server and build the service (each stopped by `stack`); the runner
        to serve it, and the scripted calls to make once it serves."""
        from .api import create_app
        from .logs import configure_logging

        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="phall-demo-")))
        sock = bind(self.host, self.options.port)
        stack.callback(sock.close)
        base_url = f"http://{_url_host(self.host)}:{sock.getsockname()[1]}"
        if self.options.fhir_port:
            bind("127.0.0.1", self.options.fhir_port).close()  # a clear error when taken
        resources = [r for p in self.patients for r in p.record]
        fhir = start_fhir_server(
            resources,
            tmp,
            port=self.options.fhir_port,
            cors_origins=self.cors_origins,
            say=self.say,
        )
        stack.callback(fhir.stop)

        key = ClientKey.generate(TERMINAL_ISS)
        trusted = tmp / "trusted-clients.yaml"
        document = runtime_trusted_clients(self.profile, key, fhir.base_url)
        trusted.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
        settings = apply_profile(
            self.profile,
            base_url=base_url,
            trusted_clients=trusted,
            data_dir=self.data_dir,
            cors_origins=self.cors_origins,
        )
        configure_logging(settings.log_level)
        log.warning(sandbox.PUBLIC_KEY_WARNING)
        runner = ServiceRunner(create_app(settings), sock)
        stack.callback(runner.stop)
        return runner, lambda: self._calls(base_url, fhir.base_url, len(resources), key)

    def _calls(self, base_url: str, fhir_url: str, resources: int, key: ClientKey) -> DemoReport:
        """The scripted calls, the printed cards and sandbox URLs (the service is serving)."""
        today = self.today
        discovery = f"{base_url}/cds-services"
        report = DemoReport(discovery, discovery, fhir_url, today.isoformat())
        p = self.printer
        p.line(p.paint("phall-cds demo: the CDS Hooks sandbox against this service", "1"))
        p.line()
        p.line(p.paint("!! " + sandbox.PUBLIC_KEY_WARNING, "1;33"))
        p.line()
        p.line(
            f"FHIR server  {fhir_url}  ({len(self.patients)} demo patients, "
            f"{resources} resources, from the rules' own test cases)"
        )
        p.line(f"CDS service  {discovery}  (cards issued are stored in {self.data_dir})")
        p.line()
        p.line("Scripted calls, made as the sandbox makes them (prefetch from the FHIR server,")
        p.line("a signed client JWT):")
        with ScriptedClient(base_url, fhir_url, key) as client:
            for patient in self.patients:
                p.line()
                p.line(f"  {p.paint(patient.id, '1')}  ({patient.scenario.fixture})")
                for hook in ("patient-view", "order-select"):
                    report.calls.append(self._call(client, patient, hook, today))
        self._summary(report)
        for patient in self.patients:
            report.patients.append(
                {
                    "id": patient.id,
                    "fixture": patient.scenario.fixture,
                    "case_as_of": patient.scenario.as_of.isoformat(),
                    "rules": list(patient.rules),
                    "tki": patient.tki,
                    "sandbox": _sandbox_urls(
                        self.options.sandbox_url, patient, fhir_url, discovery
                    ),
                }
            )
        self._urls(report)
        if self.options.report is not None:
            self.options.report.write_text(json.dumps(report.dump(), indent=2), "utf-8")
        return report

    def _summary(self, report: DemoReport) -> None:
        p = self.printer
        calls, cards = len(report.calls), sum(len(c.cards) for c in report.calls)
        p.line()
        if report.ok:
            p.line(
                f"{calls} calls, {cards} cards: every call gave the cards the offline "
                "evaluation of the same record gives."
            )
            return
        bad = [c for c in report.calls if not c.matched]
        p.line(p.paint(f"!! {len(bad)} of {calls} calls did NOT give the expected cards:", "1;31"))
        for c in bad:
            p.line(f"   {c.patient} {c.hook}: HTTP {c.status} {c.error or ''}".rstrip())

    def _urls(self, report: DemoReport) -> None:
        p = self.printer
        p.line()
        p.line("Open the CDS Hooks sandbox with a demo patient (Chrome, Edge or Firefox; let it")
        p.line("reach devices on your local network if the browser asks):")
        for patient in report.patients:
            p.line(f"  {patient['id']}  ({', '.join(patient['rules'])})")
            p.line(f"    patient view: {patient['sandbox']['patient-view']}")
            p.line(f"    order select: {patient['sandbox']['order-select']}")

    def _call(
        self, client: ScriptedClient, patient: DemoPatient, hook: str, today: dt.date
    ) -> CallReport:
        context: dict[str, Any] = {"userId": USER_ID, "patientId": patient.id}
        order: Resource | None = None
        label = hook
        if hook == "order-select":
            order = sandbox.draft_order(patient.tki, patient.id, today)
            context["selections"] = [f"MedicationRequest/{order['id']}"]
            context["draftOrders"] = {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": order}],
            }
            label = f"order-select {order['medicationCodeableConcept']['text']}"
        result: HookResult = client.call(hook, context)
        expected = expected_cards(self.ruleset, self.renderer, patient.record, hook, order, today)
        rules = {(c.indicator, c.summary): c.rule for c in expected}
        shown = []
        for raw in result.cards:
            indicator, summary = str(raw.get("indicator")), str(raw.get("summary"))
            shown.append(ShownCard(indicator, summary, rules.get((indicator, summary))))
        call = CallReport(
            patient.id,
            hook,
            patient.tki if order is not None else None,
            result.status,
            shown,
            expected,
            result.error,
        )
        p = self.printer
        flag = "" if call.matched else p.paint("  !! not the expected cards", "1;31")
        if result.status != 200:
            p.line(f"    {label}: HTTP {result.status}: {result.error}{flag}")
        elif not shown:
            p.line(f"    {label}: no cards{flag}")
        else:
            p.line(f"    {label}:{flag}")
            for card in shown:
                p.card(card)
        return call


def _sandbox_urls(
    sandbox_url: str, patient: DemoPatient, fhir: str, discovery: str
) -> dict[str, str]:
    code = sandbox.SANDBOX_MEDICATIONS.get(patient.tki, (None, ""))[0]
    common = {
        "sandbox_url": sandbox_url,
        "fhir_server": fhir,
        "discovery_url": discovery,
        "patient_id": patient.id,
    }
    return {
        "patient-view": sandbox.launch_url(**common),
        "order-select": sandbox.launch_url(**common, hook="order-select", medication_code=code),
    }
