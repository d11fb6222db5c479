"""Gauges read from the running services when Prometheus scrapes (never on the request path):
each deployment's circuit breaker and requests in flight (the deployment registry), the ledger
journal's backlog, the database and Redis; and the registry /metrics exposes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from turnout.observability.metrics import RequestCollector, RequestMetrics


class DeploymentSample(NamedTuple):
    deployment: str
    provider: str
    model: str
    state: str  # closed | open | half_open | cooling_down
    in_flight: int


BREAKER_STATES = ("closed", "open", "half_open", "cooling_down")


class JournalSample(NamedTuple):
    backlog: int  # entries journaled and not yet in the database
    lag: float  # seconds the oldest of them has waited
    held: int  # entries held in memory after a failed write
    writable: bool


class Health(NamedTuple):
    database: bool | None  # None: not known (not looked at)
    redis: bool | None  # None: no Redis configured


class ServiceCollector(Collector):
    """Gauges read from the running services when scraped: each deployment's breaker and requests
    in flight (from the deployment registry), the ledger journal, the database and Redis."""

    def __init__(
        self,
        deployments: Callable[[], Iterable[DeploymentSample]],
        journal: Callable[[], JournalSample],
        health: Callable[[], Health],
        version: str,
    ) -> None:
        self._deployments = deployments
        self._journal = journal
        self._health = health
        self._version = version

    def collect(self) -> Iterator[Metric]:
        labels = ["deployment", "provider", "model"]
        state = GaugeMetricFamily(
            "turnout_deployment_breaker_state",
            "1 for the state each deployment's circuit breaker is in (cooling_down: closed, but its "
            "provider asked for a pause), 0 for the others.",
            labels=[*labels, "state"],
        )
        in_flight = GaugeMetricFamily(
            "turnout_deployment_in_flight", "Requests in flight on each deployment.", labels=labels
        )
        for d in self._deployments():
            names = [d.deployment, d.provider, d.model]
            for shown in BREAKER_STATES:
                state.add_metric([*names, shown], 1.0 if shown == d.state else 0.0)
            in_flight.add_metric(names, d.in_flight)
        yield state
        yield in_flight
        journal = self._journal()
        yield GaugeMetricFamily(
            "turnout_ledger_journal_backlog_entries",
            "Ledger entries journaled and not yet moved into the database.",
            value=journal.backlog,
        )
        yield GaugeMetricFamily(
            "turnout_ledger_journal_lag_seconds",
            "Seconds the oldest ledger entry not yet in the database has waited (0: none waits).",
            value=journal.lag,
        )
        yield GaugeMetricFamily(
            "turnout_ledger_journal_held_entries",
            "Ledger entries held in memory because the journal could not be written.",
            value=journal.held,
        )
        yield GaugeMetricFamily(
            "turnout_ledger_journal_writable",
            "1 while the ledger journal can be written (0: requests are refused with 503).",
            value=1.0 if journal.writable else 0.0,
        )
        health = self._health()
        if health.database is not None:
            yield GaugeMetricFamily(
                "turnout_database_up",
                "1 if the database answered a ping at this scrape.",
                value=health.database,
            )
        if health.redis is not None:
            yield GaugeMetricFamily(
                "turnout_redis_up",
                "1 if the shared counters' Redis answered a ping at this scrape.",
                value=health.redis,
            )
        info = GaugeMetricFamily("turnout_build_info", "turnout's version.", labels=["version"])
        info.add_metric([self._version], 1.0)
        yield info


def metrics_registry(metrics: RequestMetrics, services: ServiceCollector) -> CollectorRegistry:
    """What /metrics exposes: the request counts, the services' gauges and the process's own
    (CPU, memory, open files: prometheus_client's process collector)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RequestCollector(metrics))
    registry.register(services)
    ProcessCollector(registry=registry)
    return registry
