"""The shape of the ledger's running totals (`tables.spend_rollups`): their grains, dimensions and
sums, and the SQL that computes them from the ledger's rows (migration 0010's backfill, the
benchmark's fill). What the ledger writer adds batch by batch (spend/rollups.py) is the same sum.

A cell counts, for one grain's bucket and one value of one dimension: the rows (`attempts`), the
distinct requests with a row there (`requests`), the requests none of whose rows there answered
(`failed`), and sums of tokens and money. Every row of a request carries the request's arrival
time, so a request lies in one bucket of each grain and cells of a finer grain add up exactly.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from turnout.storage.tables import ledger, spend_rollups

ALL_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# grain → its length in seconds (0: one bucket for all time, at ALL_TIME)
GRAINS: dict[str, int] = {"quarter": 900, "hour": 3600, "day": 86400, "all": 0}

# dimension → the ledger column it groups by
DIMS: dict[str, str] = {
    "key": "key_id",
    "team": "team_id",
    "user": "user_id",
    "model": "model",
    "alias": "alias",
    "deployment": "deployment",
    "preset": "preset",
    "preset_team": "preset_team_id",
}

# the dimensions with quarter-hour cells: budgets' subjects (a window starting at a local midnight
# 30 or 45 minutes off the hour is summed exactly), kept for RECENT_QUARTERS
FINE_DIMS = ("key", "team", "user")
RECENT_QUARTERS = dt.timedelta(days=35)  # longer than any budget window that is not `never`

# ledger columns summed as they are (NULL as 0)
SUMMED = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micros",
    "customer_price_micros",
    "revenue_share_micros",
)
COUNTS = ("requests", "attempts", "failed", *SUMMED, "cost_unknown", "estimated")
KEY = ("grain", "dim", "value", "bucket")


def grains_of(dim: str) -> tuple[str, ...]:
    return tuple(GRAINS) if dim in FINE_DIMS else ("hour", "day", "all")


def bucket_of(at: float, grain: str) -> dt.datetime:
    """The start (UTC) of the `grain` bucket holding the instant `at` (unix seconds)."""
    size = GRAINS[grain]
    if not size:
        return ALL_TIME
    return dt.datetime.fromtimestamp(int(at // size) * size, dt.UTC)


def floor_to(instant: dt.datetime, grain: str) -> dt.datetime:
    return bucket_of(instant.timestamp(), grain)


def ceil_to(instant: dt.datetime, grain: str) -> dt.datetime:
    floor = floor_to(instant, grain)
    return floor if floor == instant else floor + dt.timedelta(seconds=GRAINS[grain])


def _bucket_sql(dialect: str, grain: str) -> sa.ColumnElement[dt.datetime]:
    """The bucket of a ledger row's `at`, computed by the database, typed as the table stores it."""
    # constants written into the SQL, not bound: PostgreSQL groups by an expression only when
    # it is the very same text as the selected one
    stamp = sa.DateTime(timezone=True)
    size = GRAINS[grain]
    if not size:
        return sa.literal(ALL_TIME, stamp)  # one bucket: not grouped by
    seconds: sa.ColumnElement[int] = sa.literal_column(str(size))
    if dialect == "postgresql":
        epoch = sa.extract("epoch", ledger.c.at)
        return sa.type_coerce(sa.func.to_timestamp(sa.func.floor(epoch / seconds) * seconds), stamp)
    # SQLite keeps datetimes as "YYYY-MM-DD HH:MM:SS.ffffff" text, in UTC here
    # (SQLite divides integers as integers)
    start: sa.ColumnElement[int] = sa.literal_column(
        f"CAST(strftime('%s', ledger.at) AS INTEGER) / {size} * {size}"
    )
    text = sa.func.strftime(
        sa.literal_column("'%Y-%m-%d %H:%M:%S.000000'"), start, sa.literal_column("'unixepoch'")
    )
    return sa.type_coerce(text, stamp)


def cells_query(
    dialect: str, grain: str, dim: str, since: dt.datetime | None = None
) -> sa.Select[tuple[object, ...]]:
    """Every cell of (`grain`, `dim`) as the ledger's rows (from `since`) make them."""
    bucket = _bucket_sql(dialect, grain)
    value = sa.func.coalesce(ledger.c[DIMS[dim]], sa.literal_column("''"))
    requests = sa.func.count(sa.distinct(ledger.c.request_id))
    answered = sa.func.count(sa.distinct(sa.case((ledger.c.status < 400, ledger.c.request_id))))
    query = sa.select(
        sa.literal(grain).label("grain"),
        sa.literal(dim).label("dim"),
        value.label("value"),
        bucket.label("bucket"),
        requests.label("requests"),
        sa.func.count().label("attempts"),
        (requests - answered).label("failed"),
        *(sa.func.coalesce(sa.func.sum(ledger.c[c]), 0).label(c) for c in SUMMED),
        sa.func.sum(sa.case((ledger.c.cost_micros.is_(None), 1), else_=0)).label("cost_unknown"),
        sa.func.sum(sa.case((ledger.c.estimated, 1), else_=0)).label("estimated"),
    ).group_by(value, *((bucket,) if GRAINS[grain] else ()))
    if since is not None:
        query = query.where(ledger.c.at >= since)
    return query


def backfill(conn: sa.Connection, now: dt.datetime | None = None) -> None:
    """Compute every cell from the ledger's rows into an empty spend_rollups (one statement per
    grain and dimension, run by the database)."""
    dialect = conn.dialect.name
    recent = (now or dt.datetime.now(dt.UTC)) - RECENT_QUARTERS
    for dim in DIMS:
        for grain in grains_of(dim):
            query = cells_query(dialect, grain, dim, recent if grain == "quarter" else None)
            conn.execute(spend_rollups.insert().from_select([*KEY, *COUNTS], query))
