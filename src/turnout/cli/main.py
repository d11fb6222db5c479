"""`turnout serve | config check | status | demo | reset-master-key | keys | ...`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from turnout.cli.budgets import budgets_group
from turnout.cli.exit_report import exit_report_command
from turnout.cli.game_days import game_day_group
from turnout.cli.governance import approvals_group, audit_group
from turnout.cli.rehearse import rehearse_group
from turnout.cli.teams import teams_group, users_group
from turnout.config.loader import ConfigError, default_config_path
from turnout.config.settings import Settings
from turnout.providers.config_loader import load_settings

CONFIG_HELP = (
    "YAML configuration file (default: $TURNOUT_CONFIG; without one, providers come from the environment)"
)


def _settings(config: Path | None) -> Settings:
    path = config or default_config_path(os.environ)
    try:
        return load_settings(path, os.environ)
    except ConfigError as error:
        click.echo(error.render(), err=True)
        sys.exit(2)


def _logging(level: str, fmt: str) -> None:
    from turnout.observability.logging import configure

    configure(level, fmt)


@click.group()
@click.version_option(package_name="turnout")
def main() -> None:
    """turnout: one OpenAI-compatible gateway in front of every LLM provider."""


@main.command()
@click.option("--config", "-c", type=click.Path(dir_okay=False, path_type=Path), help=CONFIG_HELP)
@click.option("--host", help="Interface to listen on (default from config: 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default from config: 4000).")
@click.option(
    "--log-level",
    default=lambda: os.environ.get("TURNOUT_LOG_LEVEL", "info"),
    show_default="info",
    help="debug, info, warning or error (default: $TURNOUT_LOG_LEVEL, else info).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=lambda: os.environ.get("TURNOUT_LOG_FORMAT", "text"),
    show_default="text",
    help="Log lines as text or one JSON object each (default: $TURNOUT_LOG_FORMAT, else text).",
)
def serve(config: Path | None, host: str | None, port: int | None, log_level: str, log_format: str) -> None:
    """Run the gateway."""
    from turnout.server.hangups import HeldHangups

    HeldHangups.hold()  # before anything slow: a reload asked while starting must not end it
    from turnout.cli.serve import run

    _logging(log_level, log_format)
    path = config or default_config_path(os.environ)
    # a reload (SIGHUP, POST /admin/reload) reads the same file and environment again
    run(_settings(config), host=host, port=port, load=lambda: load_settings(path, os.environ))


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@click.option(
    "--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path), help=CONFIG_HELP
)
def config_check(config_path: Path | None) -> None:
    """Validate the configuration and print the routing table it produces."""
    from turnout.cli.config_check import describe

    click.echo(describe(_settings(config_path)))


@main.command()
@click.option(
    "--url",
    default=lambda: os.environ.get("TURNOUT_URL", "http://127.0.0.1:4000"),
    show_default="http://127.0.0.1:4000 or $TURNOUT_URL",
    help="The gateway's address.",
)
@click.option(
    "--key",
    default=lambda: os.environ.get("TURNOUT_MASTER_KEY"),
    show_default="$TURNOUT_MASTER_KEY",
    help="The master key (or another admin key).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON of /health/ready.")
def status(url: str, key: str | None, as_json: bool) -> None:
    """Show a running gateway's readiness and each deployment's circuit breaker."""
    from turnout.cli.status import run

    sys.exit(run(url, key, as_json))


@main.command()
@click.option("--port", type=int, default=4000, show_default=True, help="Port (a free one is used if taken).")
@click.option("--exit", "exit_after", is_flag=True, help="Stop after the demonstration requests.")
def demo(port: int, exit_after: bool) -> None:
    """Start a gateway with local fake providers and show it answering, streaming and counting tokens."""
    from turnout.cli.demo import run

    _logging("error", "text")  # the tour shows failures itself
    run(port=port, exit_after=exit_after)


@main.command("reset-master-key")
@click.option("--config", "-c", type=click.Path(dir_okay=False, path_type=Path), help=CONFIG_HELP)
def reset_master_key(config: Path | None) -> None:
    """Replace the generated master key (the old one stops working at the gateway's next start)."""
    from turnout.cli.serve import reset_master

    reset_master(_settings(config))


@main.group()
def spend() -> None:
    """Spend, from the ledger."""


@spend.command("report")
@click.option(
    "--url",
    default=lambda: os.environ.get("TURNOUT_URL", "http://127.0.0.1:4000"),
    show_default="http://127.0.0.1:4000 or $TURNOUT_URL",
    help="The gateway's address (its GET /admin/spend answers).",
)
@click.option(
    "--key",
    default=lambda: os.environ.get("TURNOUT_ADMIN_KEY") or os.environ.get("TURNOUT_MASTER_KEY"),
    show_default="$TURNOUT_ADMIN_KEY or $TURNOUT_MASTER_KEY",
    help="A key: the report covers what it may read (a team's key: its team).",
)
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the configured database directly instead of asking a gateway (no gateway running).",
)
@click.option(
    "--by",
    type=click.Choice(["team", "key", "user", "model", "alias", "deployment", "provider", "preset"]),
    default="model",
    show_default=True,
    help="What to group the spend by.",
)
@click.option("--since", default="30d", show_default=True, help="ISO date/time (UTC), or 7d, 24h, 30m back.")
@click.option("--until", help="ISO date/time (UTC); default: now.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv"]),
    default="table",
    show_default=True,
    help="A table to read, or CSV to process.",
)
def spend_report(
    url: str, key: str | None, config: Path | None, by: str, since: str, until: str | None, fmt: str
) -> None:
    """What was spent, grouped by team, key, user, model, alias, deployment, provider or preset."""
    from turnout.cli.spend import parse_since, run, run_remote

    try:
        start = parse_since(since)
        end = parse_since(until) if until else None
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if config is not None:
        click.echo(run(_settings(config), by, start, end, fmt), nl=False)
        return
    if not key:
        raise click.UsageError("no key: pass --key or set TURNOUT_ADMIN_KEY (or TURNOUT_MASTER_KEY)")
    from turnout.cli.keys import AdminError

    try:
        click.echo(run_remote(url, key, by, start, end, fmt), nl=False)
    except AdminError as error:
        raise click.ClickException(str(error)) from None


