"""`GET /admin/spend`'s figures: spend over [since, until) filtered by some dimensions and grouped
by others, as totals or a series of hour or day buckets (UTC), read from the running totals.

A query that touches at most one dimension (spend by model; one team's spend) reads the totals by
one dimension (`spend_rollups`); any other reads the totals by every dimension at once
(`spend_cube`). Whole hours and days come from those; the parts of the span that are not whole
hours (under an hour at each edge) are summed from the ledger's rows, so figures are exactly what
the rows sum to. Where ledger retention has deleted rows, such an edge is widened to its hour; where
the hour cells are pruned (`storage.hourly_totals_retention_days`), to its day, and an hour series
reaching back there is refused (spend/horizons.py).

`requests` counts client requests, once per group; `attempts` the ledger's rows (one per upstream
attempt); `failed` the requests none of whose attempts in the group answered; tokens and money sum
every attempt (`storage.cube` explains how requests stay exact when attempts differ)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.domain.errors import InvalidRequest
from turnout.spend.horizons import horizons
from turnout.spend.totals import Piece, Span, cover
from turnout.storage.cube import CUBE_DIMS, failed_column, mask_of, requests_column
from turnout.storage.database import Database
from turnout.storage.rollups import DIMS, floor_to
from turnout.storage.tables import ledger, spend_cube, spend_rollups
from turnout.storage.times import as_utc

DIMENSIONS = ("team", "key", "user", "model", "alias", "deployment", "provider", "preset")
INTERVALS = ("hour", "day")
FIGURES = (
    "requests",
    "attempts",
    "failed",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micros",
    "customer_price_micros",
    "revenue_share_micros",
    "search_units",
    "images",
    "audio_seconds",
    "characters",
    "cost_unknown",
    "estimated",
)
_ADDED = FIGURES[3:-2]  # summed as they are (not cost_unknown, estimated)


@dataclass(frozen=True, slots=True)
class SpendQuery:
    since: dt.datetime
    until: dt.datetime
    group_by: tuple[str, ...] = ()
    where: Mapping[str, str] = field(default_factory=dict)  # dimension → the one value kept
    interval: str | None = None  # hour | day: a series; None: totals over the span


@dataclass(slots=True)
class Group:
    values: tuple[str | None, ...]  # in the order of group_by
    bucket: dt.datetime | None
    figures: dict[str, int]


GroupKey = tuple[tuple[str | None, ...], dt.datetime | None]


async def spend_over(database: Database, query: SpendQuery) -> tuple[list[Group], dict[str, int]]:
    """The groups (in the order of `ordered`) and the totals over all of them."""
    async with database.engine.connect() as conn:
        since, until = await _within_horizons(conn, query)
        grains = ("hour",) if query.interval == "hour" else ("hour", "day")
        pieces, spans = cover(since, until, grains)
        groups = await _read(conn, query, pieces, spans)
        totals = groups
        if query.group_by or query.interval is not None:
            totals = await _read(conn, SpendQuery(since, until, (), query.where, None), pieces, spans)
    total = next(iter(totals.values()), None)
    return ordered(groups), (total.figures if total else dict.fromkeys(FIGURES, 0))


def ordered(groups: dict[GroupKey, Group]) -> list[Group]:
    """Oldest bucket first; within one, dearest first, then by value (none last)."""
    far = dt.datetime.min.replace(tzinfo=dt.UTC)

    def order(g: Group) -> tuple[Any, ...]:
        return (g.bucket or far, -g.figures["cost_micros"], tuple((v is None, v or "") for v in g.values))

    return sorted(groups.values(), key=order)


async def _within_horizons(conn: AsyncConnection, query: SpendQuery) -> tuple[dt.datetime, dt.datetime]:
    """The query's span widened to what pruning left of it; an hour series needs the hour cells."""
    kept = await horizons(conn)
    since = as_utc(query.since)
    if query.interval == "hour" and not kept.has_hours(since):
        assert kept.hours is not None
        raise InvalidRequest(
            f"Hourly figures are kept from {kept.hours.isoformat()} on "
            "(storage.hourly_totals_retention_days); ask for interval=day, or a later 'since'.",
            param="interval",
        )
    widened, until = kept.widened(since, as_utc(query.until))
    assert until is not None
    return widened, until


