"""The `cds-service` command: serve, check, facts, evaluate, feedback-report, gallery, dry-run,
demo, links, synth."""

from __future__ import annotations

import datetime as dt
import json
import os
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
    """Run the service (uvicorn) with settings from CDS_* environment variables.

    With CDS_AUTH=on the JWT audience comes from CDS_PUBLIC_BASE_URL. When it is not set and
    the service is bound to a loopback address (the default, 127.0.0.1), it defaults to that
    address and to localhost on the same port, so the embedded defaults start; bound to any
    other address, it must be set, or the service refuses to start saying so.
    """
    import logging
    import os

    import uvicorn

    from .api import create_app
    from .logs import configure_logging
    from .server import configure, loopback_base_urls

    settings = Settings()
    configure_logging(settings.log_level)
    tls: dict[str, Any] = {}
    if ssl_certfile or ssl_keyfile:
        if not (ssl_certfile and ssl_keyfile):
            typer.echo("error: --ssl-certfile and --ssl-keyfile go together", err=True)
            raise typer.Exit(code=2)
        tls = {"ssl_certfile": str(ssl_certfile), "ssl_keyfile": str(ssl_keyfile)}
    if settings.auth == "on" and not settings.public_base_url:
        bases = loopback_base_urls(host, port, "https" if tls else "http")
        if bases is None:
            typer.echo(
                f"error: CDS_AUTH=on and --host {host} is not a loopback address, so "
                "CDS_PUBLIC_BASE_URL must be set: the base URL CDS clients call this service "
                "at, e.g. CDS_PUBLIC_BASE_URL=https://cds.example.org (several: "
                "comma-separated). Every JWT aud is checked against it.",
                err=True,
            )
            raise typer.Exit(code=2)
        os.environ["CDS_PUBLIC_BASE_URL"] = ",".join(bases)  # worker processes read it too
        settings = settings.model_copy(update={"public_base_url": bases})
        logging.getLogger("cds_service.cli").info(
            "CDS_PUBLIC_BASE_URL not set: the service is bound to loopback, so JWT aud is "
            "checked against these base URLs",
            extra={"public_base_url": bases},
        )
    options = configure(settings)
    if workers > 1:
        uvicorn.run(
            "cds_service.api:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            **options,
            **tls,
        )
        return
    try:
        application = create_app(settings)
    except CDSError as exc:
        _fail(exc)
        return
    uvicorn.run(application, host=host, port=port, **options, **tls)


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
    """Print the clinical facts derived from a bundle, with provenance.

    Read with the rule set's own value sets and facts.yaml (CDS_RULES_DIR, else the bundled
    rules): the facts the service would derive."""
    from .facts.extract import extract_facts
    from .facts.report import format_facts
    from .fhir_input import build_record
    from .paths import cards_dir, rules_dir
    from .ruleset.loader import load_ruleset

    settings = Settings()
    try:
        ruleset = load_ruleset(rules_dir(settings), cards_dir(settings))
    except CDSError as exc:
        _fail(exc)
        return
    data = _read_bundle(bundle)
    record = build_record([data], None)  # the bundle's one Patient is the patient
    day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    found = extract_facts(
        record,
        as_of=day,
        terminology=ruleset.terminology,
        parameters=ruleset.fact_parameters,
    )
    typer.echo(format_facts(found, as_json=as_json))


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
    from .service import silent_cards
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
    silent = silent_cards(decision)
    if as_json:  # what the service returns: a silent rule's cards are only recorded
        shown = [c for c in decision.cards if c.uuid not in silent]
        typer.echo(json.dumps(CDSResponse(cards=shown).dump(), indent=2))
        return
    if not decision.cards:
        typer.echo("no cards")
    for card in decision.cards:
        rule_id, version = decision.card_rules.get(card.uuid, ("?", "?"))
        mode = "  [silent mode: recorded, not returned]" if card.uuid in silent else ""
        typer.echo(f"[{card.indicator.upper()}] {card.summary}   ({rule_id} v{version}){mode}")
        if card.detail:
            typer.echo("    " + card.detail.replace("\n", "\n    "))
        typer.echo("")