URL_OPTION = click.option(
    "--url",
    default=lambda: os.environ.get("TURNOUT_URL", "http://127.0.0.1:4000"),
    show_default="http://127.0.0.1:4000 or $TURNOUT_URL",
    help="The gateway's address.",
)
KEY_OPTION = click.option(
    "--key",
    default=lambda: os.environ.get("TURNOUT_ADMIN_KEY") or os.environ.get("TURNOUT_MASTER_KEY"),
    show_default="$TURNOUT_ADMIN_KEY or $TURNOUT_MASTER_KEY",
    help="An admin key (the master key, or an owner's or admin's).",
)


def _admin_call(
    url: str, key: str | None, method: str, path: str, body: dict[str, object] | None = None
) -> dict:  # type: ignore[type-arg]
    from turnout.cli.keys import AdminError, call

    if not key:
        raise click.UsageError("no key: pass --key or set TURNOUT_ADMIN_KEY (or TURNOUT_MASTER_KEY)")
    try:
        return call(url, key, method, path, body)
    except AdminError as error:
        raise click.ClickException(str(error)) from None


@main.group()
def keys() -> None:
    """Virtual keys, through a running gateway's admin API."""


@keys.command("create")
@URL_OPTION
@KEY_OPTION
@click.option("--name", required=True, help="What the key is for.")
@click.option(
    "--role",
    type=click.Choice(["owner", "admin", "member", "viewer"]),
    default="member",
    show_default=True,
    help="What the key may do in its team (an admin key: manage it).",
)
@click.option("--team", "team_id", help="The team the key belongs to (its id or name).")
@click.option("--user", "user_id", help="The user the key belongs to (their id or email).")
@click.option("--models", help="Comma-separated aliases or prefixes (team/*); default: every model.")
@click.option("--expires-in", help="A lifetime such as 30d or 12h; default: none.")
@click.option("--budget", "max_budget", help="USD, e.g. 25.00.")
@click.option("--limits", help="Rate limits: rpm=60,tpm=100000,rpd=5000,parallel=4 (any of them).")
def keys_create(url: str, key: str | None, **spec: str | None) -> None:
    """Issue a key (shown in full this once)."""
    from turnout.cli.keys import parse_limits, show_new

    body: dict[str, object] = {k: v for k, v in spec.items() if v is not None and k != "models"}
    if spec.get("models"):
        body["models"] = [m.strip() for m in str(spec["models"]).split(",") if m.strip()]
    if spec.get("limits"):
        body["limits"] = parse_limits(str(spec["limits"]))
    show_new(_admin_call(url, key, "POST", "/admin/keys", body))


