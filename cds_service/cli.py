"""The `cds-service` command: serve, check, facts, evaluate, feedback-report, demo, links, synth."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import CDSError
from .settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="CDS Hooks 2.0 decision support for Ph+ ALL.",
)


def _fail(exc: CDSError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def _read_bundle(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        typer.echo(f"error: cannot read {path}: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if not isinstance(data, dict):
        typer.echo(f"error: {path} does not hold a JSON object", err=True)
        raise typer.Exit(code=2)
    return data


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM).")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="Private key of the certificate.")
    ] = None,
) -> None:
    """Run the service (uvicorn) with settings from CDS_* environment variables."""
    import uvicorn

    from .api import create_app
    from .logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)
    tls: dict[str, Any] = {}
    if ssl_certfile or ssl_keyfile:
        if not (ssl_certfile and ssl_keyfile):
            typer.echo("error: --ssl-certfile and --ssl-keyfile go together", err=True)
            raise typer.Exit(code=2)
        tls = {"ssl_certfile": str(ssl_certfile), "ssl_keyfile": str(ssl_keyfile)}
    if workers > 1:
        uvicorn.run(
            "cds_service.api:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            access_log=False,
            **tls,
        )
        return
    try:
        application = create_app(settings)
    except CDSError as exc:
        _fail(exc)
        return
    uvicorn.run(application, host=host, port=port, log_config=None, access_log=False, **tls)


@app.command()
def check(
    rules: Annotated[Path | None, typer.Option(help="Rules folder (default: bundled).")] = None,
    cards: Annotated[Path | None, typer.Option(help="Card templates (default: bundled).")] = None,
) -> None:
    """Load and lint the rule set, render every card, run every rule's test cases."""
    from .check import run_check
    from .paths import cards_dir, rules_dir

    settings = Settings()
    try:
        report = run_check(rules or rules_dir(settings), cards or cards_dir(settings))
    except CDSError as exc:
        _fail(exc)
        return
    typer.echo(report.format())
    if not report.ok:
        raise typer.Exit(code=1)


