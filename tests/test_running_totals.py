"""The ledger's running totals, on SQLite and PostgreSQL: what each batch adds equals what the rows
sum to (the migration's backfill, computed by the database), a replayed batch adds nothing, the
spend report read from them equals the report summed from the rows for any span, a budget window
in a time zone off the hour is summed exactly, and ledger retention deletes old rows a bounded
number at a time while the report and the lifetime totals stay as they were."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from turnout.domain.ledger_entry import LedgerEntry
from turnout.domain.periods import time_zone, window
from turnout.spend.budgets import Budgets
from turnout.spend.ledger_store import CHUNK, LedgerStore, as_row
from turnout.spend.report import REPORT_BY, rows_report, spend_report
from turnout.spend.retention import LedgerRetention
from turnout.spend.totals import window_cost
from turnout.storage.cube import backfill_cube
from turnout.storage.database import Database
from turnout.storage.migrate import upgrade_with_alembic
from turnout.storage.rollups import SUMMED, backfill
from turnout.storage.tables import ledger, spend_cube

from support.databases import database_url, opened_database
from support.totals import NOW, cells, cube_cells, insert_in_batches, recomputed, requests_over

BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with opened_database(request.param, tmp_path) as database:
        yield database


def ordered(report: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(report, key=lambda g: (g["group"] is None, g["group"] or ""))


async def test_batches_add_what_the_rows_sum_to_and_a_replay_adds_nothing(database: Database) -> None:
    store = LedgerStore(database)
    requests = requests_over(3, 400)
    await insert_in_batches(store, requests)
    first = await cells(database)
    await insert_in_batches(store, requests[100:250], size=11)  # replayed, in other batches
    await store.insert([row for rows in requests[::7] for row in rows])
    assert await cells(database) == first
    assert first == await recomputed(database)
    assert len(first) > 100


async def test_a_batch_mixing_rows_already_in_new_rows_and_a_row_twice_adds_each_new_row_once(
    database: Database,
) -> None:
    store = LedgerStore(database)
    requests = [rows for rows in requests_over(2, 300) if rows]
    await insert_in_batches(store, requests[:150])
    before = await store.count()
    # a chunk whose new rows sit between rows already in (SQLite learns which were new from them)
    mixed = [row for i in range(100, 200) for row in requests[i]]
    twice = requests[199][-1]
    inserted = await store.insert([*mixed, twice])
    new = sum(len(rows) for rows in requests[150:200])
    assert inserted == new and await store.count() == before + new
    assert await cells(database) == await recomputed(database)


async def test_one_batch_from_many_keys_adds_what_its_rows_sum_to(database: Database) -> None:
    """A second's rows from as many keys and teams as rows: each adds to cells of its own (about
    ten), so one batch writes several statements' worth of cells (spend/ledger_store.py binds
    them by position, CHUNK at a time): the totals and the cube still equal the rows' sums."""
    store = LedgerStore(database)
    spread = [
        [msgspec.structs.replace(row, key_id=f"key-{i}", team_id=f"team-{i}") for row in rows]
        for i, rows in enumerate(requests_over(0.01, 500))
    ]
    assert await store.insert([row for rows in spread for row in rows]) == sum(map(len, spread))
    written, written_cube = await cells(database), await cube_cells(database)
    assert len(written) > 10 * CHUNK and len(written_cube) > 10 * CHUNK
    assert written == await recomputed(database)
    async with database.engine.begin() as conn:
        await conn.execute(spend_cube.delete())
        await conn.run_sync(backfill_cube)
    assert written_cube == await cube_cells(database)