@keys.command("list")
@URL_OPTION
@KEY_OPTION
def keys_list(url: str, key: str | None) -> None:
    """The keys this admin key may manage (by prefix only)."""
    from turnout.cli.keys import describe, list_all

    if not key:
        raise click.UsageError("no key: pass --key or set TURNOUT_ADMIN_KEY (or TURNOUT_MASTER_KEY)")
    for item in list_all(url, key, "/admin/keys"):
        click.echo(describe(item))


@keys.command("revoke")
@URL_OPTION
@KEY_OPTION
@click.argument("key_id")
def keys_revoke(url: str, key: str | None, key_id: str) -> None:
    """Revoke a key (it stops working at once)."""
    from turnout.cli.keys import describe

    click.echo(describe(_admin_call(url, key, "POST", f"/admin/keys/{key_id}/revoke")))


@keys.command("update")
@URL_OPTION
@KEY_OPTION
@click.argument("key_id")
@click.option("--name", help="A new name.")
@click.option("--role", type=click.Choice(["owner", "admin", "member", "viewer"]), help="A new role.")
@click.option("--models", help='Comma-separated aliases or prefixes; "*" for every model.')
@click.option("--expires-in", help='A lifetime from now such as 30d; "never" for none.')
@click.option("--budget", "max_budget", help='USD, e.g. 25.00; "none" for no budget.')
@click.option("--limits", help='Rate limits: rpm=60,tpm=100000,rpd=5000,parallel=4; "none" for none.')
def keys_update(url: str, key: str | None, key_id: str, **change: str | None) -> None:
    """Change a key (within what this admin key may give)."""
    from turnout.cli.keys import describe, parse_limits

    body: dict[str, object] = {k: v for k, v in change.items() if v is not None and k != "models"}
    if change.get("models"):
        models = [m.strip() for m in str(change["models"]).split(",") if m.strip()]
        body["models"] = None if models == ["*"] else models
    if body.get("expires_in") == "never":
        body["expires_in"] = None
    if body.get("max_budget") == "none":
        body["max_budget"] = None
    if change.get("limits"):
        body["limits"] = parse_limits(str(change["limits"]))
    click.echo(describe(_admin_call(url, key, "PATCH", f"/admin/keys/{key_id}", body)))


@keys.command("rotate")
@URL_OPTION
@KEY_OPTION
@click.argument("key_id")
@click.option("--grace", default="1h", show_default=True, help="How long the old key keeps working.")
def keys_rotate(url: str, key: str | None, key_id: str, grace: str) -> None:
    """Replace a key with a new one of the same rights; the old one works for the grace period."""
    from turnout.cli.keys import show_new

    show_new(_admin_call(url, key, "POST", f"/admin/keys/{key_id}/rotate", {"grace": grace}))


@keys.command("import")
@URL_OPTION
@KEY_OPTION
@click.option(
    "--from-litellm",
    "export",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="LiteLLM's keys as JSON (GET /key/list?return_full_object=true, or a list of key objects).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be issued; issue nothing.")
def keys_import(url: str, key: str | None, export: Path, dry_run: bool) -> None:
    """Issue a turnout key for each LiteLLM key (LiteLLM's keys cannot be reused: hand out the new ones)."""
    from turnout.cli.keys import import_litellm

    if not key and not dry_run:
        raise click.UsageError("no key: pass --key or set TURNOUT_ADMIN_KEY (or TURNOUT_MASTER_KEY)")
    import_litellm(url, key or "", export, dry_run=dry_run)


for group in (teams_group, users_group, budgets_group, audit_group, approvals_group, rehearse_group):
    main.add_command(group)
main.add_command(exit_report_command)
main.add_command(game_day_group)
