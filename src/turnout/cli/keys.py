"""`turnout keys create | list | revoke | rotate | import`: a thin client of the admin API of a running
gateway (so a revocation takes effect there at once), authenticated with an admin key."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from turnout.storage.paging import MAX_LIMIT

TIMEOUT = 10.0


class AdminError(Exception):
    """The gateway refused (its error message), or could not be reached."""


def call(url: str, key: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    if not url.startswith(("http://", "https://")):
        raise AdminError(f"expected an http:// or https:// URL, got {url!r}")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)  # noqa: S310 (scheme checked)
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (scheme checked)
            return json.loads(response.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {error.code}"
        raise AdminError(message) from None
    except (urllib.error.URLError, OSError) as error:
        raise AdminError(f"cannot reach turnout at {url}: {getattr(error, 'reason', error)}") from None


def call_all(url: str, key: str, path: str, query: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every item of a paged admin list (GET `path`): its pages asked for in turn, each after the
    cursor the one before ended with, as many items a page as the API gives."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        asked = {**(query or {}), "limit": str(MAX_LIMIT), **({"after": after} if after else {})}
        page = call(url, key, "GET", f"{path}?{urlencode(asked)}")
        items += page["data"]
        cursor = page.get("next_cursor")
        if not cursor or cursor == after:
            return items
        after = cursor


def list_all(
    url: str, key: str | None, path: str, query: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """`call_all`, its failure a clean CLI error (exit 1, no traceback)."""
    if not key:
        raise click.UsageError("no key: pass --key or set TURNOUT_ADMIN_KEY")
    try:
        return call_all(url, key, path, query)
    except AdminError as error:
        raise click.ClickException(str(error)) from None


def describe(key: dict[str, Any]) -> str:
    models = ",".join(key.get("models") or ["*"])
    state = "revoked" if key.get("revoked_at") else "active"
    team = key.get("team_id") or "-"
    head = f"{key['id']}  {key['prefix']}…  {key['name']}"
    limits = key.get("limits")
    limited = "" if not limits else " limits=" + ",".join(f"{k}={v}" for k, v in limits.items())
    return f"{head}  role={key['role']} team={team} models={models}{limited} {state}"


def parse_limits(text: str) -> dict[str, int] | None:
    """`rpm=60,tpm=100000` as the admin API's limits ("none": no limits); UsageError otherwise."""
    if text.strip() == "none":
        return None
    limits: dict[str, int] = {}
    for part in text.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals or not value.strip().isdigit():
            raise click.UsageError(f"--limits: '{part.strip()}' is not NAME=NUMBER (e.g. rpm=60,tpm=100000)")
        limits[name.strip()] = int(value)
    return limits


def show_new(key: dict[str, Any]) -> None:
    click.echo(describe(key))
    click.echo("\nThe key, shown this once (store it now; turnout keeps only its hash):\n")
    click.echo(f"    {key['key']}\n")


def import_litellm(url: str, key: str, export: Path, *, dry_run: bool) -> None:
    """Re-issue each key of a LiteLLM export; each new key printed once, what was not carried said."""
    from turnout.cli.litellm_import import ExportError, plan, read_export

    try:
        entries = read_export(export)
    except ExportError as error:
        raise click.ClickException(str(error)) from None
    now = dt.datetime.now(dt.UTC)
    issued = skipped = 0
    for entry in entries:
        planned = plan(entry, now)
        if planned.skipped:
            click.echo(f"skipped {planned.source}: {planned.skipped}", err=True)
            skipped += 1
            continue
        for note in planned.notes:
            click.echo(f"{planned.source}: {note}", err=True)
        if dry_run:
            click.echo(f"{planned.source}: would issue {json.dumps(planned.body, sort_keys=True)}")
            continue
        try:
            new = call(url, key, "POST", "/admin/keys", planned.body)
        except AdminError as error:
            raise click.ClickException(
                f"{planned.source}: {error} ({issued} key(s) issued before it; run again without them)"
            ) from None
        click.echo(f"{planned.source}\t{new['id']}\t{new['key']}")
        issued += 1
    verb = "would be issued" if dry_run else "issued (shown this once: hand them to their owners)"
    click.echo(f"{len(entries) - skipped} key(s) {verb}, {skipped} skipped", err=True)
