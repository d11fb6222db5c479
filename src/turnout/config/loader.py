"""Second stage of configuration: YAML (or the environment) → checked, resolved, frozen `Settings`.

Every problem is reported with the dotted path of the value at fault and, where one helps, a hint:
`models.gpt-4o.targets[1].provider: unknown provider 'opneai' (known: azure-east, openai)`.
All problems are collected before failing, so one run shows them all.

The providers a configuration may name are passed in (`providers`: each wire format's record, from
`turnout.providers.registry.PROVIDERS`): config sits below providers, so the loader reads their
kinds and the blocks they own through `DescribesConfig` rather than importing them;
`turnout.providers.config_loader` binds the two for everyone who loads a configuration.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import SplitResult, urlsplit

import msgspec
import yaml

from turnout.config import schema
from turnout.config.env_defaults import config_from_environment
from turnout.config.key_strength import HOW_TO_GENERATE, weakness
from turnout.config.prices import model_price, shipped_prices
from turnout.config.problems import NON_STRING_KEY, describe, every_problem, key_hint
from turnout.config.provider_kinds import ProviderKind, kinds_by_name
from turnout.config.provider_sections import DescribesConfig, SectionInput, SectionResult
from turnout.config.proxies import NO_PROXY_VALUE, ProxyError, from_environment, parse_proxy
from turnout.config.request_logs import request_log_settings
from turnout.config.secrets import REFERENCE_HINT, Secret, SecretError, is_reference, resolve
from turnout.config.settings import (
    ALERT_EVENTS,
    MIRROR_CONCURRENCY,
    MIRROR_TIMEOUT,
    AlertSettings,
    AuthSettings,
    BreakerSettings,
    ConsoleSettings,
    FailedAttemptSettings,
    GovernanceSettings,
    HttpLimits,
    MetricsSettings,
    MirrorSettings,
    ModelSettings,
    OidcSettings,
    OverloadSettings,
    ProviderSettings,
    ProxySettings,
    RetrySettings,
    RoutingSettings,
    ServerSettings,
    Settings,
    SpendSettings,
    StorageSettings,
    TargetSettings,
    Timeouts,
    TracingSettings,
    Webhook,
)
from turnout.config.units import parse_delay, parse_duration, parse_rate, parse_size
from turnout.domain.amounts import usd
from turnout.domain.errors import TurnoutError
from turnout.domain.pricing import MEDIA_CAPABILITIES, ModelPrice
from turnout.domain.rate_limits import RateLimits

T = TypeVar("T")

_ALIAS = re.compile(r"^[^\s*]+\*?$|^\*$")
_DEPLOYMENT_NAME = re.compile(r"^[\x21-\x2b\x2d-\x7e]{1,128}$")
CONSOLE_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
OIDC_SCOPE = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]{1,100}")  # RFC 6749 3.3
MAX_CLOCK_SKEW = 300.0  # seconds an ID token's times may be off (console.oidc.clock_skew)
# the first path segments the gateway serves itself: the console cannot be put under them
RESERVED_PATHS = frozenset(
    {
        "v1",
        "admin",
        "health",
        "openapi.json",
        "chat",
        "embeddings",
        "images",
        "audio",
        "rerank",
        "moderations",
        "models",
        "messages",
        "responses",
        "passthrough",
    }
)
# the wire formats whose rerank API turnout calls (the fake upstream answers in OpenAI's format)
RERANK_WIRES = frozenset({"cohere", "bedrock", "openai", "fake"})
MODERATION_WIRES = frozenset({"openai", "fake"})
_PROVIDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PASSTHROUGH_PREFIX = re.compile(r"^(/[A-Za-z0-9_.~:@-]+)+/?$")
_CREDENTIAL_HEADER = re.compile(r"(?i)auth|key|token|secret|password|cookie|credential|signature")
# Floors for server.limits: below them ordinary clients are refused (the official SDKs send about
# 20 header fields and 600 bytes of head; a typo such as `64` for `64KiB` would refuse them all).
MIN_REQUEST_LINE = 256
MIN_HEADER_BYTES = 1024
MIN_HEADERS = 32
MAX_RETENTION_DAYS = 36_500  # a hundred years: more is a typo
# hour cells are kept longer than any budget window that is not `never` reaches back
# (storage.rollups.RECENT_QUARTERS), so budgets stay exact to the quarter-hour
MIN_HOUR_TOTALS_DAYS = 35


class ConfigError(Exception):
    """The configuration cannot be used. `problems` holds one line per fault, each with its path."""

    def __init__(self, problems: list[str], source: str) -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))

    def render(self) -> str:
        lines = [f"configuration {self.source} has {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys instead of silently keeping the last one."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def default_config_path(environ: Mapping[str, str]) -> Path | None:
    value = environ.get("TURNOUT_CONFIG")
    return Path(value) if value else None


def read_config_file(path: Path) -> object:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"cannot read the file: {error.strerror}"], source) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError([f"{where}invalid YAML ({problem})"], source) from None
    return {} if data is None else data


def load_settings(
    path: Path | None, environ: Mapping[str, str] | None, *, providers: Sequence[DescribesConfig]
) -> Settings:
    """Read `path` (or, without one, configure providers from the standard environment variables)."""
    env = os.environ if environ is None else environ
    if path is not None:
        return build_settings(read_config_file(path), env, source=str(path), providers=providers)
    kinds = [k for p in providers for k in p.kinds]
    return build_settings(config_from_environment(env, kinds), env, source="environment", providers=providers)


def build_settings(
    data: object, environ: Mapping[str, str], *, source: str, providers: Sequence[DescribesConfig]
) -> Settings:
    return _Builder(environ, source, providers).build(data)


class _Builder:
    def __init__(self, environ: Mapping[str, str], source: str, providers: Sequence[DescribesConfig]) -> None:
        self.environ = environ
        self.source = source
        self.kinds = kinds_by_name(k for p in providers for k in p.kinds)
        self.sections = tuple(s for p in providers for s in p.sections)
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.unverified_prices: list[str] = []  # deployments billed at figures no page backed
        self.spend = SpendSettings()

    # ------------------------------------------------------------------ helpers

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    def convert(self, data: object, typ: type[T], path: str) -> T | None:
        try:
            return msgspec.convert(data, typ)
        except msgspec.ValidationError as error:
            found = every_problem(data, typ, path) or [describe(error, typ, path, data)]
            for where, message in found:
                self.problem(where, message)
            return None

    def section(self, data: dict[str, Any], name: str, default: T) -> T:
        """One top-level section, checked on its own; its default when absent, empty or broken."""
        raw = data.get(name)
        if raw is None:
            return default
        converted: Any = self.convert(raw, schema.SECTIONS[name], name)
        return default if converted is None else cast(T, converted)

    def unit(self, value: object, parse: Callable[[object], T], path: str, default: T) -> T:
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError as error:
            self.problem(path, str(error))
            return default

    def secret(self, value: str | None, path: str) -> Secret | None:
        if value is None:
            return None
        try:
            return resolve(value, self.environ)
        except SecretError as error:
            self.problem(path, str(error))
            return None

    def timeouts(self, cfg: schema.TimeoutsConfig | None, base: Timeouts, path: str) -> Timeouts:
        """`base` overridden by what `cfg` writes. Inherited phases longer than a written `total`
        are shortened to it; only values written here are checked against each other."""
        if cfg is None:
            return base
        total = self.unit(cfg.total, parse_duration, f"{path}.total", base.total)
        phases = {}
        for phase in ("connect", "first_byte", "idle"):
            written = getattr(cfg, phase)
            value = self.unit(written, parse_duration, f"{path}.{phase}", getattr(base, phase))
            if value > total:
                if written is not None:
                    self.problem(f"{path}.{phase}", f"{value:g}s is longer than total ({total:g}s)")
                value = total
            phases[phase] = value
        return Timeouts(total=total, **phases)

    # ------------------------------------------------------------------ the document

    def build(self, data: object) -> Settings:
        if not isinstance(data, dict):
            raise ConfigError(
                ["the top level must be a mapping of sections (server, providers, models ...)"], self.source
            )
        self.top_level(data)
        server_cfg = self.section(data, "server", schema.ServerConfig())
        auth_cfg = self.section(data, "auth", schema.AuthConfig())
        storage_cfg = self.section(data, "storage", schema.StorageConfig())
        defaults_cfg = self.section(data, "defaults", schema.DefaultsConfig())
        declared_providers: dict[str, Any] = self.section(data, "providers", {})
        declared_models: dict[str, Any] = self.section(data, "models", {})
        routing = self.routing(self.section(data, "routing", schema.RoutingConfig()))
        spend_cfg = self.section(data, "spend", schema.SpendConfig())
        self.spend = SpendSettings(
            unknown_prices=spend_cfg.unknown_prices or "reject", alerts=self.alerts(spend_cfg.alerts)
        )
        governance = self.governance(self.section(data, "governance", schema.GovernanceConfig()))
        request_logs = request_log_settings(
            self.section(data, "request_logs", schema.RequestLogsConfig()), self.problem
        )
        console = self.console(self.section(data, "console", schema.ConsoleConfig()))
        metrics = self.metrics(self.section(data, "metrics", schema.MetricsConfig()))
        tracing = self.tracing(self.section(data, "tracing", schema.TracingConfig()))
        defaults = self.timeouts(defaults_cfg.timeouts, Timeouts(), "defaults.timeouts")
        server = self.server(server_cfg)
        auth = AuthSettings(
            master_key=self.master_key(auth_cfg),
            key_hash_secret=self.hash_secret(auth_cfg),
            failed_attempts=self.failed_attempts(auth_cfg.failed_attempts),
        )
        storage = self.storage(storage_cfg)
        providers = {
            name: p
            for name, raw in declared_providers.items()
            if (p := self.provider(str(name), raw, defaults)) is not None
        }
        models = {
            alias: m
            for alias, raw in declared_models.items()
            if (m := self.model(str(alias), raw, providers, declared_providers, routing)) is not None
        }
        self.check_fallbacks(models, declared_models)
        self.check_moderation_model(routing, models)
        if self.problems:
            raise ConfigError(self.problems, self.source)
        if self.unverified_prices:
            named = sorted(set(self.unverified_prices))
            shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
            self.warnings.append(
                f"{len(named)} deployment(s) are billed at shipped prices that no provider page "
                f"available to turnout backed ({shown}): check them against your provider's price "
                "list and set `price:` where they differ (docs/spend.md)"
            )
        if not models:
            self.warnings.append(
                "no models are configured: every request will get 404 model_not_found "
                "(set OPENAI_API_KEY or another provider's key, or write a config file)"
            )
        return Settings(
            server=server,
            auth=auth,
            storage=storage,
            providers=providers,
            models=models,
            routing=routing,
            spend=self.spend,
            governance=governance,
            request_logs=request_logs,
            console=console,
            metrics=metrics,
            tracing=tracing,
            source=self.source,
            warnings=tuple(self.warnings),
        )

    def top_level(self, data: dict[Any, Any]) -> None:
        """Report keys that name no section; the sections are then checked all the same."""
        known = list(schema.SECTIONS)
        for key in data:
            if not isinstance(key, str):
                self.problem("(top level)", NON_STRING_KEY)
            elif key not in schema.SECTIONS:
                self.problem(key, f"unknown key ({key_hint(key, known)})")

    def alerts(self, cfg: schema.AlertsConfig | None) -> AlertSettings:
        """spend.alerts: webhooks (an http(s) URL and a secret each), how deliveries are retried."""
        if cfg is None:
            return AlertSettings()
        base, path = AlertSettings(), "spend.alerts"
        webhooks = []
        for i, hook in enumerate(cfg.webhooks or []):
            parts = urlsplit(hook.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                self.problem(
                    f"{path}.webhooks[{i}].url", f"must be an http:// or https:// URL, got {hook.url!r}"
                )
                continue
            secret = self.secret(hook.secret, f"{path}.webhooks[{i}].secret")
            if secret is None:
                continue
            events = frozenset(hook.events) if hook.events else frozenset(ALERT_EVENTS)
            webhooks.append(Webhook(hook.url, secret, events))
        for name, value in (("attempts", cfg.attempts), ("queue", cfg.queue)):
            if value < 1:
                self.problem(f"{path}.{name}", "must be at least 1")
        backoff = self.unit(cfg.backoff, parse_duration, f"{path}.backoff", base.backoff)
        most = self.unit(cfg.max_backoff, parse_duration, f"{path}.max_backoff", base.max_backoff)
        if most < backoff:
            self.problem(f"{path}.max_backoff", f"must be at least backoff ({backoff:g}s)")
        return AlertSettings(
            webhooks=tuple(webhooks),
            allow_private=self.networks(cfg.allow_private or [], f"{path}.allow_private"),
            attempts=max(1, cfg.attempts),
            backoff=backoff,
            max_backoff=max(most, backoff),
            timeout=self.unit(cfg.timeout, parse_duration, f"{path}.timeout", base.timeout),
            queue=max(1, cfg.queue),
        )

    def governance(self, cfg: schema.GovernanceConfig) -> GovernanceSettings:
        gated = GovernanceSettings().two_person_rule if cfg.two_person_rule is None else cfg.two_person_rule
        try:
            ttl = parse_duration(cfg.approval_ttl)
        except ValueError as error:
            self.problem("governance.approval_ttl", str(error))
            ttl = GovernanceSettings().approval_ttl
        defaults = GovernanceSettings()
        window = defaults.piecewise_window
        try:
            window = parse_duration(cfg.piecewise_window)
        except ValueError as error:
            self.problem("governance.piecewise_window", str(error))
        if cfg.piecewise_revocations < 1:
            self.problem("governance.piecewise_revocations", "must be at least 1")
        return GovernanceSettings(
            two_person_rule=frozenset(gated),
            approval_ttl=ttl,
            piecewise_revocations=max(1, cfg.piecewise_revocations),
            piecewise_window=window,
        )

    def console(self, cfg: schema.ConsoleConfig) -> ConsoleSettings:
        path = "/" + cfg.path.strip("/")
        segments = path[1:].split("/")
        if not all(CONSOLE_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments):
            self.problem(
                "console.path", f"must be a path such as /ui (letters, digits, - _ .), got {cfg.path!r}"
            )
        elif path.split("/")[1] in RESERVED_PATHS:
            self.problem("console.path", f"{path} is the gateway's own (under /{path.split('/')[1]})")
        ttl = self.unit(cfg.session_ttl, parse_duration, "console.session_ttl", ConsoleSettings().session_ttl)
        oidc = None if cfg.oidc is None else self.oidc(cfg.oidc)
        if oidc is not None and not cfg.enabled:
            self.problem("console.oidc", "the console is disabled (console.enabled: false): remove it")
        return ConsoleSettings(enabled=cfg.enabled, path=path, session_ttl=ttl, oidc=oidc)

    def oidc(self, cfg: schema.OidcConfig) -> OidcSettings:
        """Single sign-on: an issuer reached over https (http only on this machine's loopback, for
        a test provider), the scopes that bring a verified email, a secret from env: or file:."""
        issuer = urlsplit(cfg.issuer)
        local = issuer.hostname in ("127.0.0.1", "::1", "localhost")
        if not issuer.hostname or issuer.query or issuer.fragment or issuer.username:
            self.problem("console.oidc.issuer", f"must be the provider's issuer URL, got {cfg.issuer!r}")
        elif issuer.scheme != "https" and not (issuer.scheme == "http" and local):
            self.problem("console.oidc.issuer", "must be an https:// URL (http:// only on the loopback)")
        if not cfg.client_id.strip() or len(cfg.client_id) > 255:
            self.problem(
                "console.oidc.client_id", "must be the client id the provider gave (1-255 characters)"
            )
        secret = self.secret(cfg.client_secret, "console.oidc.client_secret")
        scopes = ("openid", "email", "profile") if cfg.scopes is None else tuple(cfg.scopes)
        if not all(OIDC_SCOPE.fullmatch(s) for s in scopes) or len(scopes) > 20:
            self.problem("console.oidc.scopes", "must be at most 20 scope names (no spaces or quotes)")
        missing = [s for s in ("openid", "email") if s not in scopes]
        if missing:
            self.problem(
                "console.oidc.scopes",
                f"must include {' and '.join(missing)}: a person is known by their verified email",
            )
        skew = self.unit(cfg.clock_skew, parse_duration, "console.oidc.clock_skew", 60.0)
        if skew > MAX_CLOCK_SKEW:
            self.problem("console.oidc.clock_skew", f"must be at most {MAX_CLOCK_SKEW:g}s, got {skew:g}s")
        return OidcSettings(
            issuer=cfg.issuer,
            client_id=cfg.client_id.strip(),
            client_secret=secret,
            scopes=scopes,
            allow_signup=cfg.allow_signup,
            clock_skew=min(skew, MAX_CLOCK_SKEW),
        )

    def metrics(self, cfg: schema.MetricsConfig) -> MetricsSettings:
        key = self.secret(cfg.key, "metrics.key")
        why = None if key is None else weakness(key.reveal())
        if key is not None and why is not None:
            self.problem("metrics.key", f"the metrics key from {key.source} {why}; {HOW_TO_GENERATE}")
            key = None
        if key is not None and not cfg.enabled:
            self.problem("metrics.key", "metrics are disabled (metrics.enabled: false): remove the key")
        listen = None if cfg.listen is None else self.listen_address(cfg.listen, "metrics.listen")
        if listen is not None and not cfg.enabled:
            self.problem("metrics.listen", "metrics are disabled (metrics.enabled: false): remove it")
        return MetricsSettings(enabled=cfg.enabled, key=key, team_label=cfg.team_label, listen=listen)

    def listen_address(self, written: str, path: str) -> tuple[str, int] | None:
        """`host:port` (`[::1]:9464` for IPv6; port 0: any free one)."""
        host, _, port = written.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            self.problem(path, f"must be host:port (e.g. 127.0.0.1:9464), got {written!r}")
            return None
        return host, int(port)

    def tracing(self, cfg: schema.TracingConfig) -> TracingSettings:
        endpoint = cfg.otlp_endpoint
        protocol = cfg.otlp_protocol or "http"
        if endpoint is not None:
            self.otlp_endpoint(endpoint, protocol)
        elif cfg.headers or cfg.capture_content or cfg.otlp_protocol is not None:
            self.problem("tracing", "takes effect only with tracing.otlp_endpoint (set it, or remove this)")
        if not 0.0 <= cfg.sample_ratio <= 1.0:
            self.problem("tracing.sample_ratio", f"must be from 0 to 1, got {cfg.sample_ratio:g}")
        return TracingSettings(
            otlp_endpoint=endpoint,
            otlp_protocol=protocol,
            headers=self.provider_headers(cfg.headers or {}, "tracing"),
            service_name=cfg.service_name,
            sample_ratio=min(1.0, max(0.0, cfg.sample_ratio)),
            capture_content=cfg.capture_content,
        )

    def otlp_endpoint(self, endpoint: str, protocol: str) -> None:
        """An OTLP endpoint: an http(s) URL without credentials; for gRPC a host and port only
        (`http://` without TLS, `https://` with it); the protocol's exporter installed."""
        parts = urlsplit(endpoint)
        wire = "OTLP over gRPC" if protocol == "grpc" else "OTLP over HTTP"
        exporter = f"opentelemetry.exporter.otlp.proto.{protocol}"
        extra = "tracing-grpc" if protocol == "grpc" else "tracing"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.problem("tracing.otlp_endpoint", f"must be an http:// or https:// URL ({wire})")
        elif parts.username or parts.password or parts.query:
            self.problem(
                "tracing.otlp_endpoint",
                f"must not hold credentials; put them in tracing.headers ({REFERENCE_HINT})",
            )
        elif protocol == "grpc" and parts.path not in ("", "/"):
            self.problem(
                "tracing.otlp_endpoint",
                f"gRPC takes a host and port only (http://collector:4317), not a path ('{parts.path}')",
            )
        elif not (_installed("opentelemetry.sdk") and _installed(exporter)):
            self.problem(
                "tracing.otlp_endpoint",
                f"traces over {wire} need OpenTelemetry's SDK and exporter, which are not installed: "
                f"pip install 'turnout[{extra}]'",
            )

    def server(self, cfg: schema.ServerConfig) -> ServerSettings:
        if not 0 <= cfg.port < 65536:
            self.problem("server.port", f"must be between 0 (any free port) and 65535, got {cfg.port}")
        return ServerSettings(
            host=cfg.host,
            port=cfg.port,
            max_request_bytes=self.unit(
                cfg.max_request_bytes, parse_size, "server.max_request_bytes", 32 * 1024 * 1024
            ),
            shutdown_grace=self.unit(cfg.shutdown_grace, parse_duration, "server.shutdown_grace", 30.0),
            drain_delay=self.unit(cfg.drain_delay, parse_delay, "server.drain_delay", 0.0),
            access_log=cfg.access_log,
            trusted_proxies=self.networks(cfg.trusted_proxies or [], "server.trusted_proxies"),
            forwarded_header=cfg.forwarded_header or "x-forwarded-for",
            limits=self.http_limits(cfg.limits),
            overload=self.overload(cfg.overload),
        )

    def overload(self, cfg: schema.OverloadConfig | None) -> OverloadSettings:
        base = OverloadSettings()
        if cfg is None:
            return base
        path = "server.overload"
        low = base.min_limit if cfg.min_limit is None else cfg.min_limit
        high = base.max_limit if cfg.max_limit is None else cfg.max_limit
        initial = min(max(base.initial_limit, low), high) if cfg.initial_limit is None else cfg.initial_limit
        if low < 1:
            self.problem(f"{path}.min_limit", f"must be at least 1, got {low}")
        if not low <= initial <= high:
            self.problem(
                f"{path}.initial_limit",
                f"must be between min_limit ({low}) and max_limit ({high}), got {initial}",
            )
        numbers = {
            "tolerance": (cfg.tolerance, base.tolerance, 1.0, 10.0),
            "queue_ratio": (cfg.queue_ratio, base.queue_ratio, 0.0, 10.0),
            "standard_share": (cfg.standard_share, base.standard_share, 0.05, 1.0),
            "batch_share": (cfg.batch_share, base.batch_share, 0.05, 1.0),
        }
        chosen: dict[str, float] = {}
        for name, (value, default, least, most) in numbers.items():
            chosen[name] = default if value is None else float(value)
            if not least <= chosen[name] <= most:
                self.problem(
                    f"{path}.{name}", f"must be between {least:g} and {most:g}, got {chosen[name]:g}"
                )
        if chosen["batch_share"] > chosen["standard_share"]:
            self.problem(f"{path}.batch_share", "must not be more than standard_share (batch is shed first)")
        window = self.unit(cfg.window, parse_duration, f"{path}.window", base.window)
        retry_after = self.unit(
            cfg.retry_after, parse_duration, f"{path}.retry_after", float(base.retry_after)
        )
        return OverloadSettings(
            enabled=base.enabled if cfg.enabled is None else cfg.enabled,
            initial_limit=initial,
            min_limit=low,
            max_limit=high,
            tolerance=chosen["tolerance"],
            window=window,
            queue_ratio=chosen["queue_ratio"],
            queue_timeout=self.unit(
                cfg.queue_timeout, parse_delay, f"{path}.queue_timeout", base.queue_timeout
            ),
            retry_after=max(1, round(retry_after)),
            standard_share=chosen["standard_share"],
            batch_share=chosen["batch_share"],
            default_priority=cfg.default_priority or base.default_priority,
        )

    def http_limits(self, cfg: schema.HttpLimitsConfig | None) -> HttpLimits:
        base = HttpLimits()
        if cfg is None:
            return base
        path = "server.limits"
        line = self.unit(cfg.max_request_line, parse_size, f"{path}.max_request_line", base.max_request_line)
        head = self.unit(cfg.max_header_bytes, parse_size, f"{path}.max_header_bytes", base.max_header_bytes)
        if line < MIN_REQUEST_LINE:
            self.problem(f"{path}.max_request_line", f"must be at least {MIN_REQUEST_LINE} bytes, got {line}")
        if head < MIN_HEADER_BYTES:
            self.problem(f"{path}.max_header_bytes", f"must be at least {MIN_HEADER_BYTES} bytes, got {head}")
        elif line > head:
            self.problem(
                f"{path}.max_request_line",
                f"{line} bytes is more than max_header_bytes ({head}), which the request line counts in",
            )
        headers = base.max_headers if cfg.max_headers is None else cfg.max_headers
        if headers < MIN_HEADERS:
            self.problem(
                f"{path}.max_headers",
                f"must be at least {MIN_HEADERS} (the official SDKs send about 20), got {headers}",
            )
        return HttpLimits(
            max_request_line=line,
            max_header_bytes=head,
            max_headers=headers,
            header_timeout=self.unit(
                cfg.header_timeout, parse_duration, f"{path}.header_timeout", base.header_timeout
            ),
            body_timeout=self.unit(
                cfg.body_timeout, parse_duration, f"{path}.body_timeout", base.body_timeout
            ),
            body_min_rate=self.unit(
                cfg.body_min_rate, parse_rate, f"{path}.body_min_rate", base.body_min_rate
            ),
        )

    def networks(self, written: list[str], path: str) -> tuple[IPv4Network | IPv6Network, ...]:
        """CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`) or single addresses."""
        networks = []
        for i, value in enumerate(written):
            try:
                networks.append(ip_network(value.strip()))
            except ValueError as error:
                self.problem(f"{path}[{i}]", f"not an IP network in CIDR notation ({error})")
        return tuple(networks)

    def failed_attempts(self, cfg: schema.FailedAttemptsConfig | None) -> FailedAttemptSettings:
        base = FailedAttemptSettings()
        if cfg is None:
            return base
        limit = base.limit if cfg.limit is None else cfg.limit
        if limit < 0:
            self.problem("auth.failed_attempts.limit", f"must be 0 (no limit) or more, got {limit}")
            limit = base.limit
        window = self.unit(cfg.window, parse_duration, "auth.failed_attempts.window", base.window)
        return FailedAttemptSettings(limit=limit, window=window)

    def master_key(self, cfg: schema.AuthConfig) -> Secret | None:
        """The configured master key, refused unless strong (`key_strength`): it can do anything."""
        if cfg.master_key is not None:
            key = self.secret(cfg.master_key, "auth.master_key")
        elif self.environ.get("TURNOUT_MASTER_KEY"):
            key = self.secret("env:TURNOUT_MASTER_KEY", "auth.master_key")
        else:
            return None
        why = None if key is None else weakness(key.reveal())
        if key is not None and why is not None:
            self.problem("auth.master_key", f"the master key from {key.source} {why}; {HOW_TO_GENERATE}")
            return None
        return key

    def hash_secret(self, cfg: schema.AuthConfig) -> Secret | None:
        if cfg.key_hash_secret is not None:
            return self.secret(cfg.key_hash_secret, "auth.key_hash_secret")
        if self.environ.get("TURNOUT_KEY_HASH_SECRET"):
            return self.secret("env:TURNOUT_KEY_HASH_SECRET", "auth.key_hash_secret")
        return None

    def storage(self, cfg: schema.StorageConfig) -> StorageSettings:
        if cfg.data_dir:
            data_dir = Path(cfg.data_dir).expanduser()
        elif self.environ.get("TURNOUT_DATA_DIR"):
            data_dir = Path(self.environ["TURNOUT_DATA_DIR"]).expanduser()
        else:
            xdg = self.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
            data_dir = Path(xdg) / "turnout"
        url = self.server_url(cfg.database_url, "storage.database_url", "DATABASE_URL")
        if url is None:
            url = f"sqlite+aiosqlite:///{data_dir / 'turnout.db'}"
        redis_url = self.server_url(cfg.redis_url, "storage.redis_url", "REDIS_URL")
        if redis_url is not None and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
            self.problem("storage.redis_url", "must be a redis://, rediss:// or unix:// URL")
        retention = cfg.ledger_retention_days
        if retention is not None and not 1 <= retention <= MAX_RETENTION_DAYS:
            self.problem(
                "storage.ledger_retention_days",
                f"must be a number of days from 1 to {MAX_RETENTION_DAYS} (leave it out to keep every row)",
            )
        hours = cfg.hourly_totals_retention_days
        if hours is not None and not MIN_HOUR_TOTALS_DAYS <= hours <= MAX_RETENTION_DAYS:
            self.problem(
                "storage.hourly_totals_retention_days",
                f"must be a number of days from {MIN_HOUR_TOTALS_DAYS} (longer than any budget "
                f"window) to {MAX_RETENTION_DAYS}, got {hours}",
            )
        timeout = self.unit(cfg.database_timeout, parse_duration, "storage.database_timeout", 2.0)
        base = StorageSettings(data_dir=data_dir, database_url=url)
        timing = {}
        for name in ("reservation_lapse", "reconcile_interval"):
            written = getattr(cfg, name)
            path = f"storage.{name}"
            if written is not None and redis_url is None:
                self.problem(path, "takes effect only with storage.redis_url (set it, or remove this)")
            value = self.unit(written, parse_duration, path, getattr(base, name))
            if value < 1.0:
                self.problem(path, "must be at least 1s")
            timing[name] = value
        return StorageSettings(
            data_dir=data_dir,
            database_url=url,
            redis_url=redis_url,
            database_timeout=timeout,
            ledger_retention_days=retention,
            hourly_totals_retention_days=90 if hours is None else hours,
            **timing,
        )

    def server_url(self, url: str | None, path: str, variable: str) -> str | None:
        """A server's URL as written, or from the secret it refers to; a password written into the
        file itself is refused (it belongs in a secret)."""
        if url is not None and is_reference(url):
            secret = self.secret(url, path)
            return secret.reveal() if secret else None
        if url is not None and urlsplit(url).password:
            self.problem(path, f"holds a password; {REFERENCE_HINT.replace('OPENAI_API_KEY', variable)}")
        return url

    # ------------------------------------------------------------------ providers

    def provider(self, name: str, raw: object, defaults: Timeouts) -> ProviderSettings | None:
        path = f"providers.{name}"
        if not _PROVIDER_NAME.match(name):
            self.problem(path, "a provider name may hold only letters, digits, '_', '-' and '.'")
            return None
        cfg = self.convert(raw, schema.ProviderConfig, path)
        if cfg is None:
            return None
        kind = self.kinds.get(cfg.type)
        if kind is None:
            self.problem(f"{path}.type", _unknown("provider type", cfg.type, self.kinds))
            return None
        sections = self.provider_sections(cfg, kind, path)
        if sections is None:
            return None
        parts = self.base_url(sections.base_url, kind, path)
        if sections.base_url is None or parts is None:
            return None
        api_key = self.secret(sections.api_key, f"{path}.api_key")
        if cfg.api_key is None and kind.key_required:
            env_hint = f", e.g. env:{kind.api_key_env}" if kind.api_key_env else ""
            self.problem(f"{path}.api_key", f"required for a {kind.title} provider{env_hint}")
        headers = self.provider_headers(cfg.headers or {}, path)
        proxied = sections.proxied
        proxy = self.proxy(cfg.proxy, sections.base_url, f"{path}.proxy") if proxied else None
        owned: dict[str, Any] = {"api_version": None, **sections.settings}  # filled by its blocks
        return ProviderSettings(
            responses_api=self.responses_api(cfg, kind, owned["api_version"], path),
            name=name,
            kind=kind,
            base_url=sections.base_url.rstrip("/"),
            api_key=api_key,
            headers=headers,
            timeouts=self.timeouts(cfg.timeouts, defaults, f"{path}.timeouts"),
            unsupported_params=cfg.unsupported_params or "reject",
            stream_usage=kind.stream_usage if cfg.stream_usage is None else cfg.stream_usage,
            embeddings_base64=kind.embeddings_base64
            if cfg.embeddings_base64 is None
            else cfg.embeddings_base64,
            proxy=proxy,
            tls_ca_file=self.tls_ca_file(cfg.tls_ca_file, parts, path),
            passthrough=self.passthrough(cfg.passthrough, kind, f"{path}.passthrough"),
            **owned,
        )

    def responses_api(
        self, cfg: schema.ProviderConfig, kind: ProviderKind, api_version: str | None, path: str
    ) -> bool:
        """Does the provider take /v1/responses whole: its kind's default (OpenAI's does), or as
        configured for another OpenAI-format service that has the API (vLLM, OpenRouter, Azure's
        v1 API ...)."""
        if cfg.responses_api is None:
            return kind.native_inbound == "responses"
        if cfg.responses_api and kind.wire != "openai":
            self.problem(f"{path}.responses_api", f"only OpenAI-format providers have it, not {kind.name}")
            return False
        if cfg.responses_api and kind.azure_paths and api_version != "v1":
            self.problem(f"{path}.responses_api", "on Azure it needs api_version: v1")
            return False
        return cfg.responses_api

    def passthrough(self, written: list[str] | None, kind: ProviderKind, path: str) -> tuple[str, ...]:
        """The path prefixes a provider's pass-through may reach: each `/segment/...` of plain
        URL characters (no dot segments, no percent-encoding, no query), on kinds whose requests
        carry a fixed credential (not Bedrock's signatures or Vertex AI's service-account tokens)."""
        if not written:
            return ()
        if kind.wire == "bedrock" or kind.name == "vertex":
            self.problem(
                path,
                f"not available for a {kind.title} provider (its requests are signed or carry a "
                "short-lived token each; use the /v1 endpoints)",
            )
            return ()
        prefixes = []
        for i, prefix in enumerate(written):
            if not _PASSTHROUGH_PREFIX.match(prefix) or any(s in (".", "..") for s in prefix.split("/")):
                self.problem(
                    f"{path}[{i}]",
                    f"'{prefix}' is not a path prefix such as /files or /batches (segments of letters, "
                    "digits and - _ . ~ : @, no '..', no query)",
                )
                continue
            prefixes.append(prefix.rstrip("/"))
        return tuple(prefixes)

    def provider_sections(
        self, cfg: schema.ProviderConfig, kind: ProviderKind, path: str
    ) -> SectionResult | None:
        """The URL and key reference of a provider once the blocks its kind owns (`vertex:`,
        `aws:`, `fake:`, `api_version`) are read by their providers; a block written for another
        kind is a problem. None when a block was at fault (each fault reported)."""
        base_url = cfg.base_url
        if base_url is None and kind.base_url_env:
            base_url = self.environ.get(kind.base_url_env) or None
        result = SectionResult(base_url=base_url or kind.default_base_url, api_key=cfg.api_key)
        for section in self.sections:
            if not section.applies(kind):
                if getattr(cfg, section.key) is not None:
                    self.problem(f"{path}.{section.key}", f"{section.refusal}, not {kind.name}")
                continue
            given = SectionInput(
                cfg, kind, result.base_url, path, self.environ, self.problem, self.secret, self.convert
            )
            read = section.read(given)
            if read is None:
                return None
            merged = {**result.settings, **read.settings}
            result = SectionResult(read.base_url, read.api_key, merged, result.proxied and read.proxied)
        return result

    def base_url(self, base_url: str | None, kind: ProviderKind, path: str) -> SplitResult | None:
        """The parts of a provider's URL, or None after reporting why it cannot be used."""
        if base_url is None:
            env_hint = f" (or set {kind.base_url_env})" if kind.base_url_env else ""
            self.problem(f"{path}.base_url", f"required for a {kind.title} provider{env_hint}")
            return None
        try:
            parts = urlsplit(base_url)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            parts, port_ok = urlsplit(""), False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            shown = f"a '{parts.scheme}:' URL" if parts.scheme else "something else"
            self.problem(f"{path}.base_url", f"must be an http:// or https:// URL with a host, got {shown}")
            return None
        if parts.password or parts.query:
            self.problem(
                f"{path}.base_url", "must not hold credentials or a query string; use api_key and api_version"
            )
            return None
        return parts

    def provider_headers(self, written: Mapping[str, str], path: str) -> tuple[tuple[str, str | Secret], ...]:
        """Extra headers sent upstream: credentials only from secret references."""
        headers: list[tuple[str, str | Secret]] = []
        for header, value in written.items():
            if is_reference(value):
                secret = self.secret(value, f"{path}.headers.{header}")
                if secret is not None:
                    headers.append((header, secret))
            elif _CREDENTIAL_HEADER.search(header):
                self.problem(f"{path}.headers.{header}", f"looks like a credential; {REFERENCE_HINT}")
            else:
                headers.append((header, value))
        return tuple(headers)

    def tls_ca_file(self, written: str | None, parts: SplitResult, path: str) -> Path | None:
        if written is None:
            return None
        ca_file = Path(written).expanduser()
        if parts.scheme != "https":
            self.problem(f"{path}.tls_ca_file", "only an https:// base_url uses TLS")
        elif not ca_file.is_file():
            self.problem(f"{path}.tls_ca_file", f"no such file: {ca_file}")
        return ca_file

    def proxy(self, written: str | None, base_url: str, path: str) -> ProxySettings | None:
        """The proxy to reach `base_url` through: written here (`none` for none), else from the
        environment. Credentials in a proxy URL must come from a secret reference."""
        if written == NO_PROXY_VALUE:
            return None
        if written is None:
            url = from_environment(base_url, self.environ)
            where = path + " (from the environment)"
        elif is_reference(written):
            secret = self.secret(written, path)
            url, where = (secret.reveal() if secret else None), path
        elif urlsplit(written if "://" in written else "http://" + written).password:
            self.problem(
                path, f"holds credentials; {REFERENCE_HINT.replace('OPENAI_API_KEY', 'HTTPS_PROXY')}"
            )
            return None
        else:
            url, where = written, path
        if url is None:
            return None
        try:
            host, port, authorization = parse_proxy(url)
        except ProxyError as error:
            self.problem(where, str(error))
            return None
        return ProxySettings(host=host, port=port, authorization=authorization)

    # ------------------------------------------------------------------ models

    def model(
        self,
        alias: str,
        raw: object,
        providers: Mapping[str, ProviderSettings],
        declared: Mapping[str, Any],
        routing: RoutingSettings,
    ) -> ModelSettings | None:
        path = f"models.{alias}"
        if not _ALIAS.match(alias):
            self.problem(path, "an alias has no spaces, and '*' only as its last character (e.g. groq/*)")
            return None
        cfg = self.convert(raw, schema.ModelConfig, path)
        if cfg is None:
            return None
        written = self.written_targets(cfg, path)
        if written is None:
            return None
        targets_cfg, target_path = written
        targets = []
        for i, t in enumerate(targets_cfg):
            tpath = f"{target_path}[{i}]" if target_path else path
            provider = providers.get(t.provider)
            if provider is None:
                if t.provider not in declared:  # a broken provider has been reported already
                    self.problem(f"{tpath}.provider", _unknown("provider", t.provider, declared))
                continue
            if t.model.count("*") > 1:
                self.problem(f"{tpath}.model", "'*' may appear only once in a target's model")
                continue
            if "*" in t.model and not alias.endswith("*"):
                self.problem(
                    f"{tpath}.model", "'*' in a target's model needs a wildcard alias such as 'groq/*'"
                )
                continue
            target = self.target(t, tpath, i, provider)
            if target is not None:
                targets.append(target)
        if len(targets) != len(targets_cfg):
            return None
        names = [t.name for t in targets]
        for i, name in enumerate(names):
            if name in names[:i]:
                self.problem(
                    f"{target_path}[{i}].name" if target_path else path,
                    f"two targets are both called '{name}': give each a distinct 'name'",
                )
                return None
        if cfg.attempts is not None and cfg.attempts < 1:
            self.problem(f"{path}.attempts", f"must be at least 1, got {cfg.attempts}")
        hedge = self.unit(cfg.hedge_after, parse_duration, f"{path}.hedge_after", routing.hedge_after)
        return ModelSettings(
            alias=alias,
            targets=tuple(targets),
            strategy=cfg.strategy or routing.strategy,
            attempts=max(1, cfg.attempts or routing.retries.attempts),
            fallbacks=tuple(cfg.fallbacks or ()),
            context_window_fallbacks=tuple(cfg.context_window_fallbacks or ()),
            content_policy_fallbacks=tuple(cfg.content_policy_fallbacks or ()),
            fallbacks_included=bool(cfg.fallbacks_included),
            hedge_after=hedge,
            stream_resume=routing.stream_resume if cfg.stream_resume is None else cfg.stream_resume,
            limits=self.rate_limits(cfg.limits, f"{path}.limits"),
            mirror=self.mirror(cfg.mirror, f"{path}.mirror", providers, declared),
        )

    def mirror(
        self,
        cfg: schema.MirrorConfig | None,
        path: str,
        providers: Mapping[str, ProviderSettings],
        declared: Mapping[str, Any],
    ) -> MirrorSettings | None:
        """An alias's shadow traffic: its candidate deployment (a target, without what only routing
        among several targets reads), the share of requests, the rehearsal budget."""
        if cfg is None:
            return None
        to, tpath = cfg.to, f"{path}.to"
        routing_only = [f for f in ("weight", "priority", "tags", "rpm", "tpm") if getattr(to, f) is not None]
        for name in routing_only:
            self.problem(f"{tpath}.{name}", "a mirror's candidate is not routed to: it takes no " + name)
        provider = providers.get(to.provider)
        if provider is None:
            if to.provider not in declared:
                self.problem(f"{tpath}.provider", _unknown("provider", to.provider, declared))
            return None
        if "*" in to.model:
            self.problem(f"{tpath}.model", "a mirror's candidate names one model (no '*')")
            return None
        target = self.target(to, tpath, 0, provider)
        if not 0 < cfg.share <= 1:
            self.problem(f"{path}.share", f"must be more than 0 and at most 1, got {cfg.share}")
        try:
            budget = usd(str(cfg.budget.limit), "limit")
        except TurnoutError as error:
            self.problem(f"{path}.budget.limit", error.message.replace("'limit' ", "", 1))
            budget = 0
        timeout = self.unit(cfg.timeout, parse_duration, f"{path}.timeout", MIRROR_TIMEOUT)
        if timeout <= 0:
            self.problem(f"{path}.timeout", "must be more than 0")
        concurrency = self.count(cfg.concurrency, f"{path}.concurrency", MIRROR_CONCURRENCY)
        if target is None or routing_only:
            return None
        return MirrorSettings(
            target=target,
            share=cfg.share,
            budget=budget,
            period=cfg.budget.period,
            timeout=timeout,
            concurrency=concurrency,
        )

    def rate_limits(self, cfg: schema.LimitsConfig | None, path: str) -> RateLimits | None:
        if cfg is None:
            return None
        values = msgspec.structs.asdict(cfg)
        for name, value in values.items():
            if value is not None and value < 1:
                self.problem(f"{path}.{name}", f"must be at least 1, got {value}")
        limits = RateLimits(**{k: v for k, v in values.items() if v is not None and v >= 1})
        return None if limits.empty else limits

    def written_targets(
        self, cfg: schema.ModelConfig, path: str
    ) -> tuple[list[schema.TargetConfig], str] | None:
        """An alias's targets as written: its `targets` list (and the path of that list), or the
        one its `provider` + `model` shorthand gives (and "": its fields sit on the alias)."""
        if cfg.targets is not None:
            shorthand = (
                cfg.provider,
                cfg.model,
                cfg.timeouts,
                cfg.context_window,
                cfg.max_output_tokens,
                cfg.price,
                cfg.supports,
                cfg.unsupported_params,
            )
            if any(v is not None for v in shorthand):
                self.problem(
                    path,
                    "give either 'targets' or 'provider' + 'model', not both",
                )
                return None
            targets_cfg = cfg.targets
            target_path = f"{path}.targets"
        elif cfg.provider is not None and cfg.model is not None:
            targets_cfg = [
                schema.TargetConfig(
                    provider=cfg.provider,
                    model=cfg.model,
                    timeouts=cfg.timeouts,
                    context_window=cfg.context_window,
                    max_output_tokens=cfg.max_output_tokens,
                    price=cfg.price,
                    supports=cfg.supports,
                    unsupported_params=cfg.unsupported_params,
                )
            ]
            target_path = ""
        else:
            missing = "model" if cfg.provider is not None else "provider"
            self.problem(path, f"missing '{missing}' (or give a list of 'targets')")
            return None
        if not targets_cfg:
            self.problem(f"{path}.targets", "needs at least one target")
            return None
        return targets_cfg, target_path

    def target(
        self, t: schema.TargetConfig, path: str, index: int, provider: ProviderSettings
    ) -> TargetSettings | None:
        ok = True
        for field in ("rpm", "tpm", "context_window", "max_output_tokens"):
            value = getattr(t, field)
            if value is not None and value < 1:
                self.problem(f"{path}.{field}", f"must be at least 1, got {value}")
                ok = False
        if t.weight is not None and not (t.weight >= 0 and t.weight < float("inf")):
            self.problem(f"{path}.weight", f"must be zero or more, got {t.weight}")
            ok = False
        price = self.price(t, path, provider)
        if price is False:
            ok = False
        if not self.task_supported(t, path, provider):
            ok = False
        if t.name is not None and not _DEPLOYMENT_NAME.match(t.name):
            self.problem(
                f"{path}.name", "a deployment name is 1-128 printable characters without spaces or ','"
            )
            ok = False
        tags = frozenset(t.tags or ())
        for tag in tags:
            if not _DEPLOYMENT_NAME.match(tag):
                self.problem(
                    f"{path}.tags", f"a tag is 1-128 printable characters without spaces or ',': {tag!r}"
                )
                ok = False
        if not ok:
            return None
        return TargetSettings(
            provider=t.provider,
            model=t.model,
            timeouts=self.timeouts(t.timeouts, provider.timeouts, f"{path}.timeouts"),
            name=t.name or f"{t.provider}/{t.model}",
            weight=1.0 if t.weight is None else t.weight,
            priority=index if t.priority is None else t.priority,
            tags=tags,
            rpm=t.rpm,
            tpm=t.tpm,
            context_window=t.context_window,
            max_output_tokens=self.max_output_tokens(t, provider),
            price=price if price is not False else None,
            supports=self.supports(t, path, provider),
            unsupported_params=t.unsupported_params,
        )

    def supports(
        self, t: schema.TargetConfig, path: str, provider: ProviderSettings
    ) -> tuple[tuple[str, bool], ...]:
        """What the target declares its model can do, and what the price table lists it doing besides
        chat (image and audio models, on a provider serving those endpoints: they do no chat)."""
        declared = {
            name: value
            for name in schema.SupportsConfig.__struct_fields__
            if t.supports is not None and (value := getattr(t.supports, name)) is not None
        }
        media = [name for name in sorted(MEDIA_CAPABILITIES) if declared.get(name)]
        if media and not provider.kind.media_apis:
            self.problem(
                f"{path}.supports.{media[0]}",
                f"provider '{provider.name}' ({provider.kind.title}) does not serve OpenAI's image and "
                "audio endpoints (only OpenAI, Azure OpenAI and openai_compatible providers do)",
            )
        elif provider.kind.media_apis and "*" not in t.model:
            known = shipped_prices().lookup(provider.kind.price_namespace, t.model)
            listed = sorted(MEDIA_CAPABILITIES & known.capabilities) if known is not None else []
            for name in listed:
                declared.setdefault(name, True)
            if listed:
                declared.setdefault("chat", False)
        return tuple(
            (name, declared[name]) for name in schema.SupportsConfig.__struct_fields__ if name in declared
        )

    def task_supported(self, t: schema.TargetConfig, path: str, provider: ProviderSettings) -> bool:
        """`supports.rerank` and `supports.moderation` only where turnout can call them: rerank on
        Cohere, Bedrock and OpenAI-format providers, moderation on OpenAI-format ones; not both."""
        supports = t.supports
        if supports is None:
            return True
        wire, where = provider.kind.wire, f"{path}.supports" if path else "supports"
        ok = True
        if supports.rerank and wire not in RERANK_WIRES:
            self.problem(
                f"{where}.rerank",
                f"the provider '{t.provider}' ({provider.kind.title}) has no rerank API turnout can "
                "call (rerank works with cohere, bedrock and OpenAI-compatible providers)",
            )
            ok = False
        if supports.moderation and wire not in MODERATION_WIRES:
            self.problem(
                f"{where}.moderation",
                f"the provider '{t.provider}' ({provider.kind.title}) has no moderation API turnout "
                "can call (moderation works with OpenAI-format providers)",
            )
            ok = False
        if supports.rerank and supports.moderation:
            self.problem(where, "a model either reranks or moderates, not both")
            ok = False
        return ok

    def check_moderation_model(self, routing: RoutingSettings, models: Mapping[str, ModelSettings]) -> None:
        """`routing.moderation_model` names an alias with a moderation model."""
        alias = routing.moderation_model
        if alias is None:
            return
        model = models.get(alias)
        if model is None:
            self.problem("routing.moderation_model", f"names no alias ({key_hint(alias, list(models))})")
        elif not any(dict(t.supports).get("moderation") for t in model.targets):
            self.problem(
                "routing.moderation_model",
                f"the alias '{alias}' has no target with 'supports: {{moderation: true}}'",
            )

    def max_output_tokens(self, t: schema.TargetConfig, provider: ProviderSettings) -> int | None:
        """The target's configured limit on an answer's tokens, else the one the price table
        documents for its model (a wildcard's models are looked up as they are reached)."""
        if t.max_output_tokens is not None or "*" in t.model:
            return t.max_output_tokens
        known = shipped_prices().lookup(provider.kind.price_namespace, t.model)
        return None if known is None else known.max_output_tokens

    def price(
        self, t: schema.TargetConfig, path: str, provider: ProviderSettings
    ) -> ModelPrice | Literal[False] | None:
        """The target's configured price, else the price table's for its model; None when unknown
        (allowed by `spend.unknown_prices: record`, and for wildcard models, which are priced per
        request); False after reporting a problem."""
        if t.price is not None:
            try:
                return model_price(msgspec.to_builtins(t.price), f"{path}.price", table=False)
            except ValueError as error:
                message = str(error).removeprefix(f"{path}.price: ")
                self.problem(f"{path}.price", message)
                return False
        if "*" in t.model:
            return None
        known = shipped_prices().lookup(provider.kind.price_namespace, t.model)
        if known is None and self.spend.unknown_prices == "reject":
            self.problem(
                f"{path}.price",
                f"no price is known for model '{t.model}' on provider '{provider.name}' "
                f"({provider.kind.title}): give its price (USD per 1M tokens, e.g. "
                'price: {input: "0.50", output: "1.50"}), or set spend.unknown_prices: record '
                "to serve it with its spend recorded as unknown",
            )
            return False
        if known is not None and known.unverified:
            self.unverified_prices.append(f"{provider.name}/{t.model}")
        return known

    def check_fallbacks(self, models: Mapping[str, ModelSettings], declared: Mapping[str, Any]) -> None:
        """Every fallback names an alias that exists (a wildcard's match counts), and not its own."""
        wildcards = [a[:-1] for a in models if a.endswith("*")]
        for alias, model in models.items():
            for kind in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
                for i, target in enumerate(getattr(model, kind)):
                    path = f"models.{alias}.{kind}[{i}]"
                    if target == alias:
                        self.problem(path, "an alias cannot fall back to itself")
                    elif (
                        target not in models
                        and not any(target.startswith(w) and len(target) > len(w) for w in wildcards)
                        and target not in declared  # a broken alias has been reported already
                    ):
                        self.problem(path, _unknown("model alias", target, declared))

    # ------------------------------------------------------------------ routing

    def routing(self, cfg: schema.RoutingConfig) -> RoutingSettings:
        base = RoutingSettings()
        r, b = cfg.retries or schema.RetriesConfig(), cfg.breaker or schema.BreakerConfig()
        dr, db = base.retries, base.breaker
        path = "routing.retries"
        retries = RetrySettings(
            attempts=self.count(r.attempts, f"{path}.attempts", dr.attempts),
            backoff_base=self.unit(r.backoff_base, parse_delay, f"{path}.backoff_base", dr.backoff_base),
            backoff_max=self.unit(r.backoff_max, parse_delay, f"{path}.backoff_max", dr.backoff_max),
            max_retry_after=self.unit(
                r.max_retry_after, parse_delay, f"{path}.max_retry_after", dr.max_retry_after
            ),
            budget_ratio=self.share(r.budget_ratio, f"{path}.budget_ratio", dr.budget_ratio, upper=10.0),
            budget_per_second=self.share(
                r.budget_per_second, f"{path}.budget_per_second", dr.budget_per_second, upper=1e6
            ),
            budget_window=self.unit(
                r.budget_window, parse_duration, f"{path}.budget_window", dr.budget_window
            ),
        )
        path = "routing.breaker"
        breaker = BreakerSettings(
            consecutive_failures=self.count(
                b.consecutive_failures, f"{path}.consecutive_failures", db.consecutive_failures
            ),
            error_rate=self.share(b.error_rate, f"{path}.error_rate", db.error_rate, upper=1.0),
            min_requests=self.count(b.min_requests, f"{path}.min_requests", db.min_requests),
            window=self.unit(b.window, parse_duration, f"{path}.window", db.window),
            open_for=self.unit(b.open_for, parse_duration, f"{path}.open_for", db.open_for),
            max_open_for=self.unit(b.max_open_for, parse_duration, f"{path}.max_open_for", db.max_open_for),
            half_open_probes=self.count(b.half_open_probes, f"{path}.half_open_probes", db.half_open_probes),
            close_after=self.count(b.close_after, f"{path}.close_after", db.close_after),
        )
        if breaker.max_open_for < breaker.open_for:
            self.problem(f"{path}.max_open_for", "must not be shorter than open_for")
        return RoutingSettings(
            strategy=cfg.strategy or base.strategy,
            retries=retries,
            breaker=breaker,
            stream_resume=base.stream_resume if cfg.stream_resume is None else cfg.stream_resume,
            hedge_after=self.unit(cfg.hedge_after, parse_duration, "routing.hedge_after", None),
            health_check_interval=self.unit(
                cfg.health_check_interval, parse_duration, "routing.health_check_interval", None
            ),
            moderation_model=cfg.moderation_model,
        )

    def count(self, value: int | None, path: str, default: int) -> int:
        if value is None:
            return default
        if value < 1:
            self.problem(path, f"must be at least 1, got {value}")
            return default
        return value

    def share(self, value: float | None, path: str, default: float, *, upper: float) -> float:
        if value is None:
            return default
        if not 0 <= value <= upper:
            self.problem(path, f"must be between 0 and {upper:g}, got {value}")
            return default
        return value


def _unknown(what: str, value: str, known: Mapping[str, Any]) -> str:
    names = sorted(str(k) for k in known)
    close = difflib.get_close_matches(value, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(names) if names else "none are configured"
    return f"unknown {what} '{value}'{hint} (known: {listing})"


def _installed(module: str) -> bool:
    """Is `module` importable (its parents imported to find it; a missing parent: no)?"""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
