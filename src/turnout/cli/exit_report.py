"""`turnout exit-report`: a client of GET /admin/exit-report, printed as a table, JSON, or an HTML
report with bar charts (inline SVG: one file, nothing fetched when it is opened)."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import click

from turnout.cli.governance import KEY_OPTION, URL_OPTION, _call
from turnout.cli.spend import parse_since


def _when(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return parse_since(value).isoformat()
    except ValueError:
        raise click.BadParameter("an ISO date/time (UTC), or 7d, 24h, 30m back", param_hint=name) from None


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def as_table(report: dict[str, Any]) -> str:
    lines = [f"exit readiness from {report['since']} to {report['until']}", ""]
    if not report["providers"]:
        return "\n".join([*lines, "no answered requests in the period"])
    header = f"{'provider':<18}{'requests':>10}{'movable':>9}{'tokens':>9}{'spend':>9}{'cost if moved':>16}"
    lines += [header, "-" * len(header)]
    for p in report["providers"]:
        m = p["movable"]
        lines.append(
            f"{p['provider']:<18}{p['requests']:>10}{_percent(m['request_share']):>9}"
            f"{_percent(m['token_share']):>9}{_percent(m['spend_share']):>9}"
            f"{m['cost_difference_usd']:>16}"
        )
    for p in report["providers"]:
        lines += ["", f"{p['provider']}:"]
        for stuck in p["stuck"]:
            share = _percent(stuck["request_share"])
            lines.append(f"  stuck: {stuck['requests']} ({share}) {stuck['reason']}")
        if p["aliases_without_alternative"]:
            lines.append("  aliases with no alternative: " + ", ".join(p["aliases_without_alternative"]))
        for alt in p["alternatives"]:
            rpm = f"rpm {alt['peak_rpm']}/{alt['rpm_limit'] or '-'}"
            limits = f"{rpm}, tpm {alt['peak_tpm']}/{alt['tpm_limit'] or '-'}"
            flag = "  OVER CAPACITY" if alt["over_capacity"] else ""
            lines.append(f"  would take {alt['requests']} on {alt['deployment']} (peak {limits}){flag}")
    return "\n".join(lines)


def _bar(label: str, share: float, y: int) -> str:
    width = round(400 * share)
    return (
        f'<text x="0" y="{y + 14}">{html.escape(label)}</text>'
        f'<rect x="160" y="{y}" width="400" height="18" fill="#eee"/>'
        f'<rect x="160" y="{y}" width="{width}" height="18" fill="#2a7"/>'
        f'<text x="570" y="{y + 14}">{_percent(share)}</text>'
    )


def as_html(report: dict[str, Any]) -> str:
    """One self-contained page: per provider, bars of what could move (requests, tokens, spend)
    and of why the rest could not."""
    title = f"turnout exit readiness, {report['since']} to {report['until']}"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}svg text{font-size:13px}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    if not report["providers"]:
        parts.append("<p>No answered requests in the period.</p>")
    for p in report["providers"]:
        m = p["movable"]
        parts.append(f"<h2>{html.escape(p['provider'])}</h2>")
        parts.append(
            f"<p>{p['requests']} requests, {p['tokens']} tokens, ${html.escape(p['cost_usd'])}; moved to "
            f"the alternatives: ${html.escape(m['cost_if_moved_usd'])} "
            f"(difference ${html.escape(m['cost_difference_usd'])}).</p>"
        )
        bars = [("requests movable", m["request_share"]), ("tokens movable", m["token_share"])]
        bars.append(("spend movable", m["spend_share"]))
        bars += [(s["reason"][:24], s["request_share"]) for s in p["stuck"]]
        height = 24 * len(bars)
        svg = "".join(_bar(label, share, 24 * i) for i, (label, share) in enumerate(bars))
        parts.append(f'<svg width="640" height="{height}" role="img">{svg}</svg>')
        if p["stuck"]:
            rows = "".join(
                f"<tr><td>{html.escape(s['reason'])}</td><td>{s['requests']}</td></tr>" for s in p["stuck"]
            )
            parts.append(f"<table><tr><th>stuck because</th><th>requests</th></tr>{rows}</table>")
        if p["aliases_without_alternative"]:
            names = ", ".join(html.escape(a) for a in p["aliases_without_alternative"])
            parts.append(f"<p>Aliases with no alternative: {names}</p>")
    parts.append(f"<p><small>generated {datetime.now(UTC).isoformat(timespec='seconds')}</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


@click.command("exit-report")
@URL_OPTION
@KEY_OPTION
@click.option("--since", help="ISO date/time (UTC), or 7d, 24h, 30m back; default: 30 days before --until.")
@click.option("--until", help="ISO date/time (UTC), or 7d, 24h, 30m back; default: now.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "html"]),
    default="table",
    show_default=True,
    help="A table to read, the API's JSON, or a self-contained HTML page with charts.",
)
def exit_report_command(url: str, key: str | None, since: str | None, until: str | None, fmt: str) -> None:
    """If a provider vanished now: how much of its traffic the configured alternatives could take,
    the rest by reason, and the cost difference."""
    query = {k: v for k, v in (("since", _when(since, "--since")), ("until", _when(until, "--until"))) if v}
    report = _call(url, key, "GET", "/admin/exit-report" + (f"?{urlencode(query)}" if query else ""))
    if fmt == "json":
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    elif fmt == "html":
        click.echo(as_html(report))
    else:
        click.echo(as_table(report))
