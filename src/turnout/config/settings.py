"""Frozen, resolved settings: what the rest of turnout is built from. Secrets are `Secret`s."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal

from turnout.config.provider_kinds import ProviderKind
from turnout.config.secrets import Secret
from turnout.domain.pricing import ModelPrice
from turnout.domain.principal import Priority
from turnout.domain.rate_limits import RateLimits


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each phase of an upstream call."""

    connect: float = 5.0
    first_byte: float = 120.0
    idle: float = 60.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class FakeSettings:
    latency: float = 0.0
    chunks: int = 8
    chunk_gap: float = 0.0
    port: int | None = None
    models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """An HTTP proxy to reach a provider through (CONNECT for https:// providers)."""

    host: str
    port: int
    authorization: Secret | None = None  # the Proxy-Authorization header's value

    @property
    def display(self) -> str:
        return f"http://{self.host}:{self.port}" + (" (with credentials)" if self.authorization else "")


@dataclass(frozen=True, slots=True)
class VertexSettings:
    """A Vertex AI provider's deployment: models under `projects/{project}/locations/{location}`,
    called with a service account's access tokens; or, in express mode (an API key, no project),
    under the global `publishers/google/models`."""

    location: str
    project: str | None = None  # None in express mode
    credentials_file: Path | None = None  # a service-account key file; None in express mode


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """A Bedrock provider's AWS side: its region, and the access keys it signs requests with (SigV4);
    no keys when it authenticates with a Bedrock API key (`api_key`) instead."""

    region: str | None = None  # None only with an API key and an explicit base_url
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    kind: ProviderKind
    base_url: str
    api_key: Secret | None
    api_version: str | None
    headers: tuple[tuple[str, str | Secret], ...]
    timeouts: Timeouts
    unsupported_params: Literal["reject", "drop"]
    stream_usage: bool
    embeddings_base64: bool
    fake: FakeSettings | None = None
    # /v1/responses requests are passed whole to its own Responses API (else translated to chat)
    responses_api: bool = False
    proxy: ProxySettings | None = None
    tls_ca_file: Path | None = None
    vertex: VertexSettings | None = None
    aws: AwsSettings | None = None
    passthrough: tuple[str, ...] = ()  # path prefixes /passthrough/<name>/... may reach


Strategy = Literal["priority", "weighted", "least_busy", "lowest_latency", "lowest_cost"]
STRATEGIES: tuple[Strategy, ...] = ("priority", "weighted", "least_busy", "lowest_latency", "lowest_cost")


@dataclass(frozen=True, slots=True)
class RetrySettings:
    attempts: int = 3  # upstream attempts per client request, first try and fallbacks included
    backoff_base: float = 0.1  # seconds; retry n of the same deployment waits up to base * 2**(n-1) ...
    backoff_max: float = 2.0  # ... capped here (full jitter: a uniform draw below the bound)
    max_retry_after: float = 10.0  # a deployment asking for a longer pause is skipped, not waited for
    budget_ratio: float = 0.2  # retries may add at most this share of recent requests ...
    budget_per_second: float = 1.0  # ... plus this many a second, so quiet periods can still retry
    budget_window: float = 10.0  # seconds of history the budget looks at


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    consecutive_failures: int = 5  # open after this many failures in a row ...
    error_rate: float = 0.5  # ... or when this share of the window's requests failed
    min_requests: int = 10  # (the rate applies once the window holds this many)
    window: float = 30.0  # seconds of history the error rate looks at
    open_for: float = 10.0  # first cool-down; doubled on each failed probe, up to max_open_for
    max_open_for: float = 120.0
    half_open_probes: int = 1  # requests let through at once while half-open
    close_after: int = 2  # successful probes in a row that close the breaker


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """Defaults for every alias (each alias may override strategy, attempts, stream_resume,
    hedge_after), and the settings that are one per gateway (breakers, retry budget)."""

    strategy: Strategy = "priority"
    retries: RetrySettings = RetrySettings()
    breaker: BreakerSettings = BreakerSettings()
    stream_resume: bool = True
    hedge_after: float | None = None
    health_check_interval: float | None = None  # active checks (a free models-list call); off
    moderation_model: str | None = None  # the alias a /v1/moderations request without `model` uses


ALERT_EVENTS = ("budget.soft_limit", "budget.exhausted")


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    secret: Secret = field(repr=False)
    events: frozenset[str] = frozenset(ALERT_EVENTS)


@dataclass(frozen=True, slots=True)
class AlertSettings:
    webhooks: tuple[Webhook, ...] = ()
    allow_private: tuple[IPv4Network | IPv6Network, ...] = ()
    attempts: int = 8
    backoff: float = 1.0
    max_backoff: float = 600.0
    timeout: float = 10.0
    queue: int = 10_000


