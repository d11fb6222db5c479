"""`spend report`'s figures: spend grouped by team, key, user, model, alias, deployment, preset or
provider
over [since, until), read from the running totals (whole days and hours) and, for the parts of
the span that are not whole hours, from the ledger's rows: exactly what the rows sum to, in a
handful of cells per group whatever the ledger's size.

Where ledger retention (`storage.ledger_retention_days`) has deleted the rows, an edge that is not
a whole hour is widened to its whole hour (the totals are all that is left of it); where the hour
cells are pruned (`storage.hourly_totals_retention_days`), to its whole day (spend/horizons.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.spend.horizons import horizons
from turnout.spend.totals import Span, cover, in_pieces, in_spans
from turnout.storage.database import Database
from turnout.storage.tables import ledger, spend_rollups
from turnout.storage.times import as_utc

# --by → the totals' dimension (and the ledger's column)
REPORT_BY = {
    "team": "team_id",
    "key": "key_id",
    "model": "model",
    "alias": "alias",
    "deployment": "deployment",
    "user": "user_id",
    "preset": "preset",
    "provider": "provider",
}
FIGURES = (
    "requests",
    "attempts",
    "failed",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
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
REPORT_GRAINS = ("hour", "day")


async def spend_report(
    database: Database, by: str, since: dt.datetime, until: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Spend grouped by `by` over [since, until): requests, failures, tokens by kind, cost, what
    customers paid and presets' revenue share in micro-dollars, and how many rows had no known
    price. The ledger holds a row per upstream attempt: `requests` counts client requests,
    `attempts` rows, `failed` the requests none of whose attempts (in the group) answered, and
    tokens and money sum every attempt. Dearest first."""
    since = as_utc(since)  # (SQLite compares datetimes as text, without their zone)
    until = None if until is None else as_utc(until)
    async with database.engine.connect() as conn:
        since, until = (await horizons(conn)).widened(since, until)
        pieces, spans = cover(since, until, REPORT_GRAINS)
        groups: dict[Any, dict[str, Any]] = {}
        if pieces:
            _merge(groups, await _from_totals(conn, by, pieces))
        if spans:
            _merge(groups, await rows_report(conn, by, spans))
    return sorted(groups.values(), key=lambda g: (-g["cost_micros"], g["group"] is None, g["group"] or ""))


async def _from_totals(conn: AsyncConnection, by: str, pieces: list[Any]) -> list[dict[str, Any]]:
    query = (
        sa.select(spend_rollups.c.value, *(sa.func.sum(spend_rollups.c[f]).label(f) for f in FIGURES))
        .where(spend_rollups.c.dim == by, in_pieces(pieces))
        .group_by(spend_rollups.c.value)
    )
    nullable = ledger.c[REPORT_BY[by]].nullable
    return [
        {
            "group": None if nullable and row.value == "" else row.value,
            **{f: int(row._mapping[f]) for f in FIGURES},
        }
        for row in await conn.execute(query)
    ]


async def rows_report(conn: AsyncConnection, by: str, spans: list[Span]) -> list[dict[str, Any]]:
    """The same figures summed from the ledger's rows over `spans`."""
    group = ledger.c[REPORT_BY[by]]
    answered = sa.func.count(sa.distinct(sa.case((ledger.c.status < 400, ledger.c.request_id))))
    requests = sa.func.count(sa.distinct(ledger.c.request_id))
    query = (
        sa.select(
            group.label("group"),
            requests.label("requests"),
            sa.func.count().label("attempts"),
            (requests - answered).label("failed"),
            *(sa.func.coalesce(sa.func.sum(ledger.c[f]), 0).label(f) for f in FIGURES[3:-2]),
            sa.func.sum(sa.case((ledger.c.cost_micros.is_(None), 1), else_=0)).label("cost_unknown"),
            sa.func.sum(sa.case((ledger.c.estimated, 1), else_=0)).label("estimated"),
        )
        .where(in_spans(spans))
        .group_by(group)
    )
    return [
        {k: (int(v) if k != "group" else v) for k, v in row._mapping.items()}
        for row in await conn.execute(query)
    ]


def _merge(groups: dict[Any, dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    for row in rows:
        held = groups.get(row["group"])
        if held is None:
            groups[row["group"]] = row
        else:
            for figure in FIGURES:
                held[figure] += row[figure]
