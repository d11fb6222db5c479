"""Ledger retention: rows older than `storage.ledger_retention_days` are deleted, leaving their
figures in the running totals only (every row is in them from the transaction that inserted it;
rows from before the totals existed, from migration 0012). The horizon is a whole hour, recorded
in `ledger_horizon` so reports know which edges only the totals can answer. Quarter-hour totals
older than `RECENT_QUARTERS` (which no budget window reaches) go the same way, retention or not.

The work is bounded: each round deletes at most `BATCH` ledger rows (one statement), and as many
quarter-hour cells of each dimension, every `INTERVAL` seconds (up to 1,000 rows a second: a
backlog is worked off over time, never in one long transaction); a round with nothing to delete
is one indexed read per table and writes nothing."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import sqlalchemy as sa

from turnout.periodic import Periodic
from turnout.storage.database import Database
from turnout.storage.rollups import FINE_DIMS, RECENT_QUARTERS, floor_to
from turnout.storage.tables import ledger, ledger_horizon, spend_rollups

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
    ) -> None:
        self.database = database
        self.days = days
        self.clock = clock
        self.batch = batch
        self.deleted = 0  # ledger rows deleted by this process
        self._periodic = Periodic(self.prune, INTERVAL, "pruning the ledger")

    def start(self) -> None:
        self._periodic.start()

    async def prune(self) -> int:
        """One round: returns how many ledger rows and quarter-hour cells it deleted."""
        now = self.clock()
        done = await self._delete_quarters(now - RECENT_QUARTERS)
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

    async def aclose(self) -> None:
        await self._periodic.aclose()