@dataclass(frozen=True, slots=True)
class SpendSettings:
    unknown_prices: Literal["reject", "record"] = "reject"
    alerts: AlertSettings = AlertSettings()


GATED_ACTIONS = ("delete_team", "revoke_team_keys", "change_admin_role", "remove_provider", "start_game_day")


@dataclass(frozen=True, slots=True)
class GovernanceSettings:
    two_person_rule: frozenset[str] = frozenset(GATED_ACTIONS)  # on for all of them by default
    approval_ttl: float = 24 * 3600.0
    piecewise_revocations: int = 5  # a team's keys revoked one by one within the window, at once
    piecewise_window: float = 3600.0


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """Signing in to the console through an OpenID Connect provider (console/oidc.py)."""

    issuer: str  # without a trailing slash
    client_id: str
    client_secret: Secret | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    allow_signup: bool = False
    clock_skew: float = 60.0


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """The web console (turnout.console): served under `path` unless `enabled` is false; a signed-in
    browser's session ends `session_ttl` seconds after it began; `oidc` adds single sign-on."""

    enabled: bool = True
    path: str = "/ui"
    session_ttl: float = 8 * 3600.0
    oidc: OidcSettings | None = None


@dataclass(frozen=True, slots=True)
class TargetSettings:
    provider: str
    model: str
    timeouts: Timeouts
    name: str = ""  # the deployment's name (x-turnout-deployment); default provider/model
    weight: float = 1.0
    priority: int = 0
    tags: frozenset[str] = frozenset()
    rpm: int | None = None
    tpm: int | None = None
    context_window: int | None = None  # tokens, when known: for context-window fallbacks
    # the most tokens one answer may hold: configured, else the price table's (None: unbounded)
    max_output_tokens: int | None = None
    price: ModelPrice | None = None  # configured, or from the price table (None: unknown)
    supports: tuple[tuple[str, bool], ...] = ()  # capabilities declared for this model
    unsupported_params: Literal["reject", "drop"] | None = None  # None: the provider's policy