@app.command("feedback-report")
def feedback_report(
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the report as one HTML page.")
    ] = None,
    top: Annotated[int, typer.Option(help="Override reasons listed per rule version.")] = 5,
) -> None:
    """Cards returned, accepted, overridden, override reasons, comments (counted), silent-mode
    firings and weekly trend per rule version, from the SQLite store."""
    from .feedback_report import build_report, format_text, render_html
    from .paths import cards_dir, rules_dir
    from .ruleset.loader import RuleSet, load_ruleset
    from .storage import Store

    settings = Settings()
    ruleset: RuleSet | None
    try:  # titles, statuses and override displays; the report stands without them
        ruleset = load_ruleset(rules_dir(settings), cards_dir(settings))
    except CDSError:
        ruleset = None
    store = Store(settings.data_dir / "cds-service.sqlite3")
    try:
        report = build_report(store, ruleset, top=top)
    finally:
        store.close()
    typer.echo(format_text(report))
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(report), encoding="utf-8")
        typer.echo(f"wrote {html}")


@app.command()
def gallery(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write index.html and rules/ into.")],
    rules: Annotated[Path | None, typer.Option(help="Rules folder (default: bundled).")] = None,
    cards: Annotated[Path | None, typer.Option(help="Card templates (default: bundled).")] = None,
) -> None:
    """Write the card gallery: every evaluated rule and each of its cases, with the card the
    service returns, the facts that decided it, and the rule's version, status and evidence."""
    from .cards import CardRenderer
    from .gallery import build_gallery, write_gallery
    from .paths import cards_dir, rules_dir
    from .ruleset.loader import load_ruleset

    settings = Settings()
    cards_path = cards or cards_dir(settings)
    try:
        ruleset = load_ruleset(rules or rules_dir(settings), cards_path)
        renderer = CardRenderer(ruleset, cards_path)
    except CDSError as exc:
        _fail(exc)
        return
    site = build_gallery(ruleset, renderer, cards_path)
    written = write_gallery(site, out_dir)
    typer.echo(
        f"wrote {len(written)} pages ({len(site.pages)} rules, {site.case_count} cases) to "
        f"{out_dir}; open {out_dir / 'index.html'}"
    )
    if not site.ok:
        typer.echo(f"{len(site.problems)} case(s) not as declared:", err=True)
        for problem in site.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(code=1)


@app.command("dry-run")
def dry_run(
    input_dir: Annotated[
        Path, typer.Argument(metavar="INPUT", help="A Bulk Data export folder or patient Bundles.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the outputs.")],
    order: Annotated[
        list[str] | None,
        typer.Option(
            help="A hypothetical order (drug name); repeatable. Default: six TKIs, blinatumomab."
        ),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(help="Local worker processes (default: all cores).")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address (tcp://host:8786): run the shards there."),
    ] = None,
    as_of: Annotated[str | None, typer.Option(help="Evaluation date, YYYY-MM-DD.")] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            help="Secret key of the pseudonymous patient keys (default: created in CDS_DATA_DIR)."
        ),
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="Where the shards go (default: OUT/.dry-run-work).")
    ] = None,
    keep_work: Annotated[bool, typer.Option(help="Keep the shards afterwards.")] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bars.")] = True,
) -> None:
    """Evaluate every patient of a population (patient-view; order-select and order-sign per
    hypothetical order) and report how often each rule would fire."""
    from .dryrun import DEFAULT_ORDERS, DryRunOptions, load_or_create_key, run_dry_run
    from .paths import cards_dir, rules_dir

    settings = Settings()
    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
    except ValueError:
        typer.echo(f"error: --as-of {as_of!r} is not YYYY-MM-DD", err=True)
        raise typer.Exit(code=2) from None
    if jobs is not None and jobs < 1:
        typer.echo("error: --jobs must be at least 1", err=True)
        raise typer.Exit(code=2)
    try:
        key = load_or_create_key(key_file or settings.data_dir / "dry-run-pseudonym.key")
        options = DryRunOptions(
            input=input_dir,
            out=out,
            rules_dir=rules_dir(settings),
            cards_dir=cards_dir(settings),
            key=key,
            orders=tuple(dict.fromkeys(order)) if order else DEFAULT_ORDERS,
            as_of=day,
            jobs=jobs or len(os.sched_getaffinity(0)),
            scheduler=scheduler,
            work_dir=work_dir,
            keep_work=keep_work,
            progress=progress,
            max_line_bytes=settings.max_body_bytes,
        )
        outcome = run_dry_run(options)
    except CDSError as exc:
        _fail(exc)
        return
    summary, run = outcome.summary, outcome.run
    typer.echo(
        f"{summary['patients']} patients, {summary['patients_with_any_card']} with a card; "
        f"{run['patients_per_s']} patients/s ({run['patients_per_s_per_worker']} per worker, "
        f"{run['shards']} shards)"
    )
    for path in outcome.files:
        typer.echo(f"wrote {path}")
    if outcome.failed:
        typer.echo(f"error: some patients could not be evaluated: {summary['errors']}", err=True)
        raise typer.Exit(code=1)


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
