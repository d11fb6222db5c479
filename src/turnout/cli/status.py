"""`turnout status`: a running gateway's readiness and every deployment's breaker, as a table (and
the ledger journal's state when it is not ok).

It reads `GET /health/ready` with the master key (the detail is only given to an admin key).
Exit codes: 0 ready; 1 not ready or unreachable; 2 the key is missing or was not accepted.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import click

TIMEOUT = 5.0
COLUMNS = ("deployment", "state", "in flight", "ok", "failed", "latency ms", "retry in", "last failure")
LAST_FAILURE_WIDTH = 60


def fetch(url: str, key: str | None) -> tuple[int, dict[str, Any]]:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    request = urllib.request.Request(url.rstrip("/") + "/health/ready")  # noqa: S310 (scheme checked)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (scheme checked)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:  # 503: not ready, with a JSON body all the same
        try:
            return error.code, json.loads(error.read())
        except ValueError:
            return error.code, {}


def _row(d: dict[str, Any]) -> tuple[str, ...]:
    failure = str(d.get("last_failure") or "")
    if len(failure) > LAST_FAILURE_WIDTH:
        failure = failure[: LAST_FAILURE_WIDTH - 1] + "…"
    latency = d.get("latency_ms")
    retry = d.get("retry_in_s")
    return (
        str(d.get("deployment", "?")),
        str(d.get("state", "?")),
        str(d.get("in_flight", 0)),
        str(d.get("successes", 0)),
        str(d.get("failures", 0)),
        "-" if latency is None else f"{latency:g}",
        "-" if retry is None else f"{retry:g}s",
        failure or "-",
    )


def table(deployments: list[dict[str, Any]]) -> str:
    rows = [COLUMNS, *(_row(d) for d in deployments)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def run(url: str, key: str | None, as_json: bool) -> int:
    if not key:
        click.echo("no key: pass --key or set TURNOUT_MASTER_KEY (the detail needs the master key)", err=True)
        return 2
    try:
        status, body = fetch(url, key)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        click.echo(f"cannot reach turnout at {url}: {reason}", err=True)
        return 1
    if as_json:
        click.echo(json.dumps(body, indent=2))
    ready = status == 200 and body.get("status") == "ready"
    if "deployments" not in body:
        if not as_json:
            click.echo(f"turnout at {url}: {body.get('status', status)}")
        click.echo("the key was not accepted as an admin key: no deployment detail", err=True)
        return 2
    if not as_json:
        deployments = body["deployments"]
        click.echo(
            f"turnout at {url}: {body.get('status', status)}; "
            f"{body.get('deployments_available', 0)} of {len(deployments)} deployments taking requests"
        )
        journal = body.get("journal") or {}
        if journal.get("state", "ok") != "ok":
            click.echo(journal_line(journal))
        if deployments:
            click.echo("")
            click.echo(table(deployments))
    return 0 if ready else 1


def journal_line(journal: dict[str, Any]) -> str:
    """The ledger journal's trouble, in a line (`/health/ready`'s `journal`)."""
    line = f"ledger journal: {journal.get('state')}"
    if journal.get("fault"):
        line += f" ({journal['fault']}): requests are refused until it can be written"
    if journal.get("held"):
        line += f"; {journal['held']} entries held in memory"
    if journal.get("seal_fault"):
        line += f"; a new segment cannot be opened ({journal['seal_fault']})"
    return line
