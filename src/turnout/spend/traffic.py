"""The console overview's traffic: requests, failed requests, tokens and money per quarter-hour over
the last hour, per hour over the last day and per day over the last 30 days, and today's and this
month's totals (UTC) — read in one query from the running totals by team (`spend_rollups`, dim
`team`: every request has one team or none, so the cells of every team add up to each request
once), never from the ledger's rows. The ledger writer keeps the current cells up to date batch by
batch, so the newest bucket is as fresh as the journal's last flush."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from turnout.storage.database import Database
from turnout.storage.rollups import GRAINS, floor_to
from turnout.storage.tables import spend_rollups
from turnout.storage.times import as_utc

FIGURES = ("requests", "failed", "input_tokens", "output_tokens", "cost_micros", "customer_price_micros")
# window → (the grain of its buckets, how many of them, the newest included)
WINDOWS: dict[str, tuple[str, int]] = {"hour": ("quarter", 4), "day": ("hour", 24), "month": ("day", 30)}


@dataclass(slots=True)
class Point:
    bucket: dt.datetime
    figures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIGURES, 0))

    def add(self, other: dict[str, int]) -> None:
        for name in FIGURES:
            self.figures[name] += other[name]


@dataclass(frozen=True, slots=True)
class Traffic:
    series: dict[str, list[Point]]  # window (WINDOWS) → its buckets, oldest first
    today: Point
    month: Point


def _starts(now: dt.datetime) -> dict[str, dt.datetime]:
    """Each window's first bucket."""
    out = {}
    for window, (grain, count) in WINDOWS.items():
        out[window] = floor_to(now, grain) - dt.timedelta(seconds=GRAINS[grain] * (count - 1))
    return out


async def traffic(database: Database, team_id: str | None, now: dt.datetime) -> Traffic:
    """The figures of every request, or of `team_id`'s only."""
    starts = _starts(now)
    today = floor_to(now, "day")
    month = today.replace(day=1)
    first_day = min(starts["month"], month)
    c = spend_rollups.c
    where = [
        c.dim == "team",
        sa.or_(
            sa.and_(c.grain == "quarter", c.bucket >= starts["hour"]),
            sa.and_(c.grain == "hour", c.bucket >= starts["day"]),
            sa.and_(c.grain == "day", c.bucket >= first_day),
        ),
    ]
    if team_id is not None:
        where.append(c.value == team_id)
    query = (
        sa.select(c.grain, c.bucket, *(sa.func.sum(c[f]).label(f) for f in FIGURES))
        .where(*where)
        .group_by(c.grain, c.bucket)
    )
    async with database.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    cells = {(r.grain, as_utc(r.bucket)): {f: int(r._mapping[f] or 0) for f in FIGURES} for r in rows}
    series = {}
    for window, (grain, count) in WINDOWS.items():
        step = dt.timedelta(seconds=GRAINS[grain])
        points = [Point(starts[window] + step * i) for i in range(count)]
        for point in points:
            found = cells.get((grain, point.bucket))
            if found is not None:
                point.add(found)
        series[window] = points
    today_total, month_total = Point(today), Point(month)
    for (grain, bucket), figures in cells.items():
        if grain == "day" and bucket >= month:
            month_total.add(figures)
            if bucket == today:
                today_total.add(figures)
    return Traffic(series, today_total, month_total)
