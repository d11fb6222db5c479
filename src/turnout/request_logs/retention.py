"""Request log retention: entries older than `request_logs.retention_days` are deleted, at most
`BATCH` a round (one statement, by primary key) every `INTERVAL` seconds, so a backlog is worked
off over time and never in one long transaction; a round with nothing to delete is one indexed
read and writes nothing."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import sqlalchemy as sa

from turnout.periodic import Periodic
from turnout.storage.database import Database
from turnout.storage.tables import request_logs

log = logging.getLogger("turnout.request_logs")

BATCH = 1000
INTERVAL = 5.0


class RequestLogRetention:
    def __init__(
        self,
        database: Database,
        days: int,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        batch: int = BATCH,
    ) -> None:
        self.database = database
        self.days = days
        self.clock = clock
        self.batch = batch
        self.deleted = 0  # entries deleted by this process
        self._periodic = Periodic(self.prune, INTERVAL, "pruning the request log")

    def start(self) -> None:
        self._periodic.start()

    async def prune(self) -> int:
        """One round: returns how many entries it deleted."""
        horizon = self.clock() - dt.timedelta(days=self.days)
        oldest = sa.select(request_logs.c.request_id).where(request_logs.c.at < horizon)
        async with self.database.engine.connect() as conn:  # (a read: no write lock for nothing)
            if (await conn.execute(oldest.limit(1))).first() is None:
                return 0
        doomed = sa.delete(request_logs).where(request_logs.c.request_id.in_(oldest.limit(self.batch)))
        async with self.database.engine.begin() as conn:
            deleted = int((await conn.execute(doomed)).rowcount)
        self.deleted += deleted
        log.info("request log retention: deleted %d entries from before %s", deleted, horizon.isoformat())
        return deleted

    async def aclose(self) -> None:
        await self._periodic.aclose()