@app.command()
def facts(
    bundle: Annotated[Path, typer.Argument(help="A FHIR Bundle (JSON) of one patient.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    as_of: Annotated[str | None, typer.Option(help="Evaluation date, YYYY-MM-DD.")] = None,
) -> None:
    """Print the clinical facts derived from a bundle, with provenance."""
    from .facts.extract import extract_facts
    from .facts.report import format_facts
    from .fhir_input import build_record

    data = _read_bundle(bundle)
    record = build_record([data], None)  # the bundle's one Patient is the patient
    day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    typer.echo(format_facts(extract_facts(record, as_of=day), as_json=as_json))


@app.command()
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="A FHIR Bundle (JSON) of one patient.")],
    hook: Annotated[str, typer.Option(help="patient-view, order-select or order-sign.")] = (
        "order-select"
    ),
    order: Annotated[
        str | None,
        typer.Option(help="A draft order's id in the bundle, or a drug name to order."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the CDS Hooks response.")] = False,
    as_of: Annotated[str | None, typer.Option(help="Evaluation date, YYYY-MM-DD.")] = None,
) -> None:
    """Run the rules offline over a synthetic bundle and print the cards."""
    from .cards import CardRenderer
    from .decide import evaluate_bundle
    from .paths import cards_dir, rules_dir
    from .ruleset.loader import load_ruleset
    from .wire import CDSResponse

    if hook not in ("patient-view", "order-select", "order-sign"):
        typer.echo(f"error: unknown hook {hook!r}", err=True)
        raise typer.Exit(code=2)
    settings = Settings()
    try:
        ruleset = load_ruleset(rules_dir(settings), cards_dir(settings))
    except CDSError as exc:
        _fail(exc)
        return
    renderer = CardRenderer(ruleset, cards_dir(settings))
    day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    decision = evaluate_bundle(ruleset, renderer, _read_bundle(bundle), hook, order, day)
    if as_json:
        typer.echo(json.dumps(CDSResponse(cards=decision.cards).dump(), indent=2))
        return
    if not decision.cards:
        typer.echo("no cards")
    for card in decision.cards:
        rule_id, version = decision.card_rules.get(card.uuid, ("?", "?"))
        typer.echo(f"[{card.indicator.upper()}] {card.summary}   ({rule_id} v{version})")
        if card.detail:
            typer.echo("    " + card.detail.replace("\n", "\n    "))
        typer.echo("")


@app.command("feedback-report")
def feedback_report() -> None:
    """Cards issued and override rates per rule version, from the SQLite store."""
    from .storage import Store

    settings = Settings()
    store = Store(settings.data_dir / "cds-service.sqlite3")
    rows = store.outcomes_by_rule()
    typer.echo(
        f"{'rule':40} {'ver':>4} {'issued':>7} {'accepted':>9} {'overridden':>11} {'rate':>6}"
    )
    for r in rows:
        rate = "-" if r.override_rate is None else f"{r.override_rate:.0%}"
        typer.echo(
            f"{r.rule_id:40} {r.rule_version:>4} {r.issued:>7} {r.accepted:>9} "
            f"{r.overridden:>11} {rate:>6}"
        )
    store.close()


@app.command()
def links(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    hosts: Annotated[
        bool, typer.Option("--hosts", help="Only the host names, one per line.")
    ] = False,
    include_disabled: Annotated[
        bool, typer.Option("--include-disabled", help="Also the links of disabled rules.")
    ] = False,
) -> None:
    """Every URL and host a card can carry, for EHRs that allow-list card links."""
    from .links import card_links, format_links
    from .paths import cards_dir, rules_dir
    from .ruleset.loader import load_ruleset

    settings = Settings()
    try:
        ruleset = load_ruleset(rules_dir(settings), cards_dir(settings))
    except CDSError as exc:
        _fail(exc)
        return
    found = card_links(ruleset, cards_dir(settings), include_disabled=include_disabled)
    typer.echo(format_links(found, as_json=as_json, hosts_only=hosts))


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write the kit into (new or empty).")],
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 100,
    fmt: Annotated[
        str, typer.Option("--format", help="bundle (transactions) or ndjson (Bulk Data).")
    ] = "bundle",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same kit.")] = 0,
    as_of: Annotated[
        str | None, typer.Option(help="The day the EHR will call, YYYY-MM-DD (default today).")
    ] = None,
) -> None:
    """Test patients covering every rule both ways, with the cards each should get.

    Fictional Ph+ ALL patients (from the enabled rules' own cases) and non-leukemia controls,
    as transaction Bundles or a Bulk Data export, with expected.json."""
    from .cards import CardRenderer
    from .paths import cards_dir, rules_dir
    from .ruleset.loader import load_ruleset
    from .synth.kit import SynthOptions, build_kit
    from .synth.write import FORMATS, write_kit

    if fmt not in FORMATS:
        typer.echo(f"error: --format must be one of {', '.join(FORMATS)}", err=True)
        raise typer.Exit(code=2)
    try:
        day = dt.date.fromisoformat(as_of) if as_of else dt.datetime.now(dt.UTC).date()
    except ValueError:
        typer.echo(f"error: --as-of {as_of!r} is not a date (YYYY-MM-DD)", err=True)
        raise typer.Exit(code=2) from None
    settings = Settings()
    try:
        ruleset = load_ruleset(rules_dir(settings), cards_dir(settings))
        renderer = CardRenderer(ruleset, cards_dir(settings))
        kit = build_kit(ruleset, renderer, SynthOptions(patients, day, seed))
        write_kit(kit, out, fmt)  # type: ignore[arg-type]
    except CDSError as exc:
        _fail(exc)
        return
    calls = sum(len(p.calls) for p in kit.patients)
    controls = sum(p.kind == "control" for p in kit.patients)
    typer.echo(
        f"{len(kit.patients)} patients ({controls} controls), {calls} calls, as of "
        f"{day.isoformat()}, seed {seed}: {out}"
    )
    for rule_id, seen in kit.coverage().items():
        typer.echo(
            f"  {rule_id:40} fires for {len(seen['fires']):4}, silent for {len(seen['silent']):4}"
        )
    for p in kit.patients:
        if p.rebuilt:
            typer.echo(f"  note: {p.id}: {p.rebuilt}")


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Loopback address to serve on (nothing else).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port of the CDS service (0: a free one).")] = 8080,
    fhir_port: Annotated[int, typer.Option(help="Port of the FHIR server (0: a free one).")] = 8081,
    data_dir: Annotated[
        Path | None, typer.Option(help="Store of the demo's cards (default: <data dir>/demo).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Also write what happened as JSON to this file.")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Keep serving until Ctrl-C.")
    ] = True,
    sandbox_url: Annotated[
        str, typer.Option(help="The CDS Hooks sandbox to print links for (and allow by CORS).")
    ] = "https://sandbox.cds-hooks.org/",
) -> None:
    """Try it with the CDS Hooks sandbox, on this machine, until Ctrl-C.

    Starts the service and a FHIR server with demo patients (loopback only), makes scripted
    calls and prints their cards, then prints sandbox URLs for the demo patients."""
    from .demo import DemoOptions, run_demo

    options = DemoOptions(host, port, fhir_port, data_dir, report, serve, sandbox_url)
    try:
        code = run_demo(options)
    except CDSError as exc:
        _fail(exc)
        return
    raise typer.Exit(code=code)


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `cds-service facts x.json | head`
        sys.exit(0)
