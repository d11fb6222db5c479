"""The ledger store's contract, on SQLite and on PostgreSQL: idempotent inserts (a replayed
entry never counts twice), exact money, and the spend report's grouping."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from turnout.domain.ledger_entry import LedgerEntry
from turnout.spend.ledger_store import LedgerStore
from turnout.spend.report import spend_report
from turnout.storage.database import Database

from support.databases import database_url

BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]


def entry(request_id: str, **fields: object) -> LedgerEntry:
    return LedgerEntry(request_id=request_id, at=time.time(), api="chat", key_id="k1", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_inserts_are_idempotent_and_money_is_exact(backend: str, tmp_path: Path) -> None:
    async with database_url(backend, tmp_path) as url:
        database = await Database.open(url)
        try:
            store = LedgerStore(database)
            big = 9_000_000_000_000  # $9 million in micro-dollars: beyond 32 bits
            first = entry("r1", cost_micros=big, customer_price_micros=big * 2, input_tokens=3_000_000_000)
            await store.insert([first, entry("r2")])
            await store.insert([entry("r1", cost_micros=1), entry("r3", cost_micros=None)])  # r1 again
            rows = {r["request_id"]: r for r in await store.entries()}
            assert sorted(rows) == ["r1", "r2", "r3"]
            assert rows["r1"]["cost_micros"] == big and rows["r1"]["input_tokens"] == 3_000_000_000
            assert rows["r3"]["cost_micros"] is None
            assert await store.count() == 3
            report = await spend_report(database, "key", datetime.now(UTC) - timedelta(hours=1))
            assert report == [
                {
                    "group": "k1",
                    "requests": 3,
                    "attempts": 3,
                    "failed": 0,
                    "input_tokens": 3_000_000_000,
                    "cached_input_tokens": 0,
                    "output_tokens": 0,
                    "cost_micros": big,
                    "customer_price_micros": big * 2,  # what customers paid: beyond 32 bits too
                    "revenue_share_micros": 0,
                    "search_units": 0,
                    "images": 0,
                    "audio_seconds": 0,
                    "characters": 0,
                    "cost_unknown": 1,
                    "estimated": 0,
                }
            ]
        finally:
            await database.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_strings_that_look_like_sql_are_just_values(backend: str, tmp_path: Path) -> None:
    async with database_url(backend, tmp_path) as url:
        database = await Database.open(url)
        try:
            store = LedgerStore(database)
            hostile = "x'); DROP TABLE ledger; --"
            await store.insert([entry(hostile, alias=hostile, model=hostile)])
            [row] = await store.entries(alias=hostile)
            assert row["request_id"] == hostile and await store.count() == 1
        finally:
            await database.close()
