"""`turnout audit list` and `turnout approvals list | approve | reject`: thin clients of a running
gateway's admin API (GET /admin/audit, /admin/approvals...), authenticated with an admin key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import click

from turnout.cli.keys import AdminError, call, list_all

URL_OPTION = click.option(
    "--url",
    envvar="TURNOUT_URL",
    default="http://127.0.0.1:4000",
    show_default="http://127.0.0.1:4000 or $TURNOUT_URL",
    help="The gateway's address.",
)
KEY_OPTION = click.option(
    "--key",
    envvar=["TURNOUT_ADMIN_KEY", "TURNOUT_MASTER_KEY"],
    show_default="$TURNOUT_ADMIN_KEY or $TURNOUT_MASTER_KEY",
    help="An admin key (the master key, or an owner's or admin's).",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")


def _call(url: str, key: str | None, method: str, path: str) -> dict[str, Any]:
    if not key:
        raise click.UsageError("no key: pass --key or set TURNOUT_ADMIN_KEY")
    try:
        return call(url, key, method, path)
    except AdminError as error:
        raise click.ClickException(str(error)) from None


def _echo_json(doc: dict[str, Any]) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def _at(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def describe_event(event: dict[str, Any]) -> str:
    target = event["target_type"] + (f"/{event['target_id']}" if event.get("target_id") else "")
    line = f"{_at(event['at'])}  #{event['id']}  {event['action']}  {target}"
    line += f"  team={event.get('team_id') or '-'}  by {event['actor']} ({event['actor_key_id']}"
    line += f", person {event['actor_person']})" if event.get("actor_person") else ")"
    return line + (f"  request={event['request_id']}" if event.get("request_id") else "")


def describe_action(action: dict[str, Any]) -> str:
    target = f"{action['target_type']}/{action['target_id']}"
    line = f"{action['id']}  {action['status']}  {action['action']}  {target}"
    line += f"  team={action.get('team_id') or '-'}  requested by {action['requested_by']}"
    if action.get("requested_by_person"):
        line += f" ({action['requested_by_person']})"
    line += f" at {_at(action['requested_at'])}"
    if action["status"] == "pending":
        return line + f", expires {_at(action['expires_at'])}"
    if action.get("decided_by"):
        line += f"; decided by {action['decided_by']} at {_at(action['decided_at'])}"
    return line


@click.group("audit")
def audit_group() -> None:
    """The audit log of admin actions, through a running gateway's admin API."""


@audit_group.command("list")
@URL_OPTION
@KEY_OPTION
@click.option("--action", help="An action, or a prefix ending in * (key.*).")
@click.option("--actor-key", "actor_key_id", help="Only actions taken with this key id.")
@click.option("--actor-person", "actor_person", help="Only what this person did (a user id, or master).")
@click.option("--target", help="TYPE or TYPE/ID (key/key_123).")
@click.option("--team", "team_id", help="Only this team's actions.")
@click.option("--since", help="ISO date/time (UTC), or 7d, 24h, 30m back.")
@click.option("--until", help="ISO date/time (UTC), or 7d, 24h, 30m back.")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="How many events (1-1000)."
)
@click.option("--before-id", type=click.IntRange(min=1), help="Older than this event (the next page).")
@JSON_OPTION
def audit_list(
    url: str,
    key: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
    **filters: Any,
) -> None:
    """Admin actions, newest first."""
    from turnout.cli.spend import parse_since

    query: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
    if target:
        target_type, _, target_id = target.partition("/")
        query["target_type"] = target_type
        if target_id:
            query["target_id"] = target_id
    for name, value in (("since", since), ("until", until)):
        if value:
            try:
                query[name] = parse_since(value).isoformat()
            except ValueError as error:
                raise click.BadParameter(str(error), param_hint=f"--{name}") from None
    answer = _call(url, key, "GET", "/admin/audit?" + urlencode(query))
    if as_json:
        _echo_json(answer)
        return
    for event in answer["data"]:
        click.echo(describe_event(event))
    if not answer["data"]:
        click.echo("(no matching events)")
    elif answer.get("has_more"):
        click.echo(f"(more: --before-id {answer['data'][-1]['id']})")


@click.group("approvals")
def approvals_group() -> None:
    """Actions waiting for a second admin's approval (the two-person rule)."""


@approvals_group.command("list")
@URL_OPTION
@KEY_OPTION
@click.option(
    "--status",
    type=click.Choice(["pending", "approving", "approved", "rejected", "expired", "failed"]),
    help="Only actions in this state (default: all).",
)
@JSON_OPTION
def approvals_list(url: str, key: str | None, status: str | None, as_json: bool) -> None:
    """Pending and decided actions, newest first."""
    actions = list_all(url, key, "/admin/approvals", {"status": status} if status else None)
    if as_json:
        _echo_json({"object": "list", "data": actions})
        return
    for action in actions:
        click.echo(describe_action(action))
    if not actions:
        click.echo("(no actions)")


def _decide(url: str, key: str | None, action_id: str, verb: str, as_json: bool) -> None:
    answer = _call(url, key, "POST", f"/admin/approvals/{quote(action_id, safe='')}/{verb}")
    if as_json:
        _echo_json(answer)
        return
    click.echo(describe_action(answer))
    if answer.get("result") is not None:
        click.echo(json.dumps(answer["result"], indent=2, ensure_ascii=False))


@approvals_group.command("approve")
@URL_OPTION
@KEY_OPTION
@click.argument("action_id")
@JSON_OPTION
def approvals_approve(url: str, key: str | None, action_id: str, as_json: bool) -> None:
    """Approve an action proposed by another admin (it runs now)."""
    _decide(url, key, action_id, "approve", as_json)


@approvals_group.command("reject")
@URL_OPTION
@KEY_OPTION
@click.argument("action_id")
@JSON_OPTION
def approvals_reject(url: str, key: str | None, action_id: str, as_json: bool) -> None:
    """Reject an action (or withdraw your own)."""
    _decide(url, key, action_id, "reject", as_json)
