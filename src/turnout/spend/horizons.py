"""What pruning has left of the past: the ledger's rows from before its horizon are deleted
(`storage.ledger_retention_days`: only the totals hold them, by the hour), and the totals' hour
cells from before theirs (`storage.hourly_totals_retention_days`: only the day cells hold them). A
span reaching back past either is widened to what is left of it: whole hours, then whole days, so
every answer is exactly what the rows of the span it covers summed to."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.storage.rollups import ceil_to, floor_to
from turnout.storage.tables import ledger_horizon, totals_horizon
from turnout.storage.times import as_utc


@dataclass(frozen=True, slots=True)
class Horizons:
    rows: dt.datetime | None = None  # the ledger's rows before it are deleted
    hours: dt.datetime | None = None  # the totals' hour cells before it are deleted (a day's start)

    def widened(
        self, since: dt.datetime, until: dt.datetime | None
    ) -> tuple[dt.datetime, dt.datetime | None]:
        """[since, until) widened to whole hours where only the totals are left, and to whole days
        where only the day cells are."""
        for horizon, grain in ((self.rows, "hour"), (self.hours, "day")):
            if horizon is None:
                continue
            if since < horizon:
                since = floor_to(since, grain)
            if until is not None and until < horizon:
                until = ceil_to(until, grain)
        return since, until

    def has_hours(self, since: dt.datetime) -> bool:
        """Are the hour cells from `since` on all kept?"""
        return self.hours is None or since >= self.hours


async def horizons(conn: AsyncConnection) -> Horizons:
    rows = (await conn.execute(sa.select(ledger_horizon.c.pruned_before))).scalar()
    hours = (
        await conn.execute(sa.select(totals_horizon.c.pruned_before).where(totals_horizon.c.grain == "hour"))
    ).scalar()
    return Horizons(None if rows is None else as_utc(rows), None if hours is None else as_utc(hours))
