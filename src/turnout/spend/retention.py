"""Ledger retention: rows older than `storage.ledger_retention_days` are deleted, leaving their
figures in the running totals only (every row is in them from the transaction that inserted it;
rows from before the totals existed, from migration 0012). The horizon is a whole hour, recorded
in `ledger_horizon` so reports know which edges only the totals can answer. Quarter-hour totals
older than `RECENT_QUARTERS` (which no budget window reaches) go the same way, retention or not;
so do hour cells, of the totals by one dimension and of the cube, older than
`storage.hourly_totals_retention_days` (default 90): the day cells keep their figures, and the
horizon (a day's start, in `totals_horizon`) tells reports to answer spans before it in whole days.

The work is bounded: each round deletes at most `BATCH` ledger rows (one statement), and as many
quarter-hour and hour cells of each dimension and hour cells of the cube, every `INTERVAL` seconds
(a backlog is worked off over time, never in one long transaction); a round with nothing to delete
is one indexed read per table and writes nothing."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.periodic import Periodic
from turnout.storage.cube import CUBE_KEY
from turnout.storage.database import Database
from turnout.storage.rollups import DIMS, FINE_DIMS, RECENT_QUARTERS, floor_to
from turnout.storage.tables import ledger, ledger_horizon, spend_cube, spend_rollups, totals_horizon

log = logging.getLogger("turnout.spend")

BATCH = 5000
INTERVAL = 5.0


class LedgerRetention:
    def __init__(
        self,
        database: Database,
        days: int | None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        batch: int = BATCH,
        hour_days: int = 90,
    ) -> None:
        self.database = database
        self.days = days
        self.hour_days = hour_days
        self.clock = clock
        self.batch = batch
        self.deleted = 0  # ledger rows deleted by this process
        self._periodic = Periodic(self.prune, INTERVAL, "pruning the ledger")

    def start(self) -> None:
        self._periodic.start()

    async def prune(self) -> int:
        """One round: returns how many ledger rows and quarter-hour and hour cells it deleted."""
        now = self.clock()
        done = await self._delete_quarters(now - RECENT_QUARTERS)
        done += await self._delete_hours(floor_to(now - dt.timedelta(days=self.hour_days), "day"))
        if self.days is not None:
            rows = await self._delete_rows(floor_to(now - dt.timedelta(days=self.days), "hour"))
            self.deleted += rows
            done += rows
        return done

    async def _delete_rows(self, horizon: dt.datetime) -> int:
        oldest = sa.select(ledger.c.request_id, ledger.c.attempt).where(ledger.c.at < horizon)
        async with self.database.engine.connect() as conn:  # (a read: no write lock for nothing)
            if (await conn.execute(oldest.limit(1))).first() is None:
                return 0
        moved = (
            sa.update(ledger_horizon)
            .where(ledger_horizon.c.id == 1, ledger_horizon.c.pruned_before < horizon)
            .values(pruned_before=horizon)
        )
        first = self.database.insert_new(ledger_horizon, "id").values(id=1, pruned_before=horizon)
        key = sa.tuple_(ledger.c.request_id, ledger.c.attempt)
        async with self.database.engine.begin() as conn:
            if (await conn.execute(moved)).rowcount == 0:
                await conn.execute(first)
            deleted = int(
                (await conn.execute(sa.delete(ledger).where(key.in_(oldest.limit(self.batch))))).rowcount
            )
        log.info("ledger retention: deleted %d rows from before %s", deleted, horizon.isoformat())
        return deleted

    async def _delete_quarters(self, before: dt.datetime) -> int:
        """Quarter-hour cells from before `before`, dimension by dimension (each an index range)."""
        cells = spend_rollups.c
        key = (cells.grain, cells.dim, cells.value, cells.bucket)
        deleted = 0
        for dim in FINE_DIMS:
            old = sa.select(*key).where(cells.grain == "quarter", cells.dim == dim, cells.bucket < before)
            async with self.database.engine.connect() as conn:
                if (await conn.execute(old.limit(1))).first() is None:
                    continue
            gone = sa.delete(spend_rollups).where(sa.tuple_(*key).in_(old.limit(self.batch)))
            async with self.database.engine.begin() as conn:
                deleted += int((await conn.execute(gone)).rowcount)
        return deleted

    async def _delete_hours(self, before: dt.datetime) -> int:
        """Hour cells from before `before` (a day's start), of each dimension's totals and of the
        cube, the horizon moved there first (in the transaction of the first deletion), so that no
        reader takes a span before it for whole hours."""
        rollup = spend_rollups.c
        rollup_key = (rollup.grain, rollup.dim, rollup.value, rollup.bucket)
        olds: list[tuple[sa.Table, tuple[sa.ColumnElement[Any], ...], sa.Select[Any]]] = [
            (
                spend_rollups,
                rollup_key,
                sa.select(*rollup_key).where(
                    rollup.grain == "hour", rollup.dim == dim, rollup.bucket < before
                ),
            )
            for dim in DIMS
        ]
        cube_key = tuple(spend_cube.c[name] for name in CUBE_KEY)
        cube_old = sa.select(*cube_key).where(spend_cube.c.grain == "hour", spend_cube.c.bucket < before)
        olds.append((spend_cube, cube_key, cube_old))
        deleted = 0
        for table, key, old in olds:
            async with self.database.engine.connect() as conn:  # (a read: no write lock for nothing)
                if (await conn.execute(old.limit(1))).first() is None:
                    continue
            gone = sa.delete(table).where(sa.tuple_(*key).in_(old.limit(self.batch)))
            async with self.database.engine.begin() as conn:
                await self._move_horizon(conn, before)
                deleted += int((await conn.execute(gone)).rowcount)
        if deleted:
            log.info("totals retention: deleted %d hour cells from before %s", deleted, before.isoformat())
        return deleted

    async def _move_horizon(self, conn: AsyncConnection, before: dt.datetime) -> None:
        moved = (
            sa.update(totals_horizon)
            .where(totals_horizon.c.grain == "hour", totals_horizon.c.pruned_before < before)
            .values(pruned_before=before)
        )
        if (await conn.execute(moved)).rowcount == 0:
            first = self.database.insert_new(totals_horizon, "grain").values(
                grain="hour", pruned_before=before
            )
            await conn.execute(first)

    async def aclose(self) -> None:
        await self._periodic.aclose()
