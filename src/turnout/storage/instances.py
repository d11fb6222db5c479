"""The instances sharing this database: each registers on start (a row renewed every
`BEAT_SECONDS`, expiring `LAPSE_SECONDS` later by the database's clock), so every instance knows how
many are live — and, without Redis, enforces its share of each budget. The database's clock read
with each beat corrects this instance's (storage/reference_clock.py)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from turnout.periodic import Periodic
from turnout.storage.database import Database
from turnout.storage.reference_clock import ReferenceClock
from turnout.storage.tables import instances

log = logging.getLogger("turnout")

BEAT_SECONDS = 5.0
LAPSE_SECONDS = 20.0  # an instance not heard of for this long is counted no more
FORGET_SECONDS = 24 * 3600.0  # stale rows are removed after this long (a few per beat)

UNSHARED_WARNING = (
    "{n} turnout instances share this database without storage.redis_url: each enforces 1/{n} of "
    "every budget and rate limit (so together they never overspend, but a budget or a limit can run "
    "out on one instance while another still has room); set storage.redis_url to share them exactly"
)


def database_seconds(dialect: str) -> Any:
    """The database's own clock, in unix seconds, as an SQL expression."""
    if dialect == "postgresql":
        return sa.extract("epoch", sa.func.clock_timestamp())
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


def _alive(pid: int) -> bool:
    """Is there a process `pid` on this machine (one we may not signal is alive too)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class Instances:
    def __init__(
        self,
        database: Database,
        clock: ReferenceClock,
        *,
        shared_counters: bool,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        self.database = database
        self.clock = clock
        self.shared_counters = shared_counters
        self.on_count = on_count
        self.id = "inst_" + secrets.token_hex(8)
        self.live = 1
        self._warned = False
        self._now = database_seconds(database.engine.dialect.name)
        self.beater = Periodic(self.beat, BEAT_SECONDS, "renewing this instance's registration")

    @property
    def warning(self) -> str | None:
        """What `/health/ready` and the log say while several instances share budgets by shares."""
        if self.live > 1 and not self.shared_counters:
            return UNSHARED_WARNING.format(n=self.live)
        return None

    def _row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "started_at": self._now,
            "expires_at": self._now + LAPSE_SECONDS,
            "shared_counters": self.shared_counters,
        }

    async def register(self) -> None:
        """Join (a killed predecessor on this host is forgotten at once), and start renewing."""
        row = self._row()
        async with self.database.engine.connect() as conn:
            here = await conn.execute(
                sa.select(instances.c.id, instances.c.pid).where(instances.c.host == row["host"])
            )
            dead = [r.id for r in here if r.pid != row["pid"] and not _alive(r.pid)]
        async with self.database.engine.begin() as conn:  # writes first (SQLite takes its lock)
            await conn.execute(sa.insert(instances).values(**row))
            if dead:
                await conn.execute(sa.delete(instances).where(instances.c.id.in_(dead)))
        await self.beat()
        self.beater.start()

    async def beat(self) -> None:
        """Read the database's clock, renew this instance's row (again if it was removed) and
        count the live instances."""
        async with self.database.engine.connect() as conn:
            before = self.clock.local()
            now = float((await conn.execute(sa.select(self._now))).scalar_one())
        self.clock.observe(now, "database", before)
        async with self.database.engine.begin() as conn:  # writes first (SQLite takes its lock)
            renewed = await conn.execute(
                sa.update(instances)
                .where(instances.c.id == self.id)
                .values(expires_at=self._now + LAPSE_SECONDS)
            )
            if renewed.rowcount == 0:
                await conn.execute(sa.insert(instances).values(**self._row()))
            stale = sa.select(instances.c.id).where(instances.c.expires_at < now - FORGET_SECONDS).limit(10)
            await conn.execute(sa.delete(instances).where(instances.c.id.in_(stale.scalar_subquery())))
            live = (
                await conn.execute(
                    sa.select(sa.func.count()).select_from(instances).where(instances.c.expires_at > now)
                )
            ).scalar_one()
        self._count(max(int(live), 1))

    def _count(self, live: int) -> None:
        changed, self.live = live != self.live, live
        if changed or (live > 1 and not self._warned):
            warning = self.warning
            if warning is not None:
                self._warned = True
                log.warning("%s", warning)
            elif changed:
                log.info("%d turnout instance(s) on this database", live)
        if self.on_count is not None:
            self.on_count(live)

    async def aclose(self) -> None:
        """Stop renewing, and leave: the others' shares grow at their next window."""
        await self.beater.aclose()
        try:
            async with self.database.engine.begin() as conn:
                await conn.execute(sa.delete(instances).where(instances.c.id == self.id))
        except Exception:
            log.warning("could not remove this instance's registration", exc_info=True)