async def _read(
    conn: AsyncConnection, query: SpendQuery, pieces: list[Piece], spans: list[Span]
) -> dict[GroupKey, Group]:
    groups: dict[GroupKey, Group] = {}
    if pieces:
        rows = await conn.execute(_from_totals(query, pieces))
        _merge(groups, query, rows, None)
    for span in spans:
        bucket = None if query.interval is None else floor_to(span[0], query.interval)
        _merge(groups, query, await conn.execute(_from_rows(query, span)), bucket)
    return groups


def _merge(groups: dict[GroupKey, Group], query: SpendQuery, rows: Any, bucket: dt.datetime | None) -> None:
    n = len(query.group_by)
    for row in rows:
        figures = {f: int(row._mapping[f] or 0) for f in FIGURES}
        if not figures["attempts"]:
            continue
        values = tuple(v or None for v in row[:n])
        at = bucket
        if query.interval is not None and at is None:
            at = floor_to(as_utc(row._mapping["bucket"]), query.interval)
        held = groups.get((values, at))
        if held is None:
            groups[(values, at)] = Group(values, at, figures)
        else:
            for f in FIGURES:
                held.figures[f] += figures[f]


def _one_dimension(query: SpendQuery) -> str | None:
    """The dimension of `spend_rollups` a query touching at most one can read (None: the cube)."""
    used = set(query.group_by) | set(query.where)
    if not used:
        return "key"  # every request has one key: summed over keys, each request once
    dim = next(iter(used))
    return dim if len(used) == 1 and dim in DIMS else None


def _in_pieces(table: sa.Table, pieces: list[Piece]) -> sa.ColumnElement[bool]:
    c = table.c
    return sa.or_(
        *(
            sa.and_(c.grain == grain, c.bucket >= start, *(() if end is None else (c.bucket < end,)))
            for grain, start, end in pieces
        )
    )


def _from_totals(query: SpendQuery, pieces: list[Piece]) -> sa.Select[Any]:
    dim = _one_dimension(query)
    series = () if query.interval is None else ("bucket",)
    if dim is not None:
        c = spend_rollups.c
        grouped: Sequence[sa.ColumnElement[Any]] = [c.value.label(d) for d in query.group_by]
        where = [c.dim == dim, _in_pieces(spend_rollups, pieces)]
        where += [c.value == v for v in query.where.values()]
        requests, failed = "requests", "failed"
        table = spend_rollups
    else:
        c = spend_cube.c
        grouped = [c[CUBE_DIMS[d]].label(d) for d in query.group_by]
        where = [_in_pieces(spend_cube, pieces), *(c[CUBE_DIMS[d]] == v for d, v in query.where.items())]
        mask = mask_of(set(query.group_by) | set(query.where))
        requests, failed = requests_column(mask), failed_column(mask)
        table = spend_cube
    by = [*grouped, *(table.c[s] for s in series)]
    return (
        sa.select(
            *by,
            sa.func.sum(table.c[requests]).label("requests"),
            sa.func.sum(table.c.attempts).label("attempts"),
            sa.func.sum(table.c[failed]).label("failed"),
            *(sa.func.sum(table.c[f]).label(f) for f in FIGURES[3:]),
        )
        .where(*where)
        .group_by(*by)
    )


def _from_rows(query: SpendQuery, span: Span) -> sa.Select[Any]:
    """The same figures summed from the ledger's rows over `span` (within one hour)."""
    c = ledger.c
    start, end = span
    grouped = [c[CUBE_DIMS[d]].label(d) for d in query.group_by]
    answered = sa.func.count(sa.distinct(sa.case((c.status < 400, c.request_id))))
    requests = sa.func.count(sa.distinct(c.request_id))
    where = [c.at >= start, *(() if end is None else (c.at < end,))]
    where += [c[CUBE_DIMS[d]] == v for d, v in query.where.items()]
    return (
        sa.select(
            *grouped,
            requests.label("requests"),
            sa.func.count().label("attempts"),
            (requests - answered).label("failed"),
            *(sa.func.coalesce(sa.func.sum(c[f]), 0).label(f) for f in _ADDED),
            sa.func.sum(sa.case((c.cost_micros.is_(None), 1), else_=0)).label("cost_unknown"),
            sa.func.sum(sa.case((c.estimated, 1), else_=0)).label("estimated"),
        )
        .where(*where)
        .group_by(*grouped)
    )
