"""`turnout teams create | list | show | set-priority | delete | add-member | remove-member |
revoke-keys` and
`turnout users create | list | show | set-role | delete`: thin clients of a running gateway's admin
API (/admin/teams, /admin/users), authenticated with an admin key. An action under the two-person
rule prints the pending action a second admin approves (`turnout approvals approve <id>`).
A TEAM is named by its id or its name, a USER by their id or email."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import click

from turnout.cli.governance import JSON_OPTION, KEY_OPTION, URL_OPTION
from turnout.cli.keys import AdminError, call, list_all

ROLES = click.Choice(["owner", "admin", "member", "viewer"])
PRIORITIES = click.Choice(["critical", "standard", "batch", "none"])


def request(
    url: str, key: str | None, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The admin API's answer; its error as a clean CLI error (exit 1, no traceback)."""
    if not key:
        raise click.UsageError("no key: pass --key or set TURNOUT_ADMIN_KEY")
    try:
        return call(url, key, method, path, body)
    except AdminError as error:
        raise click.ClickException(str(error)) from None


def request_all(url: str, key: str | None, path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    """Every item of a paged admin list, its pages followed by their cursors, as one list."""
    return {"object": "list", "data": list_all(url, key, path, query)}


def segment(value: str) -> str:
    """An id as one path segment."""
    return quote(value, safe="")


def at(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def pending(action: dict[str, Any]) -> str:
    return (
        f"pending approval: {action['id']} ({action['action']}) — a second admin runs "
        f"`turnout approvals approve {action['id']}`"
    )


def show(answer: dict[str, Any], as_json: bool, describe: Callable[[dict[str, Any]], str]) -> None:
    """The answer as JSON, or one line (the pending action's, if it is one)."""
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
    elif answer.get("object") == "pending_action":
        click.echo(pending(answer))
    else:
        click.echo(describe(answer))


def show_list(
    answer: dict[str, Any], as_json: bool, describe: Callable[[dict[str, Any]], str], none: str
) -> None:
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    for item in answer["data"]:
        click.echo(describe(item))
    if not answer["data"]:
        click.echo(none)


def describe_team(team: dict[str, Any]) -> str:
    line = f"{team['id']}  {team['name']}"
    if team.get("priority"):
        line += f"  priority={team['priority']}"
    if team.get("members") is not None:
        line += f"  members={len(team['members'])}"
    line += f"  created {at(team.get('created_at'))}"
    if team.get("deleted_at"):
        line += f"  deleted {at(team['deleted_at'])}"
    if team.get("revoked_keys") is not None:
        line += f"  revoked keys={len(team['revoked_keys'])}"
    return line


def describe_user(user: dict[str, Any]) -> str:
    line = f"{user['id']}  {user['email']}  {user.get('name') or '-'}  role={user['role']}"
    if user.get("teams") is not None:
        line += "  teams=" + (",".join(f"{t['team_id']}:{t['role']}" for t in user["teams"]) or "-")
    if user.get("deleted_at"):
        line += f"  deleted {at(user['deleted_at'])}"
    if user.get("revoked_keys") is not None:
        line += f"  revoked keys={len(user['revoked_keys'])}"
    return line


def describe_revocation(answer: dict[str, Any]) -> str:
    revoked = answer["revoked_keys"]
    return f"{answer['team_id']}: revoked {len(revoked)} key(s)" + (
        f": {', '.join(revoked)}" if revoked else ""
    )


# ---------------------------------------------------------------------- teams


@click.group("teams")
def teams_group() -> None:
    """Teams and their members, through a running gateway's admin API."""


@teams_group.command("create")
@URL_OPTION
@KEY_OPTION
@click.argument("name")
@click.option("--metadata", "-m", multiple=True, metavar="KEY=VALUE", help="A label (repeatable).")
@JSON_OPTION
def teams_create(url: str, key: str | None, name: str, metadata: tuple[str, ...], as_json: bool) -> None:
    """Create a team."""
    body: dict[str, Any] = {"name": name}
    if metadata:
        labels = {}
        for item in metadata:
            label, sep, value = item.partition("=")
            if not sep or not label:
                raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--metadata")
            labels[label] = value
        body["metadata"] = labels
    show(request(url, key, "POST", "/admin/teams", body), as_json, describe_team)


@teams_group.command("list")
@URL_OPTION
@KEY_OPTION
@JSON_OPTION
def teams_list(url: str, key: str | None, as_json: bool) -> None:
    """The teams this key may see."""
    show_list(request_all(url, key, "/admin/teams"), as_json, describe_team, "(no teams)")


@teams_group.command("show")
@URL_OPTION
@KEY_OPTION
@click.argument("team_id", metavar="TEAM")
@JSON_OPTION
def teams_show(url: str, key: str | None, team_id: str, as_json: bool) -> None:
    """A team and its members."""
    team = request(url, key, "GET", f"/admin/teams/{segment(team_id)}")
    show(team, as_json, describe_team)
    if not as_json:
        for member in team.get("members") or []:
            click.echo(f"  {member['user_id']}  {member['email']}  role={member['role']}")


@teams_group.command("set-priority")
@URL_OPTION
@KEY_OPTION
@click.argument("team_id", metavar="TEAM")
@click.argument("priority", type=PRIORITIES)
@JSON_OPTION
def teams_set_priority(url: str, key: str | None, team_id: str, priority: str, as_json: bool) -> None:
    """Set a team's priority class under overload (its keys without a class of their own); `none`
    leaves it to the configured default. A team's admins may set it up to their own class."""
    body = {"priority": None if priority == "none" else priority}
    answer = request(url, key, "PATCH", f"/admin/teams/{segment(team_id)}", body)
    show(answer, as_json, lambda a: f"{a['id']}  priority={a['priority'] or '-'}")


@teams_group.command("delete")
@URL_OPTION
@KEY_OPTION
@click.argument("team_id", metavar="TEAM")
@JSON_OPTION
def teams_delete(url: str, key: str | None, team_id: str, as_json: bool) -> None:
    """Delete a team and revoke its keys (under the two-person rule: proposes it)."""
    show(request(url, key, "DELETE", f"/admin/teams/{segment(team_id)}"), as_json, describe_team)


@teams_group.command("add-member")
@URL_OPTION
@KEY_OPTION
@click.argument("team_id", metavar="TEAM")
@click.argument("user_id", metavar="USER")
@click.option("--role", type=ROLES, default="member", show_default=True, help="Their role in the team.")
@JSON_OPTION
def teams_add_member(url: str, key: str | None, team_id: str, user_id: str, role: str, as_json: bool) -> None:
    """Add a user to a team, or change their role in it."""
    path = f"/admin/teams/{segment(team_id)}/members"
    show(request(url, key, "POST", path, {"user_id": user_id, "role": role}), as_json, describe_user)


@teams_group.command("remove-member")
@URL_OPTION
@KEY_OPTION
@click.argument("team_id", metavar="TEAM")
@click.argument("user_id", metavar="USER")
@JSON_OPTION
def teams_remove_member(url: str, key: str | None, team_id: str, user_id: str, as_json: bool) -> None:
    """Remove a user from a team (their keys in it are revoked)."""
    path = f"/admin/teams/{segment(team_id)}/members/{segment(user_id)}"
    show(request(url, key, "DELETE", path), as_json, describe_user)


@teams_group.command("revoke-keys")
@URL_OPTION
@KEY_OPTION
@click.argument("team_id", metavar="TEAM")
@JSON_OPTION
def teams_revoke_keys(url: str, key: str | None, team_id: str, as_json: bool) -> None:
    """Revoke every key of a team (under the two-person rule: proposes it)."""
    path = f"/admin/teams/{segment(team_id)}/revoke-keys"
    show(request(url, key, "POST", path), as_json, describe_revocation)


# ---------------------------------------------------------------------- users


@click.group("users")
def users_group() -> None:
    """Users and their organisation-wide roles, through a running gateway's admin API."""


@users_group.command("create")
@URL_OPTION
@KEY_OPTION
@click.argument("email")
@click.option("--name", help="Their name.")
@click.option("--role", type=ROLES, default="member", show_default=True, help="Organisation-wide role.")
@JSON_OPTION
def users_create(url: str, key: str | None, email: str, name: str | None, role: str, as_json: bool) -> None:
    """Create a user (an admin role may wait for a second admin's approval)."""
    body: dict[str, Any] = {"email": email, "role": role}
    if name is not None:
        body["name"] = name
    user = request(url, key, "POST", "/admin/users", body)
    show(user, as_json, describe_user)
    if not as_json and user.get("pending_action"):
        click.echo(pending(user["pending_action"]))


@users_group.command("list")
@URL_OPTION
@KEY_OPTION
@JSON_OPTION
def users_list(url: str, key: str | None, as_json: bool) -> None:
    """The users this key may see."""
    show_list(request_all(url, key, "/admin/users"), as_json, describe_user, "(no users)")


@users_group.command("show")
@URL_OPTION
@KEY_OPTION
@click.argument("user_id", metavar="USER")
@JSON_OPTION
def users_show(url: str, key: str | None, user_id: str, as_json: bool) -> None:
    """A user and their teams."""
    show(request(url, key, "GET", f"/admin/users/{segment(user_id)}"), as_json, describe_user)


@users_group.command("set-role")
@URL_OPTION
@KEY_OPTION
@click.argument("user_id", metavar="USER")
@click.argument("role", type=ROLES)
@JSON_OPTION
def users_set_role(url: str, key: str | None, user_id: str, role: str, as_json: bool) -> None:
    """Change a user's organisation-wide role (their keys follow)."""
    path = f"/admin/users/{segment(user_id)}"
    show(request(url, key, "PATCH", path, {"role": role}), as_json, describe_user)


@users_group.command("delete")
@URL_OPTION
@KEY_OPTION
@click.argument("user_id", metavar="USER")
@JSON_OPTION
def users_delete(url: str, key: str | None, user_id: str, as_json: bool) -> None:
    """Delete a user and revoke their keys."""
    show(request(url, key, "DELETE", f"/admin/users/{segment(user_id)}"), as_json, describe_user)
