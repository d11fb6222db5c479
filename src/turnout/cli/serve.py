"""`turnout serve`: run the gateway in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import sys

import click

from turnout import __version__
from turnout.config.settings import Settings
from turnout.reload import Load
from turnout.server.runner import GatewayServer, serve
from turnout.storage.refusal import StartRefused


def _event_loop_runner() -> object:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run
    return uvloop.run


def announce(server: GatewayServer) -> None:
    s = server.services
    host = s.settings.server.host if server.config.host in ("", None) else server.config.host
    shown = f"[{host}]" if ":" in host else host
    out = [
        f"turnout {__version__} listening on http://{shown}:{server.port}  "
        f"(OpenAI base URL: http://{shown}:{server.port}/v1)",
        f"config: {s.settings.source}; {len(s.settings.providers)} provider(s), "
        f"{len(s.settings.models)} model alias(es)",
    ]
    if s.master_key.generated:
        bar = "=" * 72
        out += [
            bar,
            "A master key was generated for this gateway. It is shown only this once:",
            f"    {s.master_key.generated}",
            "Only its hash is stored. Keep it safe; replace it with `turnout reset-master-key`,",
            "or set TURNOUT_MASTER_KEY to use your own.",
            bar,
        ]
    else:
        out.append(f"master key: {s.master_key.source}")
    click.echo("\n".join(out), err=True)


def run(settings: Settings, *, host: str | None, port: int | None, load: Load | None = None) -> None:
    runner = _event_loop_runner()
    try:
        runner(serve(settings, host=host, port=port, on_started=announce, load=load))  # type: ignore[operator]
    except OSError as error:
        click.echo(f"turnout cannot start: {error.strerror or error}", err=True)
        sys.exit(1)
    except StartRefused as refused:
        click.echo(f"turnout cannot start: {refused}", err=True)
        sys.exit(1)


def reset_master(settings: Settings) -> None:
    async def reset() -> str:
        from turnout.keys.index import KeyIndex
        from turnout.keys.store import load_hash_secret, replace_master_key, secret_source, verify_hash_secret
        from turnout.storage.database import Database

        db = await Database.open(settings.storage.database_url)
        try:
            secret = load_hash_secret(settings.auth.key_hash_secret, settings.storage.data_dir)
            source = secret_source(settings.auth.key_hash_secret, settings.storage.data_dir)
            await verify_hash_secret(db, secret, source)  # a key hashed otherwise would work nowhere
            index = KeyIndex(secret)
            return await replace_master_key(db, index)
        finally:
            await db.close()

    key = asyncio.run(reset())
    click.echo(
        "New master key (shown only this once; running gateways switch to it within a second or two):\n    "
        + key
    )
    if settings.auth.master_key is not None:
        click.echo(
            f"Note: the gateway uses {settings.auth.master_key.source} instead while that is set.", err=True
        )
