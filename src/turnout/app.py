"""The composition root: build every service from `Settings`, and take them down again.

Started inside the running event loop (the HTTP client, the fake upstreams and the database all
belong to it). The web edge receives the finished `Services`; nothing is created at import time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

from turnout import __version__
from turnout.batches.poll import Batches
from turnout.batches.store import BatchStore
from turnout.config.prices import shipped_prices
from turnout.config.settings import Settings
from turnout.config.tokenizers import tokenizer_of
from turnout.governance.approvals import Approvals
from turnout.governance.audit import AuditLog
from turnout.governance.game_days import GameDays
from turnout.governance.providers import ProviderControl
from turnout.keys.index import KeyIndex
from turnout.keys.service import KeyService
from turnout.keys.store import (
    MasterKeyOutcome,
    load_hash_secret,
    load_keys,
    secret_source,
    verify_hash_secret,
)
from turnout.keys.sync import KeySync
from turnout.limits.admission import Admission
from turnout.limits.book import LimitBook
from turnout.limits.deployment_sync import DeploymentSync
from turnout.limits.shared import SharedLimits
from turnout.observability.metrics import RequestMetrics
from turnout.observability.redaction import register_internal_hosts, register_secrets
from turnout.observability.tracing import Tracer
from turnout.pipeline import Pipeline
from turnout.presets.registry import PresetRegistry
from turnout.providers.capabilities import capabilities_for
from turnout.providers.http.client import HttpClient
from turnout.providers.registry import ProviderRegistry
from turnout.request_logs.service import RequestLog
from turnout.routing.catalog import Catalog, PriceOf, TokenizerOf
from turnout.routing.chain_check import chain_warnings
from turnout.routing.generation import Generation
from turnout.routing.health_checks import ActiveHealthChecks
from turnout.routing.mirror import Mirror, Mirrors
from turnout.routing.router import Router
from turnout.spend.alert_delivery import AlertDelivery
from turnout.spend.alerts import AlertOutbox
from turnout.spend.billing import Billing
from turnout.spend.billing_service import BillingService
from turnout.spend.budget_counters import BudgetCounters
from turnout.spend.budget_reconcile import Reconciler
from turnout.spend.budget_service import BudgetService
from turnout.spend.budgets import Budgets
from turnout.spend.ledger_store import LedgerStore
from turnout.spend.recorder import SpendRecorder
from turnout.spend.retention import LedgerRetention
from turnout.spend.shared_counters import SharedCounters
from turnout.storage.database import Database, bounded
from turnout.storage.instances import Instances
from turnout.storage.reference_clock import ReferenceClock
from turnout.storage.stored_responses import ResponseStore
from turnout.teams.directory import Directory
from turnout.teams.limits import LimitSettings

log = logging.getLogger("turnout")

LAST_WRITES = 1.0  # seconds the last writes get on shutdown even when the grace is spent


@dataclass
class Services:
    settings: Settings
    database: Database
    client: HttpClient
    registry: ProviderRegistry
    catalog: Catalog
    keys: KeyIndex
    budgets: Budgets
    pipeline: Pipeline
    master_key: MasterKeyOutcome
    responses: ResponseStore
    spend: SpendRecorder
    key_service: KeyService
    audit: AuditLog
    approvals: Approvals
    directory: Directory
    budget_service: BudgetService
    billing: Billing
    presets: PresetRegistry
    billing_service: BillingService
    provider_control: ProviderControl
    instances: Instances
    clock: ReferenceClock
    metrics: RequestMetrics | None = None  # None: metrics off (`metrics.enabled: false`)
    reconciler: Reconciler | None = None
    health_checks: ActiveHealthChecks | None = None
    key_sync: KeySync | None = None
    retired_registries: list[ProviderRegistry] = field(default_factory=list)  # (reload) still in use
    _closing: set[asyncio.Task[None]] = field(default_factory=set)
    retention: LedgerRetention | None = None
    limit_settings: LimitSettings | None = None
    capacity: DeploymentSync | None = None
    request_log: RequestLog | None = None
    alert_delivery: AlertDelivery | None = None
    started_at: float = field(default_factory=time.time)
    draining: bool = False
    tracer: Tracer | None = None  # None: tracing off (no `tracing.otlp_endpoint`)
    provider_kinds: dict[str, str] = field(default_factory=dict)  # name → kind, for the traces
    game_days: GameDays | None = None
    batches: Batches | None = None  # the batch APIs' endpoints and their poll (batches/)

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        register_secrets(*_secret_values(settings))
        register_internal_hosts(*_upstream_hosts(settings))
        database = await Database.open(settings.storage.database_url, settings.storage.database_timeout)
        client: HttpClient | None = None
        request_log: RequestLog | None = None
        clock = ReferenceClock()
        instances = Instances(database, clock, shared_counters=settings.storage.redis_url is not None)
        try:
            await instances.register()  # the database's clock, and how many instances share it
            secret = load_hash_secret(settings.auth.key_hash_secret, settings.storage.data_dir)
            source = secret_source(settings.auth.key_hash_secret, settings.storage.data_dir)
            await verify_hash_secret(database, secret, source)
            keys = KeyIndex(secret)
            master = await load_keys(database, keys, settings.auth.master_key)
            client = HttpClient()
            registry = await ProviderRegistry.start(settings.providers, client)
            catalog = Catalog(settings.models, registry, price_lookup(settings), tokenizer_lookup(settings))
            router = Router(catalog, settings.routing)
            metrics = RequestMetrics(settings.metrics.team_label) if settings.metrics.enabled else None
            spend = SpendRecorder(
                settings.storage.data_dir / "journal", LedgerStore(database), metrics=metrics
            )
            await spend.start()
            shared = (
                None
                if settings.storage.redis_url is None
                else SharedCounters.connect(settings.storage.redis_url)
            )
            counters = (
                None if shared is None else BudgetCounters(shared, clock, settings.storage.reservation_lapse)
            )
            budgets = Budgets(clock.now, counters)
            budgets.peers = instances.live
            limit_book = LimitBook(settings.server.overload.default_priority)
            await limit_book.load(database)
            limit_book.start()
            admission = Admission(
                limit_book,
                None if shared is None else SharedLimits(shared.client, settings.storage.reservation_lapse),
                clock.seconds,
            )
            admission.peers = instances.live
            admission.start()
            instances.on_count = functools.partial(_count_peers, budgets, admission)
            await budgets.load(database)  # after the journal a killed process left is in the ledger
            budgets.start()
            reconciler = (
                None
                if counters is None
                else Reconciler(budgets, counters, settings.storage.reconcile_interval)
            )
            billing = Billing(counters=counters)
            await billing.load(database)
            billing.start()
            presets = PresetRegistry()
            await presets.load(database)
            presets.start()
            audit = AuditLog(database)
            request_log = RequestLog(database, audit, settings.request_logs)
            await request_log.start()
            pipeline = Pipeline(
                keys, catalog, router, admission, budgets, spend, billing, presets, request_log
            )
            capacity = DeploymentSync(
                lambda: pipeline.router.deployments, admission.shared, lambda: admission.peers
            )
            capacity.start()
            kinds = {name: p.kind.name for name, p in settings.providers.items()}
            pipeline.tracer = tracer_for(settings, kinds)
            pipeline.mirrors = Mirrors(
                mirrors_of(settings, catalog, spend, pipeline), spend.store.rehearsal_spent
            )
            await pipeline.mirrors.refresh()  # the rehearsal spend so far in each mirror's window
            pipeline.mirrors.start()
        except BaseException:
            if client is not None:
                await client.aclose()
            if request_log is not None:
                await request_log.stop_background()
                await request_log.aclose()
            await instances.aclose()
            await database.close()
            raise
        for warning in (*settings.warnings, *chain_warnings(settings, capabilities_for)):
            log.warning("%s", warning)
        responses = ResponseStore(database)
        responses.start()
        checks = None
        if settings.routing.health_check_interval is not None:
            checks = ActiveHealthChecks(router.deployments, registry, settings.routing.health_check_interval)
            checks.start()
        approvals = Approvals(database, audit, ttl=settings.governance.approval_ttl)
        key_service = KeyService(database, keys, audit, approvals, settings.governance, limit_book)
        key_service.budgets_moved = budgets.refresh  # a rotation moves a key's budgets: here at once
        limit_settings = LimitSettings(database, limit_book, audit)
        keys.lookup = key_service.find  # keys issued elsewhere work here at once
        key_sync = KeySync(database, keys, configured_master=settings.auth.master_key is not None)
        key_sync.start()  # and keys changed elsewhere change here within about a second
        directory = Directory(
            database, key_service, audit, approvals, gated=settings.governance.two_person_rule
        )
        budget_service = BudgetService(database, budgets, audit)
        alerts = AlertOutbox(settings.spend.alerts, audit)
        alert_delivery = AlertDelivery(database, settings.spend.alerts, audit)
        alerts.notify = alert_delivery.notify
        budgets.alerts = alerts
        alert_delivery.start()
        billing_service = BillingService(database, billing, presets, audit)
        provider_control = ProviderControl(
            database,
            router,
            audit,
            approvals,
            {name: p.kind.name for name, p in settings.providers.items()},
            gated="remove_provider" in settings.governance.two_person_rule,
        )
        await provider_control.refresh()  # providers removed before this start stay removed
        provider_control.start()
        game_days = GameDays(
            database,
            router,
            audit,
            approvals,
            {name: p.kind.name for name, p in settings.providers.items()},
            gated="start_game_day" in settings.governance.two_person_rule,
        )
        await game_days.refresh()  # game days under way go on
        game_days.start()
        retention = LedgerRetention(
            database,
            settings.storage.ledger_retention_days,
            hour_days=settings.storage.hourly_totals_retention_days,
        )
        retention.start()
        batches = Batches(
            BatchStore(database), lambda: pipeline.catalog, keys, admission, budgets, spend, billing
        )
        batches.start()
        if reconciler is not None:
            reconciler.start()
        services = cls(
            settings,
            database,
            client,
            registry,
            catalog,
            keys,
            budgets,
            pipeline,
            master,
            responses,
            spend,
            key_service,
            audit,
            approvals,
            directory,
            budget_service,
            billing,
            presets,
            billing_service,
            provider_control,
            instances,
            clock,
            metrics,
            reconciler,
            checks,
            key_sync=key_sync,
            retention=retention,
            limit_settings=limit_settings,
            capacity=capacity,
            request_log=request_log,
            alert_delivery=alert_delivery,
            tracer=pipeline.tracer,
            provider_kinds=kinds,
            game_days=game_days,
            batches=batches,
        )
        return services

    async def apply(self, settings: Settings) -> None:
        """Serve new requests with `settings`' providers, models, routing and prices (a reload);
        requests in flight finish on what they began with, and the providers they use are closed
        once the last of them has ended. Breakers and deployment statistics start afresh."""
        register_secrets(*_secret_values(settings))
        register_internal_hosts(*_upstream_hosts(settings))
        registry = await ProviderRegistry.start(settings.providers, self.client)
        try:
            catalog = Catalog(settings.models, registry, price_lookup(settings), tokenizer_lookup(settings))
            router = Router(catalog, settings.routing)
        except BaseException:
            await registry.aclose()
            raise
        for warning in (*settings.warnings, *chain_warnings(settings, capabilities_for)):
            log.warning("%s", warning)
        router.removed = self.pipeline.router.removed & frozenset(settings.providers)
        self.provider_kinds.update({name: p.kind.name for name, p in settings.providers.items()})
        retired = self.pipeline.switch(catalog, router)
        await self.pipeline.mirrors.switch(mirrors_of(settings, catalog, self.spend, self.pipeline))
        old_registry, self.registry, self.catalog = self.registry, registry, catalog
        self.settings = dataclasses.replace(
            self.settings,
            providers=settings.providers,
            models=settings.models,
            routing=settings.routing,
            spend=settings.spend,
            warnings=settings.warnings,
        )
        if self.alert_delivery is not None and self.budgets.alerts is not None:
            self.alert_delivery.settings = self.budgets.alerts.settings = settings.spend.alerts
        self.provider_control.switch(router, {name: p.kind.name for name, p in settings.providers.items()})
        if self.game_days is not None:
            self.game_days.switch(router, {name: p.kind.name for name, p in settings.providers.items()})
        if self.health_checks is not None:
            await self.health_checks.aclose()
        if self.capacity is not None:
            await self.capacity.aclose()
            self.health_checks = None
        if settings.routing.health_check_interval is not None:
            self.health_checks = ActiveHealthChecks(
                router.deployments, registry, settings.routing.health_check_interval
            )
            self.health_checks.start()
        self.retired_registries.append(old_registry)
        closing = asyncio.get_running_loop().create_task(self._close_when_drained(retired, old_registry))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _close_when_drained(self, retired: Generation, registry: ProviderRegistry) -> None:
        await retired.drained()
        self.retired_registries.remove(registry)
        await registry.aclose()

    async def aclose(self, deadline: float | None = None) -> None:
        """Stop every service. What is written to the database on the way out (pending responses,
        the ledger journal, budget windows, the last settlements) shares the time left until
        `deadline` (loop time: the end of the shutdown grace; at least `LAST_WRITES` from now;
        None: as long as they take): a database that does not answer cannot hold the exit up. The
        ledger journal keeps what was not moved, for the next start."""
        loop = asyncio.get_running_loop()
        end = None if deadline is None else max(loop.time() + LAST_WRITES, deadline)
        for closing in list(self._closing):
            closing.cancel()
        await self.pipeline.mirrors.aclose()  # shadows are cancelled, never waited for
        if self.request_log is not None:
            await self.request_log.stop_background()
        background = (
            self.batches,
            self.retention,
            self.alert_delivery,
            self.reconciler,
            self.key_sync,
            self.health_checks,
            self.capacity,
        )
        for task in background:  # the periodic work, stopped before the last writes (a round in
            if task is not None:  # progress may end, within the grace: turnout/periodic.py)
                left = None if end is None else max(end - loop.time(), LAST_WRITES / 4)
                try:
                    await (task.aclose() if left is None else bounded(task.aclose(), left))
                except TimeoutError:
                    log.warning("shutdown: a round of %s outlasted the grace; cancelled", type(task).__name__)
        for registry in (*self.retired_registries, self.registry):
            await registry.aclose()
        await self.client.aclose()
        writes: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("the stored responses", self.responses.aclose),  # writes the responses still pending
            ("the ledger journal", self.spend.aclose),  # moves the journal into the database
            ("the budget windows", self.budgets.aclose),  # (both send their last settlements to Redis)
            ("the credit holds", self.billing.aclose),
            ("the rate limits", self.pipeline.admission.aclose),  # their last settlements to Redis
        ]
        if self.request_log is not None:
            writes.append(("the request log", self.request_log.aclose))
        if self.budgets.shared is not None:
            writes.append(("the shared counters", self.budgets.shared.aclose))
        writes += [
            ("the presets", self.presets.aclose),
            ("the provider control", self.provider_control.aclose),
        ]
        if self.game_days is not None:  # (a rollback still being written finishes)
            writes.append(("the game days", self.game_days.aclose))
        writes += [
            ("the instance registration", self.instances.aclose),  # the others' shares grow
            ("the database", self.database.close),
        ]
        if self.tracer is not None:  # the spans still batched are exported (a blocking call)
            writes.append(("the trace exporter", partial(asyncio.to_thread, self.tracer.shutdown)))
        for what, close in writes:
            left = None if end is None else end - loop.time()
            if left is not None and close == self.database.close:  # a moment to let connections go
                left = max(left, LAST_WRITES / 2)
            try:
                await (close() if left is None else bounded(close(), left))
            except TimeoutError:
                log.error("shutdown: %s could not be closed within the shutdown grace; left as it is", what)
            except Exception:
                log.exception("shutdown: closing %s failed", what)


def mirrors_of(
    settings: Settings, catalog: Catalog, spend: SpendRecorder, pipeline: Pipeline
) -> dict[str, Mirror]:
    """The aliases' mirrors the configuration asks for (routing/mirror.py); none sends to a
    provider taken out of service."""
    return {
        alias: Mirror(
            alias,
            catalog.target(m.mirror.target),
            m.mirror,
            spend.record_shadow,
            spend.shadow_skipped,
            out_of_service=lambda: pipeline.router.removed,
        )
        for alias, m in settings.models.items()
        if m.mirror is not None
    }


def _count_peers(budgets: Budgets, admission: Admission, live: int) -> None:
    """How many instances share the database now: without Redis, each enforces its share of
    every budget and rate limit."""
    budgets.set_peers(live)
    admission.set_peers(live)


def tracer_for(settings: Settings, kinds: dict[str, str]) -> Tracer | None:
    """The tracer `tracing` asks for: spans exported over OTLP (HTTP or gRPC), or None (then
    OpenTelemetry's SDK is never imported)."""
    tracing = settings.tracing
    if tracing.otlp_endpoint is None:
        return None
    from turnout.observability.otel import OtelTracer  # only when traces are wanted

    headers = {name: v if isinstance(v, str) else v.reveal() for name, v in tracing.headers}
    return OtelTracer.exporting(
        tracing.otlp_endpoint,
        headers,
        lambda provider: kinds.get(provider, provider),
        protocol=tracing.otlp_protocol,
        service_name=tracing.service_name,
        sample_ratio=tracing.sample_ratio,
        capture_content=tracing.capture_content,
        version=__version__,
    )


def price_lookup(settings: Settings) -> PriceOf:
    """Prices for the models wildcard aliases reach, from the price table turnout ships."""
    table = shipped_prices()
    namespaces = {name: p.kind.price_namespace for name, p in settings.providers.items()}
    return lambda provider, model: table.lookup(namespaces[provider], model)


def tokenizer_lookup(settings: Settings) -> TokenizerOf:
    """Which deployments' prompts are counted exactly (config/tokenizers.py)."""
    namespaces = {name: p.kind.price_namespace for name, p in settings.providers.items()}
    return lambda provider, model: tokenizer_of(namespaces[provider], model)


def _upstream_hosts(settings: Settings) -> list[str]:
    """Where the upstreams live (their base URLs' and proxies' hosts): never named to a client."""
    hosts = [urlsplit(p.base_url).hostname or "" for p in settings.providers.values()]
    hosts += [p.proxy.host for p in settings.providers.values() if p.proxy is not None]
    return hosts


def _secret_values(settings: Settings) -> list[str]:
    """Every secret the configuration resolved: removed by value from anything logged or relayed."""
    secrets = (settings.auth.master_key, settings.auth.key_hash_secret, settings.metrics.key)
    values = [s.reveal() for s in secrets if s is not None]
    values += [value.reveal() for _, value in settings.tracing.headers if not isinstance(value, str)]
    for provider in settings.providers.values():
        if provider.api_key is not None:
            values.append(provider.api_key.reveal())
        values += [value.reveal() for _, value in provider.headers if not isinstance(value, str)]
        if provider.proxy is not None and provider.proxy.authorization is not None:
            values.append(provider.proxy.authorization.reveal())
    values += [hook.secret.reveal() for hook in settings.spend.alerts.webhooks]
    for url in (settings.storage.database_url, settings.storage.redis_url):
        password = None if url is None else urlsplit(url).password
        if password:
            values.append(password)
    return values
