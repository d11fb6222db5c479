"""GET /metrics: the Prometheus exposition of the request counts (`observability.metrics`) and of
gauges read from the running services when scraped: each deployment's breaker and requests in
flight, the ledger journal's backlog, the database (pinged at the scrape) and Redis.

Readable with the master key, an organisation owner's or admin's key, or the configured metrics
key (`metrics.key`: a token that opens nothing else); or without a key on a listener of its own
(`metrics.listen`), which serves nothing else."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator

from prometheus_client.exposition import choose_encoder

from turnout import __version__
from turnout.app import Services
from turnout.domain.errors import (
    AuthenticationFailed,
    MethodNotAllowed,
    PermissionDenied,
    RouteNotFound,
    TurnoutError,
)
from turnout.domain.key_policy import organisation_reader
from turnout.observability.gauges import (
    DeploymentSample,
    Health,
    ServiceCollector,
    metrics_registry,
)
from turnout.observability.metrics import RequestMetrics
from turnout.server.exchange import Exchange, Receive, Scope, Send

Deployments = Callable[[], list[dict[str, object]]]


class MetricsEndpoint:
    def __init__(self, services: Services, metrics: RequestMetrics, deployments: Deployments) -> None:
        self.services = services
        key = services.settings.metrics.key
        self._key = None if key is None else key.reveal().encode()
        self._deployments = deployments
        self._database_up: bool | None = None
        self._redis_up: bool | None = None
        gauges = ServiceCollector(self._samples, services.spend.backlog, self._health, __version__)
        self.registry = metrics_registry(metrics, gauges)

    async def __call__(self, x: Exchange) -> None:
        self._authorise(x)
        await self.serve(x)

    async def serve(self, x: Exchange) -> None:
        """The exposition, whoever asks (the caller is authorised, or on the metrics listener)."""
        database = self.services.database
        try:
            await database.within(database.ping())
            self._database_up = True
        except Exception:
            self._database_up = False
        shared = self.services.budgets.shared
        self._redis_up = None if shared is None else await shared.answers()
        # the Prometheus text format, or OpenMetrics when the scraper asks for it
        encode, content_type = choose_encoder((x.header(b"accept") or b"").decode("latin-1"))
        body = encode(self.registry)
        x.started = True
        await x.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type.encode()), *x.response_headers(None)],
            }
        )
        await x.send({"type": "http.response.body", "body": body})

    def _authorise(self, x: Exchange) -> None:
        credential = x.credential()
        if credential is None:
            raise AuthenticationFailed("Reading /metrics needs a key (the metrics key or an admin's).")
        if self._key is not None and hmac.compare_digest(credential.encode("utf-8", "replace"), self._key):
            return
        principal = self.services.pipeline.authenticate(x)
        if not organisation_reader(principal):
            raise PermissionDenied("/metrics is for the organisation's owners, admins and viewers.")

    def _samples(self) -> Iterator[DeploymentSample]:
        for d in self._deployments():
            yield DeploymentSample(
                str(d["deployment"]),
                str(d["provider"]),
                str(d["model"]),
                str(d["state"]),
                int(str(d["in_flight"])),
            )

    def _health(self) -> Health:
        return Health(self._database_up, self._redis_up)


class MetricsListener:
    """The ASGI app of the metrics listener (`metrics.listen`): GET /metrics, no key, nothing else."""

    def __init__(self, endpoint: MetricsEndpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        x = Exchange(scope, receive, send, 0)
        try:
            if scope["path"] != "/metrics":
                raise RouteNotFound(f"Unknown request URL: {scope['method']} {scope['path']}.")
            if scope["method"] != "GET":
                raise MethodNotAllowed(f"{scope['method']} is not allowed on /metrics.", allowed=("GET",))
            await self.endpoint.serve(x)
        except TurnoutError as error:
            await x.error(error)
