"""A ledger for tests of its running totals: requests spread over the days before `NOW`, with
every kind of row, and the totals read back or recomputed by the database from the rows."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import sqlalchemy as sa

from turnout.domain.ledger_entry import LedgerEntry
from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database
from turnout.storage.rollups import backfill
from turnout.storage.tables import spend_cube, spend_rollups

NOW = dt.datetime(2026, 12, 3, 14, 7, 31, 250000, tzinfo=dt.UTC)


def requests_over(days: float, count: int, seed: int = 13, now: dt.datetime = NOW) -> list[list[LedgerEntry]]:
    """`count` requests spread over the `days` before `now`, each its rows (1 to 3 attempts, or none
    reached), with every kind of value: no team, unknown prices, failures, presets."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        at = now.timestamp() - rng.random() * days * 86400
        key = rng.choice(["k1", "k2", "k3"])
        common: dict[str, Any] = {
            "request_id": f"req-{i}",
            "at": at,
            "api": "chat",
            "key_id": key,
            "team_id": {"k1": "red", "k2": "blue", "k3": None}[key],
            "user_id": rng.choice(["u1", None]),
            "alias": rng.choice(["fast", "smart"]),
        }
        if rng.random() < 0.05:  # reached no upstream
            out.append([LedgerEntry(attempt=0, status=429, attempts=0, **common)])
            continue
        tries = rng.choice([1, 1, 1, 2, 3])
        rows = []
        for attempt in range(1, tries + 1):
            last = attempt == tries
            preset = rng.random() < 0.2
            rows.append(
                LedgerEntry(
                    attempt=attempt,
                    attempts=tries,
                    deployment=rng.choice(["east", "west"]),
                    model=rng.choice(["gpt", "claude"]),
                    status=(200 if rng.random() < 0.9 else 503) if last else 502,
                    input_tokens=rng.randrange(1000),
                    output_tokens=rng.randrange(500),
                    cached_input_tokens=rng.randrange(100),
                    estimated=rng.random() < 0.1,
                    cost_micros=None if rng.random() < 0.05 else rng.randrange(10**7),
                    customer_price_micros=rng.randrange(10**7),
                    preset="helper" if preset else None,
                    preset_team_id="green" if preset else None,
                    revenue_share_micros=rng.randrange(1000) if preset else None,
                    search_units=i % 3,  # (not drawn from rng: the other figures stay as they were)
                    images=i % 2,
                    audio_seconds=i % 5 * 7,
                    characters=i % 4 * 130,
                    **common,
                )
            )
        out.append(rows)
    return out


async def insert_in_batches(store: LedgerStore, requests: list[list[LedgerEntry]], size: int = 37) -> None:
    for start in range(0, len(requests), size):
        await store.insert([row for rows in requests[start : start + size] for row in rows])


async def cells(database: Database) -> list[tuple[Any, ...]]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(sa.select(spend_rollups).order_by(*spend_rollups.primary_key.columns))
        return [tuple(r) for r in rows]


async def cube_cells(database: Database) -> list[tuple[Any, ...]]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(sa.select(spend_cube).order_by(*spend_cube.primary_key.columns))
        return [tuple(r) for r in rows]


async def recomputed(database: Database) -> list[tuple[Any, ...]]:
    """The totals as the database computes them from the rows (migration 0012's backfill)."""
    async with database.engine.begin() as conn:
        await conn.execute(spend_rollups.delete())
        await conn.run_sync(lambda c: backfill(c, NOW))
    return await cells(database)
