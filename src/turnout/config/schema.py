"""The configuration file's shape, exactly as written. Unknown keys are errors.

These structs are the first stage: they check what was written. `loader.py` is the second: it
resolves secrets, fills in defaults, cross-checks names and yields frozen `Settings`.
Providers and models are maps whose entries are checked one by one, so that every error can name
its entry (`models.gpt-4o.targets[1].provider`).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

DurationValue = str | float
SizeValue = str | int


class TimeoutsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    connect: DurationValue | None = None
    first_byte: DurationValue | None = None
    idle: DurationValue | None = None
    total: DurationValue | None = None


class ProviderConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    type: str
    base_url: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    headers: dict[str, str] | None = None
    timeouts: TimeoutsConfig | None = None
    unsupported_params: Literal["reject", "drop"] | None = None
    stream_usage: bool | None = None
    embeddings_base64: bool | None = None
    responses_api: bool | None = None
    proxy: str | None = None
    tls_ca_file: str | None = None
    # paths under base_url that /passthrough/<name>/... forwards (prefixes; absent: none)
    passthrough: list[str] | None = None
    # Blocks only some kinds take, each checked by the provider that owns it (its `sections`):
    # `fake:` (turnout.providers.fake), `vertex:` (turnout.providers.gemini), `aws:`
    # (turnout.providers.bedrock).
    fake: dict[str, Any] | None = None
    vertex: dict[str, Any] | None = None
    aws: dict[str, Any] | None = None


Strategy = Literal["priority", "weighted", "least_busy", "lowest_latency", "lowest_cost"]


PriceValue = str | int | float


class RatesConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """USD per million tokens (write them as strings, "2.50", to be exact: they are read as
    decimals). Cache reads and writes cost the input price unless given; 1-hour cache writes
    (Anthropic's) the 5-minute price unless given. A reranker may have only `search_units`."""

    input: PriceValue | None = None  # required, but for a price given only per unit (below)
    output: PriceValue = 0
    cached_input: PriceValue | None = None
    cache_write: PriceValue | None = None
    cache_write_1h: PriceValue | None = None


class LongContextConfig(RatesConfig, frozen=True, kw_only=True):
    """Rates for every token of a request whose prompt is above `above` tokens."""

    above: int


class TierPriceConfig(RatesConfig, frozen=True, kw_only=True):
    """A service tier's rates, and their long-context step if any."""

    long_context: LongContextConfig | None = None


class PriceConfig(TierPriceConfig, frozen=True, kw_only=True):
    """A deployment's price: rates, a long-context step, service tiers (flex, priority, batch) and
    `since` (YYYY-MM-DD, UTC), the date from which it applies when several versions are given."""

    service_tiers: dict[str, TierPriceConfig] | None = None
    since: str | None = None
    search_units: PriceValue | None = None  # USD per 1,000 search units (a reranker's searches)
    # priced per unit (images, speech, transcription): USD per image by "quality size" (or size),
    # USD per minute of audio transcribed, USD per 1M characters read aloud
    per_image: dict[str, PriceValue] | None = None
    per_audio_minute: PriceValue | None = None
    per_1m_characters: PriceValue | None = None


class SupportsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What a deployment's model can do where it differs from its provider's defaults (e.g. a
    text-only model on a provider whose other models see images)."""

    images: bool | None = None
    tools: bool | None = None
    json_schema: bool | None = None
    streaming: bool | None = None
    # the model ranks documents (/v1/rerank) or classifies content (/v1/moderations): requests of
    # that kind go to it, and nothing else does
    rerank: bool | None = None
    moderation: bool | None = None
    # what it does besides chat (OpenAI-format providers only): POST /v1/images/generations,
    # /v1/audio/transcriptions, /v1/audio/speech; `chat: false` keeps chat requests away from it
    image_generation: bool | None = None
    transcription: bool | None = None
    speech: bool | None = None
    chat: bool | None = None


class TargetConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One deployment of an alias."""

    provider: str
    model: str
    timeouts: TimeoutsConfig | None = None
    name: str | None = None
    weight: float | None = None
    priority: int | None = None
    tags: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    price: PriceConfig | list[PriceConfig] | None = None
    supports: SupportsConfig | None = None
    unsupported_params: Literal["reject", "drop"] | None = None  # overrides the provider's policy


class LimitsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An alias's rate limits, for every key together (docs/configuration.md, "Rate limits")."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    parallel: int | None = None


class MirrorBudgetConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The most a mirror's shadows may cost in each period (USD, written as a string: "5.00")."""

    limit: PriceValue
    period: Literal["daily", "weekly", "monthly", "never"] = "daily"  # UTC windows


class MirrorConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Shadow traffic: a share of an alias's live requests also sent to a candidate deployment."""

    to: TargetConfig
    share: float
    budget: MirrorBudgetConfig
    timeout: DurationValue | None = None  # a shadow's whole call; then it is cancelled
    concurrency: int | None = None  # shadows in flight at once; more are skipped


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A public model alias: a list of `targets`, or `provider` + `model` for just one."""

    targets: list[TargetConfig] | None = None
    provider: str | None = None
    model: str | None = None
    timeouts: TimeoutsConfig | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    price: PriceConfig | list[PriceConfig] | None = None
    supports: SupportsConfig | None = None
    unsupported_params: Literal["reject", "drop"] | None = None
    strategy: Strategy | None = None
    attempts: int | None = None
    fallbacks: list[str] | None = None
    context_window_fallbacks: list[str] | None = None
    content_policy_fallbacks: list[str] | None = None
    fallbacks_included: bool | None = None
    hedge_after: DurationValue | None = None
    stream_resume: bool | None = None
    limits: LimitsConfig | None = None
    mirror: MirrorConfig | None = None


class RetriesConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    attempts: int | None = None
    backoff_base: DurationValue | None = None
    backoff_max: DurationValue | None = None
    max_retry_after: DurationValue | None = None
    budget_ratio: float | None = None
    budget_per_second: float | None = None
    budget_window: DurationValue | None = None


class BreakerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    consecutive_failures: int | None = None
    error_rate: float | None = None
    min_requests: int | None = None
    window: DurationValue | None = None
    open_for: DurationValue | None = None
    max_open_for: DurationValue | None = None
    half_open_probes: int | None = None
    close_after: int | None = None


class RoutingConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Routing defaults for every alias, and the gateway-wide retry budget and breakers."""

    strategy: Strategy | None = None
    retries: RetriesConfig | None = None
    breaker: BreakerConfig | None = None
    stream_resume: bool | None = None
    hedge_after: DurationValue | None = None
    health_check_interval: DurationValue | None = None
    moderation_model: str | None = None  # the alias a /v1/moderations request without `model` uses


class HttpLimitsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Bounds on what a client may send, enforced before anything is authenticated."""

    max_request_line: SizeValue | None = None
    max_header_bytes: SizeValue | None = None
    max_headers: int | None = None
    header_timeout: DurationValue | None = None
    body_timeout: DurationValue | None = None
    body_min_rate: SizeValue | None = None  # bytes per second: 16KiB or 16KiB/s


class OverloadConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Admission control per instance (server.overload)."""

    enabled: bool | None = None
    initial_limit: int | None = None
    min_limit: int | None = None
    max_limit: int | None = None
    tolerance: float | None = None
    window: DurationValue | None = None
    queue_ratio: float | None = None
    queue_timeout: DurationValue | None = None
    retry_after: DurationValue | None = None
    standard_share: float | None = None
    batch_share: float | None = None
    default_priority: Literal["critical", "standard", "batch"] | None = None


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str = "127.0.0.1"
    port: int = 4000
    max_request_bytes: SizeValue = "32MiB"
    shutdown_grace: DurationValue = "30s"
    drain_delay: DurationValue = 0
    access_log: bool = False
    trusted_proxies: list[str] | None = None  # CIDRs of the proxies whose forwarded header is believed
    forwarded_header: Literal["x-forwarded-for", "forwarded"] | None = None
    limits: HttpLimitsConfig | None = None
    overload: OverloadConfig | None = None


class FailedAttemptsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Failed authentications allowed from one client address per window (0: no limit)."""

    limit: int | None = None
    window: DurationValue | None = None


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    master_key: str | None = None
    key_hash_secret: str | None = None
    failed_attempts: FailedAttemptsConfig | None = None


class WebhookConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    url: str  # http(s)://... where budget alerts are POSTed
    secret: str  # a secret reference (env:NAME, file:PATH): the key alerts are signed with
    events: list[Literal["budget.soft_limit", "budget.exhausted"]] | None = None  # default: both


class AlertsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    webhooks: list[WebhookConfig] | None = None
    # networks (CIDR) a webhook may resolve to although they are private, loopback or link-local
    allow_private: list[str] | None = None
    attempts: int = 8  # deliveries tried before an alert is given up
    backoff: DurationValue = "1s"  # the first retry's delay; doubled each time, with jitter
    max_backoff: DurationValue = "10m"
    timeout: DurationValue = "10s"  # one delivery's connect-to-answer time
    queue: int = 10_000  # alerts waiting at most; beyond, new ones are dropped (and audited)


class SpendConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # a deployment whose model has no price: refused when the configuration is loaded (`reject`),
    # or served with its requests recorded as `cost_unknown` (`record`)
    unknown_prices: Literal["reject", "record"] | None = None
    alerts: AlertsConfig | None = None  # budget alerts delivered to webhooks


GatedAction = Literal[
    "delete_team", "revoke_team_keys", "change_admin_role", "remove_provider", "start_game_day"
]


class GovernanceConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # admin actions that take effect only when a second admin approves them
    two_person_rule: list[GatedAction] | None = None
    approval_ttl: DurationValue = "24h"  # how long a pending action waits for its approval
    # revoking a team's keys one by one: this many within `piecewise_window` revoke at once, the
    # next needs a second admin (as `revoke_team_keys` does), as does its last owner/admin key
    piecewise_revocations: int = 5
    piecewise_window: DurationValue = "1h"


class OidcConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    issuer: str  # https://login.example.com/realms/main: discovery is read from its /.well-known
    client_id: str
    client_secret: str | None = None  # env:NAME or file:PATH; none: a public client (PKCE alone)
    scopes: list[str] | None = None  # None: openid email profile
    allow_signup: bool = False  # create a user (role viewer) for a verified email no user has
    clock_skew: DurationValue = "60s"  # how far the ID token's times may be off turnout's clock


class ConsoleConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool = True
    path: str = "/ui"  # where the console is served: one or more path segments
    session_ttl: DurationValue = "8h"
    oidc: OidcConfig | None = None  # single sign-on through an OpenID Connect provider


class StorageConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    data_dir: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    database_timeout: str | float | None = None
    ledger_retention_days: int | None = None
    hourly_totals_retention_days: int | None = None  # None: 90
    reservation_lapse: DurationValue | None = None
    reconcile_interval: DurationValue | None = None


class RequestLogsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    log_by_default: bool = False  # log every key that has no setting of its own (nor its team)
    retention_days: int = 30
    max_entry_bytes: int = 65536  # of the request, and of the answer, each
    queue_limit: int = 10000  # entries waiting to be written; past it new ones are dropped (counted)
    redact: list[str] | None = None  # regular expressions whose matches are replaced by [redacted]


class MetricsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool = True
    key: str | None = None  # a secret reference: a bearer token that may read /metrics only
    listen: str | None = None  # host:port of a second listener serving /metrics without a key
    team_label: bool = False


class TracingConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    otlp_endpoint: str | None = None  # OTLP over HTTP (protobuf): http(s)://collector:4318/v1/traces
    otlp_protocol: Literal["http", "grpc"] | None = None  # None: http; grpc: http(s)://collector:4317
    headers: dict[str, str] | None = None  # sent with each export (credentials as secret references)
    service_name: str = "turnout"
    sample_ratio: float = 1.0
    capture_content: bool = False  # prompts and answers in spans (redacted)


class DefaultsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    timeouts: TimeoutsConfig | None = None


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "auth": AuthConfig,
    "storage": StorageConfig,
    "defaults": DefaultsConfig,
    "routing": RoutingConfig,
    "spend": SpendConfig,
    "governance": GovernanceConfig,
    "request_logs": RequestLogsConfig,
    "console": ConsoleConfig,
    "metrics": MetricsConfig,
    "tracing": TracingConfig,
    "providers": dict[str, Any],
    "models": dict[str, Any],
}
