"""A gateway and its database over their lives: deadlines when the database stops answering (a
network black hole between the gateway and a real PostgreSQL), readiness that reports it as
degraded, a shutdown that does not wait for it, instances started at once on an empty database,
a schema newer than the code, and instances that do not share the key-hash secret."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database
from turnout.storage.migrate import HEAD

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
from support.gateway import MASTER_KEY, Gateway, settings_for
from support.process import TURNOUT, Served, start_serve
from support.tcp_forwarder import TcpForwarder

USER = [{"role": "user", "content": "hi"}]
FAKE = {"providers": {"fake": {"type": "fake"}}, "models": {"chat": {"provider": "fake", "model": "m"}}}


def pg_url(name: str, port: int = 5432, host: str = PG_HOST) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{host}:{port}/{name}"


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database's name."""
    name = asyncio.run(create_postgres_database())
    yield name
    asyncio.run(drop_postgres_database(name))


@pytest.fixture
def forwarder() -> Iterator[TcpForwarder]:
    forwarder = TcpForwarder(PG_HOST, 5432).start()
    yield forwarder
    forwarder.stop()


@pytest.fixture
def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "OPENAI_"))}
    return {**clean, "TURNOUT_LOG_LEVEL": "warning"}


def config_file(path: Path, database_url: str, **sections: Any) -> Path:
    doc = {
        "storage": {"data_dir": str(path / "data"), "database_url": database_url},
        "spend": {"unknown_prices": "record"},
        **FAKE,
        **sections,
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "turnout.yaml").write_text(yaml.safe_dump(doc))
    return path / "turnout.yaml"


def chat(base_url: str, key: str) -> Any:
    with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=15) as client:
        return client.chat.completions.create(model="chat", messages=USER)  # type: ignore[arg-type]


def issue_key(root_url: str) -> str:
    created = httpx.post(
        root_url + "/admin/keys",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"name": "x"},
        timeout=20,
    )
    assert created.status_code == 200, created.text
    return str(created.json()["key"])


def refused_start(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TURNOUT, "serve", "--config", str(config), "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.postgres
def test_an_unknown_key_in_a_database_black_hole_gets_503_within_the_deadline_and_serving_goes_on(
    tmp_path: Path, database: str, forwarder: TcpForwarder
) -> None:
    storage = {"database_url": pg_url(database, forwarder.port, "127.0.0.1"), "database_timeout": "1s"}
    gateway = Gateway(settings_for({**FAKE, "storage": storage}, tmp_path / "a")).start()
    direct = {**FAKE, "storage": {"database_url": pg_url(database)}}
    issuer = Gateway(settings_for(direct, tmp_path / "a")).start()  # same secret, straight to the server
    try:
        key = issue_key(issuer.root_url)
        forwarder.stall()  # the gateway's database stops answering; its connections stay open
        with pytest.raises(openai.InternalServerError) as caught:
            chat(gateway.base_url, key)  # never seen here: it cannot be checked, so 503, not a wait
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "key_store_unavailable"  # type: ignore[index]
        ready = httpx.get(gateway.root_url + "/health/ready", timeout=15)
        assert ready.status_code == 200  # degraded, not out of the load balancer
        assert ready.json()["status"] == "degraded" and ready.json()["database"] == "unreachable"
        assert chat(gateway.base_url, MASTER_KEY).choices  # serving goes on from memory
        listed = httpx.get(
            gateway.root_url + "/admin/keys", headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=15
        )  # the admin API reads the database: it says so, within its deadlines
        assert listed.status_code == 503 and listed.json()["error"]["code"] == "database_unavailable"
        forwarder.resume()
        assert chat(gateway.base_url, key).choices  # the refusal was not remembered as "unknown"
        assert httpx.get(gateway.root_url + "/health/ready", timeout=15).json()["status"] == "ready"
    finally:
        forwarder.resume()
        issuer.stop()
        gateway.stop()


@pytest.mark.postgres
def test_shutdown_with_the_database_silent_ends_within_its_grace_and_the_journal_keeps_the_spend(
    tmp_path: Path, database: str, forwarder: TcpForwarder, env: dict[str, str]
) -> None:
    env = {**env, "TURNOUT_MASTER_KEY": MASTER_KEY}
    silent = config_file(
        tmp_path, pg_url(database, forwarder.port, "127.0.0.1"), server={"shutdown_grace": "2s"}
    )
    served = start_serve(silent, env)
    try:
        forwarder.stall()
        for _ in range(3):  # served from memory, journaled, not yet in the database
            assert chat(served.base_url, MASTER_KEY).choices
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(30) == 0  # its last writes gave up with the grace, and it exited
    finally:
        served.stop(signal.SIGKILL)
    forwarder.resume()

    again = start_serve(config_file(tmp_path, pg_url(database)), env)  # the next start moves the journal
    assert again.stop() == 0
    rows = asyncio.run(ledger(pg_url(database)))
    assert len([r for r in rows if r["status"] == 200]) == 3


async def ledger(url: str) -> list[dict[str, Any]]:
    database = await Database.open(url)
    try:
        return await LedgerStore(database).entries()
    finally:
        await database.close()


@pytest.mark.postgres
def test_three_instances_started_at_once_on_an_empty_database_all_come_up(
    tmp_path: Path, database: str, env: dict[str, str]
) -> None:
    env = {**env, "TURNOUT_KEY_HASH_SECRET": secrets.token_hex(32)}  # shared, as the file holds it
    configs = [config_file(tmp_path / name, pg_url(database)) for name in ("a", "b", "c")]
    with ThreadPoolExecutor(3) as pool:
        starts = [pool.submit(start_serve, config, env) for config in configs]
        served: list[Served] = []
        failures = []
        for start in starts:
            try:
                served.append(start.result())
            except AssertionError as failure:
                failures.append(str(failure))
    try:
        assert not failures, failures
        generated = [s.banner for s in served if "shown only this once" in s.banner]
        assert len(generated) == 1  # one master key for the database, made by whoever came first
        master = next(
            line.strip() for line in generated[0].splitlines() if line.startswith("    sk-turnout-")
        )
        for instance in served:
            assert chat(instance.base_url, master).choices
    finally:
        codes = [s.stop() for s in served]
    assert codes == [0, 0, 0]


def test_a_database_newer_than_the_code_is_refused_with_what_to_do(
    tmp_path: Path, env: dict[str, str]
) -> None:
    config = config_file(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'data' / 'turnout.db'}")
    served = start_serve(config, {**env, "TURNOUT_MASTER_KEY": MASTER_KEY})
    assert served.stop() == 0
    newer = f"{int(HEAD) + 1:04d}"
    with sqlite3.connect(tmp_path / "data" / "turnout.db") as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (newer,))
    refused = refused_start(config, {**env, "TURNOUT_MASTER_KEY": MASTER_KEY})
    assert refused.returncode == 1
    assert f"schema is at revision {newer}, newer than this turnout knows" in refused.stderr
    assert "Run that version" in refused.stderr and "Traceback" not in refused.stderr