async def test_a_row_the_store_writes_is_stored_as_sqlalchemy_stores_it(database: Database) -> None:
    # queries compare the stored text of `at` (SQLite): a row stored in another form falls into
    # the wrong hour, day or budget window
    fields: dict[str, Any] = {
        "at": dt.datetime(2026, 1, 1, 11, tzinfo=dt.UTC).timestamp(),
        "api": "chat",
        "key_id": "k",
        "team_id": "t",
        "user_id": "u",
        "alias": "a",
        "deployment": "d",
        "provider": "p",
        "model": "m",
        "stream": True,
        "status": 499,
        "input_tokens": 3,
        "estimated": True,
        "cost_micros": 7,
        "service_tier": "flex",
        "price_version": "2026-01-01",
        "reason": "client_closed",
        "customer_price_micros": 9,
        "preset": "x",
        "rehearsal": False,
        "attempts": 2,
        "features": 5,
    }
    ours = LedgerEntry(request_id="ours", attempt=2, **fields)
    theirs = LedgerEntry(request_id="theirs", attempt=2, **fields)
    await LedgerStore(database).insert([ours])
    async with database.engine.begin() as conn:
        await conn.execute(sa.insert(ledger), [as_row(theirs)])
    columns = list(ledger.c.keys())
    async with database.engine.connect() as conn:  # the driver's values, as stored
        raw = f"SELECT {', '.join(columns)} FROM ledger ORDER BY request_id"
        stored = [dict(zip(columns, row, strict=True)) for row in await conn.exec_driver_sql(raw)]
    assert [row.pop("request_id") for row in stored] == ["ours", "theirs"]
    assert stored[0] == stored[1]
    assert "11:00:00" in str(stored[0]["at"])


async def test_the_report_from_totals_equals_the_report_from_rows_for_any_span(database: Database) -> None:
    await insert_in_batches(LedgerStore(database), requests_over(3, 600))
    rng = random.Random(7)
    spans: list[tuple[dt.datetime, dt.datetime | None]] = [
        (NOW - dt.timedelta(days=30), None),  # everything
        (NOW - dt.timedelta(hours=2), None),  # within the latest hours
        (NOW.replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1), None),  # on the hour
    ]
    for _ in range(12):
        start = NOW - dt.timedelta(seconds=rng.random() * 3.5 * 86400)
        spans.append((start, start + dt.timedelta(seconds=rng.random() * 2 * 86400)))
    async with database.engine.connect() as conn:
        for since, until in spans:
            for by in REPORT_BY:
                expected = await rows_report(conn, by, [(since, until)])
                got = await spend_report(database, by, since, until)
                assert ordered(got) == ordered(expected), (by, since, until)
                assert got == sorted(got, key=lambda g: -g["cost_micros"])  # dearest first


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns", "Europe/Paris"])
async def test_a_budget_window_off_the_hour_is_summed_exactly(database: Database, zone: str) -> None:
    await insert_in_batches(LedgerStore(database), requests_over(40, 3000))
    tz = time_zone(zone)
    async with database.engine.connect() as conn:
        for period in ("daily", "weekly", "monthly", "never"):
            start, end = window(period, tz, NOW)  # type: ignore[arg-type]
            for scope, column in (
                ("key", ledger.c.key_id),
                ("team", ledger.c.team_id),
                ("user", ledger.c.user_id),
            ):
                value = {"key": "k1", "team": "red", "user": "u1"}[scope]
                rows = sa.select(sa.func.coalesce(sa.func.sum(ledger.c.cost_micros), 0)).where(
                    column == value, ledger.c.at >= start, *(() if end is None else (ledger.c.at < end,))
                )
                expected = int((await conn.execute(rows)).scalar_one())
                assert expected > 0
                assert await window_cost(conn, scope, value, start, end) == expected, (period, scope)


