"""`turnout config check`: the resolved configuration as a routing table (secrets by reference only)."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from turnout.config.settings import ModelSettings, RoutingSettings, Settings, TargetSettings, Timeouts
from turnout.domain.pricing import UnitPrices, format_usd
from turnout.providers.capabilities import capabilities_for
from turnout.routing.chain_check import chain_warnings


def _seconds(value: float) -> str:
    return f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"


def _timeouts(t: Timeouts) -> str:
    return (
        f"connect {_seconds(t.connect)}, first byte {_seconds(t.first_byte)}, "
        f"idle {_seconds(t.idle)}, total {_seconds(t.total)}"
    )


def describe(settings: Settings) -> str:
    s = settings
    url = make_url(s.storage.database_url).render_as_string(hide_password=True)
    lines = [
        f"configuration: {s.source} (valid)",
        f"listen:        http://{s.server.host}:{s.server.port}  (request bodies up to "
        f"{s.server.max_request_bytes // 1024 // 1024} MiB, "
        f"shutdown grace {_seconds(s.server.shutdown_grace)})",
        f"database:      {url}",
        "master key:    "
        + (s.auth.master_key.source if s.auth.master_key else "generated on first start, stored hashed"),
        "",
        "providers:",
    ]
    if not s.providers:
        lines.append("  (none)")
    width = max((len(n) for n in s.providers), default=0)
    for name, p in sorted(s.providers.items()):
        key = p.api_key.source if p.api_key else "no key"
        extra = f", api-version {p.api_version}" if p.api_version else ""
        lines.append(f"  {name:<{width}}  {p.kind.title} at {p.base_url} ({key}{extra})")
        lines.append(f"  {'':<{width}}  timeouts: {_timeouts(p.timeouts)}")
    lines += [
        "",
        *_routing(s.routing),
        "",
        "models (alias: strategy, deployments in order, fallback chains):",
    ]
    if not s.models:
        lines.append("  (none)")
    for _, m in sorted(s.models.items()):
        lines += _model(m, s.routing)
    warnings = [*s.warnings, *chain_warnings(s, capabilities_for)]
    if warnings:
        lines += ["", "warnings:"] + [f"  - {w}" for w in warnings]
    return "\n".join(lines)


def _routing(r: RoutingSettings) -> list[str]:
    t, b = r.retries, r.breaker
    hedge = f"after {_seconds(r.hedge_after)}" if r.hedge_after is not None else "off"
    checks = f"every {_seconds(r.health_check_interval)}" if r.health_check_interval is not None else "off"
    moderation = (
        []
        if r.moderation_model is None
        else [f"  moderation: '{r.moderation_model}' answers a moderation naming no model"]
    )
    return [
        "routing:",
        f"  defaults:  strategy {r.strategy}, stream resume {_on(r.stream_resume)}, hedging {hedge}, "
        f"health checks {checks}",
        f"  retries:   {t.attempts} attempts per alias and request, backoff {_seconds(t.backoff_base)} "
        f"doubling up to {_seconds(t.backoff_max)} (full jitter), Retry-After waited up to "
        f"{_seconds(t.max_retry_after)}",
        f"  budget:    retries add at most {t.budget_ratio:.0%} of requests + {t.budget_per_second:g}/s "
        f"over {_seconds(t.budget_window)}",
        f"  breaker:   opens after {b.consecutive_failures} failures in a row or {b.error_rate:.0%} errors "
        f"over {_seconds(b.window)} (at least {b.min_requests} requests); open {_seconds(b.open_for)} "
        f"doubling up to {_seconds(b.max_open_for)}, {b.half_open_probes} probe(s) at a time, "
        f"closes after {b.close_after} success(es)",
        *moderation,
    ]


def _model(m: ModelSettings, r: RoutingSettings) -> list[str]:
    policy = [f"strategy={m.strategy}"]
    if m.attempts != r.retries.attempts:
        policy.append(f"attempts={m.attempts}")
    if m.hedge_after is not None:
        policy.append(f"hedge_after={_seconds(m.hedge_after)}")
    if m.stream_resume != r.stream_resume:
        policy.append(f"stream_resume={_on(m.stream_resume)}")
    lines = [f"  {m.alias}  {' '.join(policy)}"]
    for i, t in enumerate(m.targets):
        lines.append(f"    - {_target(t, i)}")
    for label, chain in (
        ("fallbacks", m.fallbacks),
        ("context window", m.context_window_fallbacks),
        ("content policy", m.content_policy_fallbacks),
    ):
        if chain:
            lines.append(f"    {label} -> {', '.join(chain)}")
    mirror = m.mirror
    if mirror is not None:
        span = "in all" if mirror.period == "never" else mirror.period
        lines.append(
            f"    mirror {mirror.share:.0%} -> {_target(mirror.target, 0)}  (budget "
            f"{format_usd(mirror.budget)} USD {span}, timeout {_seconds(mirror.timeout)}, "
            f"{mirror.concurrency} at once)"
        )
    return lines


def _target(t: TargetSettings, index: int) -> str:
    where = f"{t.provider}/{t.model}"
    text = where if t.name == where else f"{t.name} = {where}"
    details = []
    if t.weight != 1.0:
        details.append(f"weight={t.weight:g}")
    if t.priority != index:
        details.append(f"priority={t.priority}")
    if t.tags:
        details.append(f"tags={','.join(sorted(t.tags))}")
    limits = (
        ("rpm", t.rpm),
        ("tpm", t.tpm),
        ("context_window", t.context_window),
        ("max_output_tokens", t.max_output_tokens),
    )
    details += [f"{k}={v}" for k, v in limits if v]
    declared = dict(t.supports)
    details += [task for task in ("rerank", "moderation") if declared.get(task)]  # serves only that
    if t.price is not None and t.price.units is not None:  # an image or audio model
        details.append(_unit_prices(t.price.units))
    elif t.price is not None and t.price.search_units is not None:
        details.append(f"price={t.price.search_units:g}/1K searches")  # a reranker's
    elif t.price is not None:
        details.append(f"price={t.price.input:g}/{t.price.output:g}")  # USD per 1M in/out
    elif "*" not in t.model:
        details.append("price=unknown")
    if t.price is not None and t.price.unverified:
        details.append(f"(unverified: {','.join(sorted(t.price.unverified))})")
    return "  ".join([text, " ".join(details)]) if details else text


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _unit_prices(units: UnitPrices) -> str:
    """An image or audio model's prices, USD per unit ("price=0.04-0.12/image")."""
    shown = []
    if units.per_image:
        prices = [p for _, p in units.per_image]
        low, high = min(prices), max(prices)
        shown.append(f"{low:g}/image" if low == high else f"{low:g}-{high:g}/image")
    if units.per_audio_minute is not None:
        shown.append(f"{units.per_audio_minute:g}/minute")
    if units.per_1m_characters is not None:
        shown.append(f"{units.per_1m_characters:g}/1M characters")
    return "price=" + ",".join(shown)
