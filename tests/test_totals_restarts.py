"""The running totals through real gateway processes, on SQLite and on PostgreSQL: `kill -9` while
the ledger's batches are being written leaves totals equal to what the rows sum to (the journal is
moved again, and what was already in adds nothing); budgets read from the totals after a kill and
a restart still refuse exactly when the spend says so; ledger retention, once configured, deletes
old rows on its own while the report still counts them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from turnout.config.loader import ConfigError
from turnout.domain.ledger_entry import entry_encoder
from turnout.spend.journal import PREFIX, SUFFIX
from turnout.spend.ledger_store import LedgerStore
from turnout.spend.report import REPORT_BY, spend_report
from turnout.storage.database import Database

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
from support.gateway import MASTER_KEY, Gateway, settings_for
from support.paid_model import PER_REQUEST, TOKENS, paid_models
from support.process import TURNOUT, start_serve
from support.totals import cells, insert_in_batches, recomputed, requests_over

BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
ENV = {"TURNOUT_MASTER_KEY": MASTER_KEY, "TURNOUT_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"}
DEADLINE = 120.0  # seconds a process gets to move a journal or start


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'turnout.db'}"
        return
    name = asyncio.run(create_postgres_database())
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{name}"
    finally:
        asyncio.run(drop_postgres_database(name))


def write_config(tmp_path: Path, url: str, **storage: Any) -> Path:
    config = tmp_path / "turnout.yaml"
    doc = {
        "storage": {"data_dir": str(tmp_path / "data"), "database_url": url, **storage},
        "providers": {"fake": {"type": "fake"}},
        "models": paid_models(),
    }
    config.write_text(yaml.safe_dump(doc))
    return config


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Database]:
    database = await Database.open(url)
    try:
        yield database
    finally:
        await database.close()


def serve_process(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [TURNOUT, "serve", "--config", str(config), "--port", "0"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_kill_9_while_batches_are_written_leaves_totals_equal_to_the_rows(
    database_url: str, tmp_path: Path
) -> None:
    """A journal of ~8,000 rows (16 batches) left by a dead process: each start moves it from its
    beginning and is killed as soon as it has added to the ledger, so batches already in are
    written again by the next start, until one start finishes."""
    requests = requests_over(3, 6000, now=dt.datetime.now(dt.UTC))
    entries = [row for rows in requests for row in rows]
    journal = tmp_path / "data" / "journal"
    journal.mkdir(parents=True)
    segment = journal / f"{PREFIX}{1:010d}{SUFFIX}"
    segment.write_bytes(b"".join(entry_encoder.encode(e) + b"\n" for e in entries))
    config = write_config(tmp_path, database_url)
    killed_midway = 0
    async with opened(database_url) as database:
        store = LedgerStore(database)
        for _ in range(4):
            before = await store.count()
            proc = serve_process(config)
            deadline = time.monotonic() + DEADLINE
            while proc.poll() is None and time.monotonic() < deadline:  # polling the database
                if await store.count() > before:
                    break
                await asyncio.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
            if segment.exists() and 0 < await store.count() < len(entries):
                killed_midway += 1
            if not segment.exists():
                break
        served = start_serve(config, ENV)  # listening: whatever was left is moved
        assert served.stop() == 0
        assert not segment.exists()
        assert killed_midway >= 1  # some batches were in and the journal still held them
        assert await store.count() == len(entries)  # every row once
        assert await cells(database) == await recomputed(database)


def ask(base_url: str, key: str) -> str:
    with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20) as client:
        try:
            client.chat.completions.create(
                model="paid", messages=[{"role": "user", "content": "hi"}], max_tokens=TOKENS
            )
            return "ok"
        except openai.RateLimitError as error:
            return str(error.body["code"])  # type: ignore[index]


def test_budgets_read_from_the_totals_after_a_kill_still_refuse_at_the_limit(
    database_url: str, tmp_path: Path
) -> None:
    """A team's daily budget in a time zone half an hour off UTC, worth three requests, and the
    key's own lifetime budget worth four: each start after `kill -9` reads both from the totals."""
    config = write_config(tmp_path, database_url)
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    served = start_serve(config, ENV)
    with httpx.Client(base_url=served.base_url.removesuffix("/v1"), headers=admin, timeout=20) as http:
        team = http.post("/admin/teams", json={"name": "red"}).json()["id"]
        key = http.post(
            "/admin/keys",
            json={"name": "app", "team_id": team, "max_budget": str(4 * PER_REQUEST / 1_000_000)},
        ).json()
        budget = http.post(
            "/admin/budgets",
            json={
                "scope": "team",
                "subject_id": team,
                "period": "daily",
                "timezone": "Asia/Kolkata",
                "limit": str(3 * PER_REQUEST / 1_000_000),
            },
        ).json()
    assert [ask(served.base_url, key["key"]) for _ in range(2)] == ["ok", "ok"]
    assert served.stop(signal.SIGKILL) == -signal.SIGKILL  # no chance to move the journal

    def status(served: Any) -> dict[str, Any]:
        base = served.base_url.removesuffix("/v1")
        return httpx.get(f"{base}/admin/budgets/{budget['id']}", headers=admin, timeout=20).json()  # type: ignore[no-any-return]

    served = start_serve(config, ENV)
    assert status(served)["spent_micros"] == 2 * PER_REQUEST
    assert [ask(served.base_url, key["key"]) for _ in range(2)] == ["ok", "insufficient_quota"]
    assert served.stop(signal.SIGKILL) == -signal.SIGKILL

    served = start_serve(config, ENV)
    assert status(served)["spent_micros"] == 3 * PER_REQUEST
    assert ask(served.base_url, key["key"]) == "insufficient_quota"
    with httpx.Client(base_url=served.base_url.removesuffix("/v1"), headers=admin, timeout=20) as http:
        assert http.delete(f"/admin/budgets/{budget['id']}").status_code in (200, 204)
    # the team's budget gone, the key's own lifetime budget ($4 worth, $3 spent) holds
    assert [ask(served.base_url, key["key"]) for _ in range(2)] == ["ok", "insufficient_quota"]
    assert served.stop() == 0


