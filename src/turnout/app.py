"""The composition root: build every service from `Settings`, and take them down again.

Started inside the running event loop (the HTTP client, the fake upstreams and the database all
belong to it). The web edge receives the finished `Services`; nothing is created at import time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from turnout.config.prices import shipped_prices
from turnout.config.settings import Settings
from turnout.config.tokenizers import tokenizer_of
from turnout.governance.approvals import Approvals
from turnout.governance.audit import AuditLog
from turnout.governance.providers import ProviderControl
from turnout.keys.index import KeyIndex
from turnout.keys.service import KeyService
from turnout.keys.store import MasterKeyOutcome, load_hash_secret, load_keys
from turnout.keys.sync import KeySync
from turnout.limits.admission import Admission
from turnout.observability.redaction import register_internal_hosts, register_secrets
from turnout.pipeline import Pipeline
from turnout.presets.registry import PresetRegistry
from turnout.providers.capabilities import capabilities_for
from turnout.providers.http.client import HttpClient
from turnout.providers.registry import ProviderRegistry
from turnout.routing.catalog import Catalog, PriceOf, TokenizerOf
from turnout.routing.chain_check import chain_warnings
from turnout.routing.health_checks import ActiveHealthChecks
from turnout.routing.router import Router
from turnout.spend.billing import Billing
from turnout.spend.billing_service import BillingService
from turnout.spend.budget_counters import BudgetCounters
from turnout.spend.budget_reconcile import Reconciler
from turnout.spend.budget_service import BudgetService
from turnout.spend.budgets import Budgets
from turnout.spend.ledger_store import LedgerStore
from turnout.spend.recorder import SpendRecorder
from turnout.spend.shared_counters import SharedCounters
from turnout.storage.database import Database
from turnout.storage.instances import Instances
from turnout.storage.reference_clock import ReferenceClock
from turnout.storage.stored_responses import ResponseStore
from turnout.teams.directory import Directory

log = logging.getLogger("turnout")


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
    reconciler: Reconciler | None = None
    health_checks: ActiveHealthChecks | None = None
    key_sync: KeySync | None = None
    started_at: float = field(default_factory=time.time)
    draining: bool = False

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        register_secrets(*_secret_values(settings))
        register_internal_hosts(*_upstream_hosts(settings))
        database = await Database.open(settings.storage.database_url)
        client: HttpClient | None = None
        clock = ReferenceClock()
        instances = Instances(database, clock, shared_counters=settings.storage.redis_url is not None)
        try:
            await instances.register()  # the database's clock, and how many instances share it
            keys = KeyIndex(load_hash_secret(settings.auth.key_hash_secret, settings.storage.data_dir))
            master = await load_keys(database, keys, settings.auth.master_key)
            client = HttpClient()
            registry = await ProviderRegistry.start(settings.providers, client)
            catalog = Catalog(settings.models, registry, price_lookup(settings), tokenizer_lookup(settings))
            router = Router(catalog, settings.routing)
            spend = SpendRecorder(settings.storage.data_dir / "journal", LedgerStore(database))
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
            instances.on_count = budgets.set_peers
            await budgets.load(database)  # after the journal a killed process left is in the ledger
            budgets.start()
            reconciler = (
                None
                if counters is None
                else Reconciler(budgets, counters, settings.storage.reconcile_interval)
            )
            billing = Billing(shared=shared)
            await billing.load(database)
            billing.start()
            presets = PresetRegistry()
            await presets.load(database)
            presets.start()
            pipeline = Pipeline(keys, catalog, router, Admission(), budgets, spend, billing, presets)
        except BaseException:
            if client is not None:
                await client.aclose()
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
        audit = AuditLog(database)
        approvals = Approvals(database, audit, ttl=settings.governance.approval_ttl)
        key_service = KeyService(database, keys, audit, approvals, settings.governance)
        keys.lookup = key_service.find  # keys issued elsewhere work here at once
        key_sync = KeySync(database, keys, configured_master=settings.auth.master_key is not None)
        key_sync.start()  # and keys changed elsewhere change here within about a second
        directory = Directory(
            database, key_service, audit, approvals, gated=settings.governance.two_person_rule
        )
        budget_service = BudgetService(database, budgets, audit)
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
        if reconciler is not None:
            reconciler.start()
        return cls(
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
            reconciler,
            checks,
            key_sync=key_sync,
        )

    async def aclose(self) -> None:
        if self.reconciler is not None:
            await self.reconciler.aclose()
        if self.key_sync is not None:
            await self.key_sync.aclose()
        if self.health_checks is not None:
            await self.health_checks.aclose()
        await self.registry.aclose()
        await self.client.aclose()
        await self.responses.aclose()  # writes the responses still pending
        await self.spend.aclose()  # moves the ledger journal into the database
        await self.budgets.aclose()  # writes the budget windows still pending
        await self.billing.aclose()  # (both send their last settlements to Redis)
        if self.budgets.shared is not None:
            await self.budgets.shared.aclose()
        await self.presets.aclose()
        await self.provider_control.aclose()
        await self.instances.aclose()  # the others' shares grow from their next window
        await self.database.close()


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
    values = [s.reveal() for s in (settings.auth.master_key, settings.auth.key_hash_secret) if s is not None]
    for provider in settings.providers.values():
        if provider.api_key is not None:
            values.append(provider.api_key.reveal())
        values += [value.reveal() for _, value in provider.headers if not isinstance(value, str)]
        if provider.proxy is not None and provider.proxy.authorization is not None:
            values.append(provider.proxy.authorization.reveal())
    for url in (settings.storage.database_url, settings.storage.redis_url):
        password = None if url is None else urlsplit(url).password
        if password:
            values.append(password)
    return values