MirrorPeriod = Literal["daily", "weekly", "monthly", "never"]
MIRROR_TIMEOUT = 60.0
MIRROR_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class MirrorSettings:
    """An alias's shadow traffic (routing/mirror.py): `share` of its admitted chat requests are
    also sent to `target`, in the background, recorded in the ledger as rehearsal spend; they stop
    for the rest of a `period` window (UTC) once that spend reaches `budget` (micro-dollars)."""

    target: TargetSettings
    share: float
    budget: int
    period: MirrorPeriod = "daily"
    timeout: float = MIRROR_TIMEOUT  # seconds a shadow may take in all; then it is cancelled
    concurrency: int = MIRROR_CONCURRENCY  # shadows of this alias in flight at once; more are skipped


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """A public alias. A wildcard alias (`groq/*`) matches any name with its prefix; `*` in a
    target's model stands for the part of the requested name the wildcard matched."""

    alias: str
    targets: tuple[TargetSettings, ...]
    strategy: Strategy = "priority"
    attempts: int = 3
    fallbacks: tuple[str, ...] = ()  # aliases tried when every target failed or is unavailable
    context_window_fallbacks: tuple[str, ...] = ()  # ... when the request is too long for it
    content_policy_fallbacks: tuple[str, ...] = ()  # ... when a provider refused on content policy
    # a key that may use this alias may use its fallbacks through it (else each fallback alias is
    # tried only for keys that may use it)
    fallbacks_included: bool = False
    hedge_after: float | None = None  # seconds without a first token before a second attempt starts
    stream_resume: bool = True  # continue a stream cut after its first byte on another deployment
    limits: RateLimits | None = None  # the alias's rate limits (every key's requests together)
    mirror: MirrorSettings | None = None  # shadow traffic to a candidate deployment (None: none)

    def chain(self, kind: str) -> tuple[str, ...]:
        if kind == "context_window":
            return self.context_window_fallbacks
        if kind == "content_policy":
            return self.content_policy_fallbacks
        return self.fallbacks

    @property
    def is_wildcard(self) -> bool:
        return self.alias.endswith("*")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What a client may send before it is refused (`server.limits`), enforced by the HTTP protocol
    itself: before any request is authenticated or reaches the application."""

    max_request_line: int = 16 * 1024  # the request target (path and query); longer: 414
    max_header_bytes: int = 64 * 1024  # the request head: request line and header fields; larger: 431
    max_headers: int = 100  # header fields in one request (trailers included); more: 431
    # a request's head must be complete this long after the connection opened or, on a kept-alive
    # connection, after the request's first byte; else 408 and the connection is closed
    header_timeout: float = 10.0
    # a request's body must be complete this long after its head, extended by one second for
    # every `body_min_rate` bytes received (0: no extension); else 408 and the connection is closed
    body_timeout: float = 30.0
    body_min_rate: int = 16 * 1024


@dataclass(frozen=True, slots=True)
class OverloadSettings:
    """Admission control per instance (`server.overload`): how many requests may be in progress at
    once, a limit that follows the measured latency (limits/concurrency.py), and a short queue."""

    enabled: bool = True
    initial_limit: int = 100
    min_limit: int = 10
    max_limit: int = 1000
    tolerance: float = 1.2  # latency this many times the long-run average is queueing: shrink
    window: float = 1.0  # the limit is recomputed at most this often (and over 10 answers at least)
    queue_ratio: float = 0.5  # requests that may wait for a slot, as a fraction of the limit
    queue_timeout: float = 1.0  # the longest a request waits for a slot; then 503
    retry_after: int = 1  # seconds, in the 503's Retry-After
    standard_share: float = 0.9  # the part of the limit `standard` requests may hold
    batch_share: float = 0.7  # ... and `batch` requests (the rest is headroom for higher classes)
    default_priority: Priority = "standard"  # of a key without one


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 4000
    max_request_bytes: int = 32 * 1024 * 1024
    shutdown_grace: float = 30.0
    drain_delay: float = 0.0
    access_log: bool = False
    # peers whose forwarded header names the client (load balancers, reverse proxies); none: the
    # client is always the socket peer
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    limits: HttpLimits = HttpLimits()
    overload: OverloadSettings = OverloadSettings()


@dataclass(frozen=True, slots=True)
class FailedAttemptSettings:
    """After `limit` failed authentications from one client address within `window` seconds, that
    address gets 429 until the window ends (0: no limit)."""

    limit: int = 20
    window: float = 60.0


@dataclass(frozen=True, slots=True)
class AuthSettings:
    master_key: Secret | None = None
    key_hash_secret: Secret | None = None
    failed_attempts: FailedAttemptSettings = FailedAttemptSettings()


@dataclass(frozen=True, slots=True)
class StorageSettings:
    data_dir: Path
    database_url: str = field(repr=False)  # may carry a password resolved from a secret reference
    # Redis, shared by the instances of one deployment: budgets and prepaid credit are then exact
    # across all of them (each instance alone otherwise)
    redis_url: str | None = field(default=None, repr=False)
    # the deadline of every connect and query the gateway makes while serving (and of a lock wait
    # on SQLite): a database that stops answering fails fast instead of holding requests
    database_timeout: float = 2.0
    # delete ledger rows older than this many days (their figures stay in the running totals)
    ledger_retention_days: int | None = None
    # delete the running totals' hour cells older than this many days (their day cells keep the
    # figures; spans reaching further back are answered in whole days)
    hourly_totals_retention_days: int = 90
    # a reservation in Redis lapses this long after its instance last renewed it (a killed
    # instance's reservations free themselves); counters are compared with the ledger this often
    reservation_lapse: float = 30.0
    reconcile_interval: float = 60.0


@dataclass(frozen=True, slots=True)
class RequestLogSettings:
    """The request log (request_logs/): off for every key unless a key's or team's setting (or
    `log_by_default`) says otherwise."""

    log_by_default: bool = False
    retention_days: int = 30
    max_entry_bytes: int = 65536  # of the request and of the answer, each; longer is cut and marked
    queue_limit: int = 10_000
    redact: tuple[re.Pattern[str], ...] = ()  # beside the built-in credential patterns


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Prometheus metrics at GET /metrics: read with the master key, an organisation admin's or
    owner's key, or `key` (a token good for nothing else)."""

    enabled: bool = True
    key: Secret | None = None
    team_label: bool = False  # label spend and requests with the caller's team (bounded by teams)
    # a second listener (host, port) that serves /metrics to anyone who can reach it (a private
    # interface, a sidecar's loopback): no key needed there
    listen: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry traces, exported over OTLP to `otlp_endpoint` (None: off, and the SDK is never
    imported), over HTTP (protobuf) or gRPC (`otlp_protocol`)."""

    otlp_endpoint: str | None = None
    otlp_protocol: Literal["http", "grpc"] = "http"
    headers: tuple[tuple[str, str | Secret], ...] = ()
    service_name: str = "turnout"
    sample_ratio: float = 1.0
    capture_content: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings
    auth: AuthSettings
    storage: StorageSettings
    providers: Mapping[str, ProviderSettings]
    models: Mapping[str, ModelSettings]
    source: str
    routing: RoutingSettings = RoutingSettings()
    spend: SpendSettings = SpendSettings()
    governance: GovernanceSettings = GovernanceSettings()
    request_logs: RequestLogSettings = RequestLogSettings()
    console: ConsoleSettings = ConsoleSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    warnings: tuple[str, ...] = ()
