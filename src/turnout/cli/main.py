"""`turnout serve | config check | status | demo | reset-master-key`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from turnout.config.loader import ConfigError, default_config_path, load_settings
from turnout.config.settings import Settings

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
@click.option("--log-level", default=lambda: os.environ.get("TURNOUT_LOG_LEVEL", "info"), show_default="info")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=lambda: os.environ.get("TURNOUT_LOG_FORMAT", "text"),
    show_default="text",
)
def serve(config: Path | None, host: str | None, port: int | None, log_level: str, log_format: str) -> None:
    """Run the gateway."""
    from turnout.cli.serve import run

    _logging(log_level, log_format)
    run(_settings(config), host=host, port=port)


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
@click.option("--config", "-c", type=click.Path(dir_okay=False, path_type=Path), help=CONFIG_HELP)
@click.option(
    "--by",
    type=click.Choice(["team", "key", "model", "alias", "deployment"]),
    default="model",
    show_default=True,
)
@click.option("--since", default="30d", show_default=True, help="ISO date/time (UTC), or 7d, 24h, 30m back.")
@click.option("--until", help="ISO date/time (UTC); default: now.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv"]), default="table", show_default=True)
def spend_report(config: Path | None, by: str, since: str, until: str | None, fmt: str) -> None:
    """What was spent, grouped by team, key, model, alias or deployment."""
    from turnout.cli.spend import parse_since, run

    try:
        start = parse_since(since)
        end = parse_since(until) if until else None
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    click.echo(run(_settings(config), by, start, end, fmt), nl=False)
