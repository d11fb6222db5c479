"""`turnout config check`: the resolved configuration as a routing table (secrets by reference only)."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from turnout.config.settings import Settings, Timeouts


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
    lines += ["", "models (alias -> targets, in order):"]
    if not s.models:
        lines.append("  (none)")
    width = max((len(a) for a in s.models), default=0)
    for alias, m in sorted(s.models.items()):
        targets = ", ".join(f"{t.provider}/{t.model}" for t in m.targets)
        lines.append(f"  {alias:<{width}}  -> {targets}")
    if s.warnings:
        lines += ["", "warnings:"] + [f"  - {w}" for w in s.warnings]
    return "\n".join(lines)