async def test_retention_deletes_old_rows_a_bounded_number_at_a_time(database: Database) -> None:
    store = LedgerStore(database)
    await insert_in_batches(store, requests_over(5, 300))
    since = NOW - dt.timedelta(days=6)
    before = {by: await spend_report(database, by, since) for by in REPORT_BY}
    lifetime = Budgets(clock=lambda: NOW)
    await lifetime.load(database)
    retention = LedgerRetention(database, days=2, clock=lambda: NOW, batch=25)
    horizon = (NOW - dt.timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    async with database.engine.connect() as conn:
        old = (await conn.execute(sa.select(sa.func.count()).where(ledger.c.at < horizon))).scalar_one()
        kept = (await conn.execute(sa.select(sa.func.count()).where(ledger.c.at >= horizon))).scalar_one()
    assert old > 100
    rounds = []
    while True:
        done = await retention.prune()
        rounds.append(done)
        if not done:
            break
    assert max(rounds) <= 25 and len(rounds) >= old // 25  # never more than a batch a round
    assert retention.deleted == old
    async with database.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(ledger))).scalar_one() == kept
        assert (await conn.execute(sa.select(sa.func.min(ledger.c.at)))).scalar_one().replace(
            tzinfo=dt.UTC
        ) >= horizon
    for by in REPORT_BY:  # the deleted rows still count, from the totals
        assert await spend_report(database, by, since) == before[by]
    again = Budgets(clock=lambda: NOW)
    await again.load(database)
    assert again.key_spent == lifetime.key_spent and sum(again.key_spent.values()) > 0
    # a span starting inside a deleted hour is widened to that whole hour
    inside = horizon - dt.timedelta(hours=5, minutes=20)
    widened = await spend_report(database, "key", inside)
    assert widened == await spend_report(database, "key", inside.replace(minute=0))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_upgrading_computes_the_totals_of_the_rows_already_in_the_ledger(
    backend: str, tmp_path: Path
) -> None:
    """A ledger written before migration 0012 gets the same totals as one written batch by batch
    since: start-up and the report read the same figures either way."""
    # (a ledger of 0011 has no search units nor media units: 0024 and 0026 added them)
    requests = [
        [msgspec.structs.replace(e, search_units=0, images=0, audio_seconds=0, characters=0) for e in rows]
        for rows in requests_over(20, 500, now=dt.datetime.now(dt.UTC))
    ]
    entries = [row for rows in requests for row in rows]
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    async with (
        database_url(backend, tmp_path / "old") as old_url,
        database_url(backend, tmp_path / "new") as new_url,
    ):
        old = create_async_engine(old_url)
        async with old.begin() as conn:
            await conn.run_sync(lambda c: upgrade_with_alembic(c, "0011"))
            # the ledger as it was at 0011 (later revisions added columns)
            known = await conn.run_sync(
                lambda c: {col["name"] for col in sa.inspect(c).get_columns("ledger")}
            )
            await conn.execute(
                ledger.insert(), [{k: v for k, v in as_row(e).items() if k in known} for e in entries]
            )
        await old.dispose()
        upgraded = await Database.open(old_url)  # upgrades to the head
        fresh = await Database.open(new_url)
        try:
            await insert_in_batches(LedgerStore(fresh), requests)
            assert await cells(upgraded) == await cells(fresh)
            loaded = []
            for database in (upgraded, fresh):
                budgets = Budgets()
                await budgets.load(database)
                loaded.append(budgets.key_spent)
            assert loaded[0] == loaded[1] and sum(loaded[0].values()) > 0
        finally:
            await upgraded.close()
            await fresh.close()


MEDIA_UNITS = ("images", "audio_seconds", "characters")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("revision", "added"),
    [
        pytest.param("0026", ("search_units", *MEDIA_UNITS), id="search-units-0027"),
        pytest.param("0027", MEDIA_UNITS, id="media-units-0028"),
    ],
)
async def test_upgrading_adds_the_units_already_in_the_ledger_to_the_totals(
    backend: str, revision: str, added: tuple[str, ...], tmp_path: Path
) -> None:
    """Reranks and image and audio requests recorded before 0027 and 0028 (their search units,
    images, seconds of audio and characters in the ledger's rows, not yet in the totals) get them
    into every cell of both kinds of totals, as a ledger written batch by batch since has them."""
    requests = requests_over(20, 300, now=dt.datetime.now(dt.UTC))
    entries = [row for rows in requests for row in rows]
    assert all(sum(getattr(e, unit) for e in entries) > 0 for unit in added)
    then = tuple(s for s in SUMMED if s not in added)  # what the totals summed at `revision`
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    async with (
        database_url(backend, tmp_path / "old") as old_url,
        database_url(backend, tmp_path / "new") as new_url,
    ):
        old = create_async_engine(old_url)
        async with old.begin() as conn:
            await conn.run_sync(lambda c: upgrade_with_alembic(c, revision))
            await conn.execute(ledger.insert(), [as_row(e) for e in entries])
            await conn.run_sync(lambda c: backfill(c, summed=then))
            await conn.run_sync(lambda c: backfill_cube(c, summed=then))
        await old.dispose()
        upgraded = await Database.open(old_url)  # upgrades to the head
        fresh = await Database.open(new_url)
        try:
            await insert_in_batches(LedgerStore(fresh), requests)
            assert await cells(upgraded) == await cells(fresh)
            assert await cube_cells(upgraded) == await cube_cells(fresh)
            report = await spend_report(upgraded, "team", dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
            for unit in added:
                assert sum(g[unit] for g in report) == sum(getattr(e, unit) for e in entries)
        finally:
            await upgraded.close()
            await fresh.close()