def _as_if_upgraded_by_a_newer_turnout(database: Path, oldest_reader: str) -> str:
    """Stamp the database one revision past this code, as a newer turnout leaves it, recording
    which turnout may serve it."""
    newer = f"{int(HEAD) + 1:04d}"
    with sqlite3.connect(database) as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (newer,))
        db.execute("INSERT INTO schema_readers VALUES (?, ?)", (newer, oldest_reader))
    return newer


def test_a_newer_database_its_upgrader_says_this_version_may_serve_is_served_untouched(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A rolling upgrade: the new version only added what older code ignores, so an instance of
    the previous version restarted meanwhile keeps serving, and migrates nothing."""
    database = tmp_path / "data" / "turnout.db"
    config = config_file(tmp_path, f"sqlite+aiosqlite:///{database}")
    env = {**env, "TURNOUT_MASTER_KEY": MASTER_KEY}
    assert start_serve(config, env).stop() == 0
    newer = _as_if_upgraded_by_a_newer_turnout(database, oldest_reader=HEAD)
    served = start_serve(config, env)
    try:
        assert chat(served.base_url, MASTER_KEY).choices
    finally:
        assert served.stop() == 0
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(newer,)]
    assert f"schema is at revision {newer}, newer than this turnout knows" in served.banner
    assert "served as it is, never migrated" in served.banner


def test_a_newer_database_its_upgrader_says_needs_newer_code_is_refused_naming_the_version(
    tmp_path: Path, env: dict[str, str]
) -> None:
    database = tmp_path / "data" / "turnout.db"
    config = config_file(tmp_path, f"sqlite+aiosqlite:///{database}")
    env = {**env, "TURNOUT_MASTER_KEY": MASTER_KEY}
    assert start_serve(config, env).stop() == 0
    newer = _as_if_upgraded_by_a_newer_turnout(database, oldest_reader=f"{int(HEAD) + 1:04d}")
    refused = refused_start(config, env)
    assert refused.returncode == 1
    assert f"schema is at revision {newer}, newer than this turnout knows" in refused.stderr
    assert f"it needs schema revision {newer} or newer" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.postgres
def test_an_instance_with_another_key_hash_secret_refuses_to_start_and_says_how_to_share_it(
    tmp_path: Path, database: str, env: dict[str, str]
) -> None:
    env = {**env, "TURNOUT_MASTER_KEY": MASTER_KEY}
    first = start_serve(config_file(tmp_path / "a", pg_url(database)), env)
    try:
        key = issue_key(f"http://127.0.0.1:{first.port}")
        second_config = config_file(tmp_path / "b", pg_url(database))  # its own data directory
        refused = refused_start(second_config, env)
        assert refused.returncode == 1, refused.stderr
        assert "key-hash secret" in refused.stderr and "would refuse every key" in refused.stderr
        assert (
            "copy the content of key-hash.secret" in refused.stderr
            and "TURNOUT_KEY_HASH_SECRET" in refused.stderr
        )

        shutil.copy(tmp_path / "a" / "data" / "key-hash.secret", tmp_path / "b" / "data" / "key-hash.secret")
        second = start_serve(second_config, env)  # the fix the message gives
        try:
            assert chat(second.base_url, key).choices
        finally:
            assert second.stop() == 0

        content = (tmp_path / "a" / "data" / "key-hash.secret").read_text()
        third = start_serve(  # the file's content, as it is, given as the variable
            config_file(tmp_path / "c", pg_url(database)), {**env, "TURNOUT_KEY_HASH_SECRET": content}
        )
        try:
            assert chat(third.base_url, key).choices
        finally:
            assert third.stop() == 0
    finally:
        assert first.stop() == 0
