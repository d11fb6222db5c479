"""`turnout game-day start | list | end`: a thin client of a running gateway's admin API
(/admin/game-days): a provider out of service for a share of the traffic or for chosen teams for a
window, rolled back by itself when the affected requests fail too often."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click

from turnout.cli.governance import JSON_OPTION, KEY_OPTION, URL_OPTION, _at, _echo_json, describe_action
from turnout.cli.keys import AdminError, call


def _call(url: str, key: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    if not key:
        raise click.UsageError("no key: pass --key or set TURNOUT_ADMIN_KEY")
    try:
        return call(url, key, method, path, body)
    except AdminError as error:
        raise click.ClickException(str(error)) from None


def describe(day: dict[str, Any]) -> str:
    whom = f"share {day['share']:g}" if day.get("share") is not None else "all"
    if day.get("teams"):
        whom += " of teams " + ",".join(day["teams"])
    line = f"{day['id']}  {day['state']}  {day['provider']} out for {whom}"
    line += f"  {_at(day['starts_at'])} .. {_at(day['ends_at'])}"
    line += f"  rollback above {day['error_rate']:.0%} of {day['min_requests']}+ requests"
    line += f"  affected {day['affected_requests']} (failed {day['failed_requests']}) here"
    return line + (f"  ({day['end_reason']})" if day.get("end_reason") else "")


@click.group("game-day")
def game_day_group() -> None:
    """Rehearse losing a provider: take it out of service for some traffic for a window."""


@game_day_group.command("start")
@URL_OPTION
@KEY_OPTION
@click.option("--provider", required=True, help="The configured provider to take out of service.")
@click.option("--share", type=float, help="The share of requests it is taken out for (0-1).")
@click.option("--teams", help="Comma-separated team ids: their requests only (with --share: that share).")
@click.option("--duration", required=True, help="How long: 30m, 2h (at most 7d).")
@click.option(
    "--error-rate", type=float, default=0.2, show_default=True, help="Roll back above this failure rate."
)
@click.option(
    "--min-requests", type=int, default=20, show_default=True, help="Affected requests before it is judged."
)
@JSON_OPTION
def game_day_start(
    url: str,
    key: str | None,
    provider: str,
    share: float | None,
    teams: str | None,
    duration: str,
    error_rate: float,
    min_requests: int,
    as_json: bool,
) -> None:
    """Start a game day (under the two-person rule: a second admin approves it with
    `turnout approvals approve`)."""
    body: dict[str, Any] = {
        "provider": provider,
        "duration": duration,
        "error_rate": error_rate,
        "min_requests": min_requests,
    }
    if share is not None:
        body["share"] = share
    if teams is not None:
        body["teams"] = [t.strip() for t in teams.split(",") if t.strip()]
    answer = _call(url, key, "POST", "/admin/game-days", body)
    if as_json:
        _echo_json(answer)
    elif answer.get("object") == "pending_action":
        click.echo("waiting for a second admin: " + describe_action(answer))
    else:
        click.echo(describe(answer))


@game_day_group.command("list")
@URL_OPTION
@KEY_OPTION
@JSON_OPTION
def game_day_list(url: str, key: str | None, as_json: bool) -> None:
    """Game days, newest first."""
    answer = _call(url, key, "GET", "/admin/game-days")
    if as_json:
        _echo_json(answer)
        return
    for day in answer["data"]:
        click.echo(describe(day))
    if not answer["data"]:
        click.echo("(no game days)")


@game_day_group.command("end")
@URL_OPTION
@KEY_OPTION
@click.argument("game_day_id")
@JSON_OPTION
def game_day_end(url: str, key: str | None, game_day_id: str, as_json: bool) -> None:
    """End a game day before its window does (the provider is back for all its traffic)."""
    answer = _call(url, key, "POST", f"/admin/game-days/{quote(game_day_id, safe='')}/end")
    click.echo(json.dumps(answer, indent=2) if as_json else describe(answer))
