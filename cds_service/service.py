"""Orchestration of one CDS Hooks call, free of FastAPI: envelope → prefetch → facts → cards.

The HTTP layer (api.py) hands raw bytes in and gets a JSON-ready dict back; every failure is
a CDSError that api.py turns into an OperationOutcome. Nothing here logs a body or a token.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from pydantic import ValidationError

from .auth import Authenticator, ClientIdentity, auth_disabled_warning
from .cards import CardRenderer
from .decide import Decision, decide
from .discovery import Catalogue
from .egress import EgressPolicy
from .envelope import parse_envelope, parse_json, split_orders
from .errors import ConfigError, HookMismatch, NotFound, PayloadTooLarge, RequestError
from .facts.extract import unread_observation
from .fhir_input import Record, build_record
from .logs import set_correlation_id, truncate
from .paths import cards_dir, rules_dir
from .prefetch import resolve_prefetch
from .ruleset.loader import RuleSet, load_ruleset
from .settings import Settings
from .storage import IssuedCard, Store
from .trusted_clients import TrustedClients, load_trusted_clients
from .wire import CDSResponse, FeedbackRequest

_MAX_CODES_LOGGED = 10
log = logging.getLogger("cds_service.service")


def silent_cards(decision: Decision) -> frozenset[str]:
    """Uuids of the cards of silent rules: recorded in the store, never returned to the EHR."""
    return frozenset(
        card.uuid
        for finding, card in zip(decision.findings, decision.cards, strict=True)
        if not finding.rule.returned
    )


def patient_record(ruleset: RuleSet, sources: Iterable[Any], patient_id: str | None) -> Record:
    """The record the rules decide on (the hook path and the dry-run alike): the sources
    normalised, minus the resources no fact extractor reads (not normalised at all)."""
    terminology = ruleset.terminology
    return build_record(
        sources, patient_id, skip=lambda resource: unread_observation(terminology, resource)
    )


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@dataclass
class CDSService:
    settings: Settings
    ruleset: RuleSet
    renderer: CardRenderer
    store: Store
    catalogue: Catalogue
    authenticator: Authenticator | None
    transport: httpx.AsyncBaseTransport | None = None
    """Injected into the FHIR client (tests); None = real network."""
    today: Callable[[], dt.date] = _today
    clients: TrustedClients = field(default_factory=lambda: TrustedClients(()))
    """The trusted clients (auth on): each may carry its fhirServer allow-list."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        jwks_transport: httpx.AsyncBaseTransport | None = None,
    ) -> CDSService:
        """Load rules, templates and trusted clients; refuse to start on any problem."""
        ruleset = load_ruleset(rules_dir(settings), cards_dir(settings))
        renderer = CardRenderer(ruleset, cards_dir(settings))
        hooks = {h for r in ruleset.rules for h in r.hooks}
        catalogue = Catalogue.build({h: ruleset.facts_for_hook(h) for h in hooks})
        store = Store(settings.data_dir / "cds-service.sqlite3")
        authenticator: Authenticator | None = None
        clients = TrustedClients(())
        if settings.auth == "on":
            if not settings.public_base_url:
                raise ConfigError(
                    "CDS_AUTH=on needs CDS_PUBLIC_BASE_URL: the base URL CDS clients call this "
                    "service at (e.g. CDS_PUBLIC_BASE_URL=https://cds.example.org; several "
                    "comma-separated). Every JWT aud is checked against it plus the path "
                    "invoked; it is never taken from request headers. (`cds-service serve` "
                    "bound to a loopback address defaults it to that address.)"
                )
            if settings.trusted_clients is None:
                log.warning(
                    "CDS_AUTH=on and CDS_TRUSTED_CLIENTS is not set: no client is trusted, so "
                    "every call will be refused with 401. Name the trusted-clients file in "
                    "CDS_TRUSTED_CLIENTS (see examples/trusted-clients.yaml)."
                )
            else:
                clients = load_trusted_clients(settings.trusted_clients)
            authenticator = Authenticator(settings, clients, transport=jwks_transport)
        else:
            log.warning(auth_disabled_warning())
        return cls(
            settings, ruleset, renderer, store, catalogue, authenticator, transport, clients=clients
        )

    # -- authentication ----------------------------------------------------------------------

    async def authenticate(
        self, authorization: str | None, audience: Callable[[], tuple[str, ...]]
    ) -> ClientIdentity | None:
        """Verify the client JWT for `audience()` (the URLs the endpoint invoked is known by,
        from configuration); None when auth is off."""
        if self.authenticator is None:
            return None
        return await self.authenticator.verify(authorization, audience())

    def egress_policy(self, caller: ClientIdentity | None) -> EgressPolicy:
        """The fhirServer allow-list for a call: the caller's own (trusted-clients file), or
        CDS_FHIR_SERVERS with auth off; without one, public addresses only."""
        loopback = self.settings.allow_loopback_fhir
        if self.authenticator is None:
            urls = self.settings.fhir_servers or None
            return EgressPolicy.from_list(urls, allow_loopback=loopback, where="CDS_FHIR_SERVERS")
        client = self.clients.get(caller.iss) if caller is not None else None
        listed = client.fhir_servers if client is not None else None
        where = f"fhir_servers of trusted client {caller.iss if caller else '?'}"
        return EgressPolicy(listed, allow_loopback=loopback, where=where)

    # -- discovery ---------------------------------------------------------------------------

    def discovery(self) -> dict[str, object]:
        return self.catalogue.document

    def known_service(self, service_id: str) -> None:
        if service_id not in self.catalogue.services:
            raise NotFound(f"no CDS service with id '{service_id}'; see GET /cds-services")

    # -- a hook call -------------------------------------------------------------------------

    async def handle(
        self, service_id: str, body: bytes, caller: ClientIdentity | None = None
    ) -> dict[str, Any]:
        """Answer one hook call. The hookInstance becomes the correlation id of every later
        log line of the request, the API layer's refusal line included (its scope ends with
        the request, in api.py)."""
        try:
            return await self._handle(service_id, body, caller)
        except RecursionError:
            # Input nested deep enough to exhaust the interpreter's stack somewhere below
            # (the envelope bounds its own depth; prefetch resources are walked iteratively).
            raise RequestError("the request nests JSON too deeply to be read") from None

    async def _handle(
        self, service_id: str, body: bytes, caller: ClientIdentity | None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        self.known_service(service_id)
        service = self.catalogue.services[service_id]
        request = parse_envelope(parse_json(body))
        set_correlation_id(request.hook_instance)
        if request.hook != service.hook:
            raise HookMismatch(
                f"service '{service_id}' answers hook '{service.hook}', "
                f"not '{truncate(request.hook, 64)}'"
            )
        templates = self.catalogue.templates[service_id]
        prefetch = await resolve_prefetch(
            templates,
            request.prefetch,
            request.context,
            fhir_server=request.fhir_server,
            fhir_authorization=request.fhir_authorization,
            settings=self.settings,
            required=tuple(templates),
            transport=self.transport,
            also_referencing=[*request.draft_orders, *request.draft_support],
            egress=self.egress_policy(caller),
        )
        record = patient_record(
            self.ruleset,
            [*prefetch.data.values(), *prefetch.referenced, *request.draft_support],
            request.patient_id,
        )
        orders, context_orders = split_orders(request)
        decision = decide(
            self.ruleset,
            self.renderer,
            record,
            hook=request.hook,
            orders=orders,
            context_orders=context_orders,
            as_of=self.today(),
        )
        silent = silent_cards(decision)
        shown = [c for c in decision.cards if c.uuid not in silent]
        response = CDSResponse(cards=shown).dump()
        self._audit(service_id, request.hook_instance, decision, silent)
        for code in decision.facts.unrecognised_codes[:_MAX_CODES_LOGGED]:
            # a code, never patient data: integrators map it into drugs.yaml
            log.warning(f"unrecognised order code {code[:200]}", extra={"service": service_id})
        log.info(
            "hook answered",
            extra={
                "service": service_id,
                "cards": len(shown),
                "silent_cards": len(silent),
                "rules": sorted({rid for rid, _ in decision.card_rules.values()}),
                "fetched_keys": len(prefetch.fetched),
                "record_issues": len(record.issues) + len(request.issues),
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response

    def _audit(
        self, service_id: str, hook_instance: str, decision: Decision, silent: frozenset[str]
    ) -> None:
        by_uuid = {c.uuid: c for c in decision.cards}
        self.store.record_cards(
            service_id,
            hook_instance,
            (
                IssuedCard(uuid, rule_id, str(version), by_uuid[uuid].indicator, uuid not in silent)
                for uuid, (rule_id, version) in decision.card_rules.items()
            ),
        )

    # -- feedback ----------------------------------------------------------------------------

    async def feedback(self, service_id: str, body: bytes) -> dict[str, Any]:
        """Validate and store feedback in a worker thread: a large batch must not stall the
        event loop, and so other requests."""
        self.known_service(service_id)
        return await anyio.to_thread.run_sync(self._feedback, service_id, body)

    def _feedback(self, service_id: str, body: bytes) -> dict[str, Any]:
        data = parse_json(body)
        items = data.get("feedback") if isinstance(data, dict) else None
        cap = self.settings.feedback_max_items
        if isinstance(items, list) and len(items) > cap:
            raise PayloadTooLarge(
                f"the feedback carries {len(items)} items; at most {cap} are accepted per "
                "request (CDS_FEEDBACK_MAX_ITEMS): send them in several requests"
            )
        try:
            request = FeedbackRequest.model_validate(data)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            ]
            raise RequestError(
                "the feedback is not valid CDS Hooks feedback", details=problems
            ) from None
        stored = self.store.record_feedback(service_id, request.feedback)
        log.info(
            "feedback stored",
            extra={"service": service_id, "items": len(request.feedback), "new": stored},
        )
        return {}

    async def aclose(self) -> None:
        if self.authenticator is not None:
            await self.authenticator.aclose()
        self.store.close()
