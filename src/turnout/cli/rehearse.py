"""`turnout rehearse replay | report`: replay logged requests against a candidate deployment
(bounded rate, a progress bar, a state file that lets a killed run go on where it stopped) and
report how its answers compare with what clients got: a table, JSON, or an HTML page with plots."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from turnout.cli.spend import parse_since
from turnout.config.loader import ConfigError, default_config_path
from turnout.config.settings import Settings
from turnout.providers.config_loader import load_settings

if TYPE_CHECKING:
    from turnout.rehearsal.state import State
    from turnout.routing.catalog import Catalog
    from turnout.storage.database import Database

RATE = re.compile(r"^(\d+(?:\.\d+)?)(?:/s)?$")
MAX_RATE = 1000.0
MAX_SAMPLE = 100_000
DEFAULT_STATE = Path("rehearsal.jsonl")
DEADLINE = 300.0  # seconds a database statement may take (reading the log in batches)


@dataclass(frozen=True, slots=True)
class Asked:
    source: str
    target: str
    since: datetime
    until: datetime
    sample: int
    rate: float
    parallel: int
    state: Path
    judge: str | None


def _settings(config: Path | None) -> Settings:
    path = config or default_config_path(os.environ)
    try:
        return load_settings(path, os.environ)
    except ConfigError as error:
        click.echo(error.render(), err=True)
        sys.exit(2)


def _rate(value: str) -> float:
    found = RATE.match(value.strip())
    if found is None or not 0 < float(found.group(1)) <= MAX_RATE:
        raise click.BadParameter(
            f"requests a second, such as 5/s or 0.5/s (above 0, at most {MAX_RATE:g})", param_hint="--rate"
        )
    return float(found.group(1))


def _when(value: str, name: str) -> datetime:
    try:
        return parse_since(value)
    except ValueError:
        raise click.BadParameter("an ISO date/time (UTC), or 7d, 24h, 30m back", param_hint=name) from None


REHEARSE_EXTRA = ("wordllama", "jsonschema", "tqdm")  # pyproject's `rehearse` extra


def _needs_extra() -> None:
    """A plain message, not a traceback, when `turnout[rehearse]` is not installed."""
    missing = [name for name in REHEARSE_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise click.ClickException(
            f"turnout rehearse needs {', '.join(missing)}: pip install 'turnout[rehearse]'"
        )


@click.group("rehearse")
def rehearse_group() -> None:
    """Rehearse moving traffic to another deployment: replay logged requests, compare the answers."""


@rehearse_group.command("replay")
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML configuration file (default: $TURNOUT_CONFIG).",
)
@click.option(
    "--from", "source", required=True, help="The alias clients asked for, or the provider that answered."
)
@click.option("--to", "target", required=True, help="The candidate deployment: its name, or provider/model.")
@click.option("--since", default="7d", show_default=True, help="ISO date/time (UTC), or 7d, 24h, 30m back.")
@click.option("--until", help="ISO date/time (UTC), or 7d, 24h, 30m back; default: now.")
@click.option(
    "--sample",
    type=click.IntRange(1, MAX_SAMPLE),
    default=500,
    show_default=True,
    help="How many logged requests to replay (chosen at random).",
)
@click.option(
    "--rate",
    default="2/s",
    show_default=True,
    help="At most this many requests started a second (5/s, 0.5/s).",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="At most this many requests at once.",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_STATE,
    show_default=True,
    help="The state file: created, or resumed when it exists.",
)
@click.option(
    "--judge",
    help="An alias whose model scores each pair of answers (optional; its spend is rehearsal spend).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def replay_command(config: Path | None, until: str | None, rate: str, quiet: bool, **given: Any) -> None:
    """Replay logged requests against a candidate deployment; run it again to resume."""
    _needs_extra()
    asked = Asked(
        source=given["source"],
        target=given["target"],
        since=_when(given["since"], "--since"),
        until=_when(until, "--until") if until else datetime.now(UTC),
        sample=given["sample"],
        rate=_rate(rate),
        parallel=given["parallel"],
        state=given["state"],
        judge=given["judge"],
    )
    settings = _settings(config)
    try:
        done, total = asyncio.run(_replay(settings, asked, quiet))
    except (LookupError, ValueError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # the database or the disk failed mid-way: what finished is kept
        said = str(error).splitlines()[0][:200] if str(error) else ""
        raise click.ClickException(
            f"the replay stopped ({type(error).__name__}: {said}); the requests that finished are in "
            f"{asked.state}: run the same command again to go on"
        ) from None
    click.echo(
        f"{done} replayed now; {total} of the plan done. State: {asked.state} "
        f"(turnout rehearse report --state {asked.state})"
    )


async def _replay(settings: Settings, asked: Asked, quiet: bool) -> tuple[int, int]:
    from turnout.app import price_lookup, tokenizer_lookup
    from turnout.providers.http.client import HttpClient
    from turnout.providers.registry import ProviderRegistry
    from turnout.rehearsal import similarity
    from turnout.rehearsal.candidate import find
    from turnout.rehearsal.replay import Replay, run
    from turnout.routing.catalog import Catalog
    from turnout.storage.database import Database

    similarity.load()  # a missing model is told before anything is sent
    database = await Database.open(settings.storage.database_url, DEADLINE)
    client = HttpClient()
    try:
        registry = await ProviderRegistry.start(settings.providers, client)
        try:
            catalog = Catalog(settings.models, registry, price_lookup(settings), tokenizer_lookup(settings))
            target = find(settings.models, catalog, asked.target)
            judge = None
            if asked.judge is not None:
                route = catalog.resolve(asked.judge)
                if route is None or not route.targets:
                    raise LookupError(f"--judge: no alias named {asked.judge!r}")
                judge = route.targets[0]
            current = await _state(asked, settings, catalog, database)
            bar = None if quiet else _bar(len(current.plan.request_ids), len(current.results))
            replay = Replay(
                database,
                target,
                similarity.similarity,
                asked.rate,
                asked.parallel,
                judge,
                on_done=(lambda result: None) if bar is None else (lambda result: bar.update(1)),
            )
            try:
                done = await run(replay, current)
            finally:
                if bar is not None:
                    bar.close()
            return done, len(current.results)
        finally:
            await registry.aclose()
    finally:
        await client.aclose()
        await database.close()


async def _state(asked: Asked, settings: Settings, catalog: Catalog, database: Database) -> State:
    """The state file resumed, or created with a new plan: a sample of the logged requests."""
    from turnout.rehearsal import state
    from turnout.rehearsal.candidate import provider_deployments
    from turnout.rehearsal.sources import sample

    if asked.state.exists():
        current = state.load(asked.state)
        if (current.plan.source, current.plan.target) != (asked.source, asked.target):
            raise ValueError(
                f"{asked.state} replays {current.plan.source} -> {current.plan.target}; "
                "name another --state for another rehearsal"
            )
        return current
    deployments: set[str] = set()
    if asked.source in settings.providers:
        deployments = provider_deployments(settings.models, catalog, asked.source)
    since, until = asked.since.timestamp(), asked.until.timestamp()
    ids = await sample(database, asked.source, deployments, since, until, asked.sample)
    if not ids:
        raise LookupError(
            f"the request log holds no answered chat request for {asked.source!r} in the period "
            "(is the request log on for that traffic? docs/exit.md)"
        )
    run_id = secrets.token_hex(8)
    plan = state.Plan(asked.source, asked.target, since, until, asked.sample, run_id, ids, asked.judge)
    return state.create(asked.state, plan)


def _bar(total: int, done: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="req", desc="replaying", file=sys.stderr)


@rehearse_group.command("report")
@click.option(
    "--state",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DEFAULT_STATE,
    show_default=True,
    help="The replay's state file.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "html"]),
    default="table",
    show_default=True,
    help="A table to read, JSON, or a self-contained HTML page with plots.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of the terminal.",
)
def report_command(state: Path, fmt: str, output: Path | None) -> None:
    """Compare the candidate's answers with what clients got: latency, cost, agreement, the worst cases."""
    _needs_extra()
    from turnout.rehearsal import render, similarity
    from turnout.rehearsal.state import StateError, load
    from turnout.rehearsal.summary import summarise

    try:
        current = load(state)
    except StateError as error:
        raise click.ClickException(str(error)) from None
    plan = {**current.plan.document(), "similarity_model": similarity.MODEL}
    report = summarise(plan, current.ordered(), len(current.plan.request_ids))
    if fmt == "json":
        text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    elif fmt == "html":
        text = render.as_html(report)
    else:
        text = render.as_table(report)
    if output is None:
        click.echo(text)
    else:
        # readable by its owner only, as the state file: it quotes answers from the request log
        with os.fdopen(
            os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8"
        ) as file:
            file.write(text + "\n")
        click.echo(f"written to {output}")