def test_retention_once_configured_deletes_old_rows_and_the_report_still_counts_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data / 'turnout.db'}"
    now = dt.datetime.now(dt.UTC)
    since = now - dt.timedelta(days=6)

    async def fill() -> dict[str, Any]:
        async with opened(url) as database:
            await insert_in_batches(LedgerStore(database), requests_over(5, 400, now=now))
            return {by: await spend_report(database, by, since) for by in REPORT_BY}

    before = asyncio.run(fill())
    doc = yaml.safe_load(write_config(tmp_path, url, ledger_retention_days=2).read_text())
    gateway = Gateway(settings_for(doc, data)).start()

    async def oldest() -> dt.datetime:
        async with opened(url) as database:
            rows = await LedgerStore(database).entries()
            return min(r["at"] for r in rows).replace(tzinfo=dt.UTC)  # type: ignore[no-any-return]

    try:
        deadline = time.monotonic() + DEADLINE
        while asyncio.run(oldest()) < now - dt.timedelta(days=2, hours=1) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the database from the test thread
        assert asyncio.run(oldest()) >= now - dt.timedelta(days=2, hours=1)
    finally:
        gateway.stop()

    async def after() -> dict[str, Any]:
        async with opened(url) as database:
            return {by: await spend_report(database, by, since) for by in REPORT_BY}

    assert asyncio.run(after()) == before


@pytest.mark.parametrize("days", [0, -3])
def test_a_retention_of_no_days_is_refused(tmp_path: Path, days: int) -> None:
    doc = {"storage": {"data_dir": str(tmp_path), "ledger_retention_days": days}}
    with pytest.raises(ConfigError, match=r"storage\.ledger_retention_days: must be a number of days from 1"):
        settings_for(doc, tmp_path)


def test_a_period_without_requests_is_reported_as_such(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from turnout.cli.main import main

    config = tmp_path / "turnout.yaml"
    config.write_text(yaml.safe_dump({"storage": {"data_dir": str(tmp_path / "data")}}))
    result = CliRunner().invoke(main, ["spend", "report", "-c", str(config), "--since", "7d"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "(no requests in this period)"
