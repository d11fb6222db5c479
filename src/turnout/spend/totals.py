"""Reading the running totals (spend_rollups) instead of the ledger's rows: what a budget window
holds, each key's lifetime spend, a team's charges and earnings. A span of time is cut into the
coarsest whole buckets that fit it (days, then hours, then quarter-hours at its edges); an edge
that is not on a bucket boundary (a window in a time zone off the quarter-hour, if ever) is read
from the ledger's rows. A window is a handful of cells whatever the ledger's size."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.storage.rollups import ALL_TIME, DIMS, ceil_to, floor_to
from turnout.storage.tables import ledger, spend_rollups

Span = tuple[dt.datetime, dt.datetime | None]  # [start, end); None: open-ended
Piece = tuple[str, dt.datetime, dt.datetime | None]  # a grain's buckets over a span

BUDGET_GRAINS = ("quarter", "hour", "day")


def cover(
    start: dt.datetime, end: dt.datetime | None, grains: Sequence[str]
) -> tuple[list[Piece], list[Span]]:
    """[start, end) as whole buckets of `grains` (finest first, each dividing the next) and the
    spans left over at its edges, which only the ledger's rows can answer."""
    if end is not None and end <= start:
        return [], []
    if not grains:
        return [], [(start, end)]
    coarsest = grains[-1]
    first = ceil_to(start, coarsest)
    last = None if end is None else floor_to(end, coarsest)
    if last is not None and last <= first:  # no whole bucket of this grain inside
        return cover(start, end, grains[:-1])
    pieces: list[Piece] = [(coarsest, first, last)]
    left_pieces, left_raw = cover(start, first, grains[:-1])
    pieces += left_pieces
    raw = left_raw
    if last is not None and end is not None:
        right_pieces, right_raw = cover(last, end, grains[:-1])
        pieces += right_pieces
        raw += right_raw
    return pieces, raw


def in_pieces(pieces: list[Piece]) -> sa.ColumnElement[bool]:
    return sa.or_(
        *(
            sa.and_(
                spend_rollups.c.grain == grain,
                spend_rollups.c.bucket >= start,
                *(() if end is None else (spend_rollups.c.bucket < end,)),
            )
            for grain, start, end in pieces
        )
    )


def in_spans(spans: list[Span]) -> sa.ColumnElement[bool]:
    return sa.or_(
        *(
            sa.and_(ledger.c.at >= start, *(() if end is None else (ledger.c.at < end,)))
            for start, end in spans
        )
    )


async def window_cost(
    conn: AsyncConnection, dim: str, value: str, start: dt.datetime, end: dt.datetime | None
) -> int:
    """What the ledger holds for `dim` = `value` (key, team or user) over [start, end)."""
    start, end = start.astimezone(dt.UTC), None if end is None else end.astimezone(dt.UTC)
    if start <= ALL_TIME and end is None:
        pieces: list[Piece] = [("all", ALL_TIME, None)]
        raw: list[Span] = []
    else:
        pieces, raw = cover(start, end, BUDGET_GRAINS)
    total = 0
    if pieces:
        query = sa.select(sa.func.coalesce(sa.func.sum(spend_rollups.c.cost_micros), 0)).where(
            spend_rollups.c.dim == dim, spend_rollups.c.value == value, in_pieces(pieces)
        )
        total += int((await conn.execute(query)).scalar_one())
    if raw:
        rows = sa.select(sa.func.coalesce(sa.func.sum(ledger.c.cost_micros), 0)).where(
            ledger.c[DIMS[dim]] == value, in_spans(raw)
        )
        total += int((await conn.execute(rows)).scalar_one())
    return total


async def by_value(
    conn: AsyncConnection, dim: str, total: sa.ColumnElement[int], since: dt.datetime | None = None
) -> dict[str, int]:
    """`total` (an expression over spend_rollups' columns) for each value of `dim` (none left
    out): over all time, or from `since` (the start of a UTC day)."""
    grain = "all" if since is None else "day"
    query = (
        sa.select(spend_rollups.c.value, sa.func.sum(total))
        .where(spend_rollups.c.grain == grain, spend_rollups.c.dim == dim, spend_rollups.c.value != "")
        .group_by(spend_rollups.c.value)
    )
    if since is not None:
        assert since == floor_to(since, "day"), "days are the finest grain kept for every value"
        query = query.where(spend_rollups.c.bucket >= since)
    return {value: int(amount) for value, amount in await conn.execute(query)}
