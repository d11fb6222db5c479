"""The shape of the ledger's running totals (`tables.spend_rollups`): their grains, dimensions and
sums, and the SQL that computes them from the ledger's rows (migration 0012's backfill, the
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
    "provider": "provider",  # (0018)
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
    "search_units",  # (0027)
    "images",  # (0028) images generated, seconds of audio transcribed, characters read aloud
    "audio_seconds",
    "characters",
)


def counts_of(summed: tuple[str, ...]) -> tuple[str, ...]:
    """A cell's figures when the ledger's columns `summed` are summed (a migration names those of
    its own revision)."""
    return ("requests", "attempts", "failed", *summed, "cost_unknown", "estimated")


COUNTS = counts_of(SUMMED)
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


def _bucket_sql(
    dialect: str, grain: str, column: sa.ColumnElement[dt.datetime]
) -> sa.ColumnElement[dt.datetime]:
    """The bucket of the instant in `column`, computed by the database, typed as the table stores
    it."""
    # constants written into the SQL, not bound: PostgreSQL groups by an expression only when
    # it is the very same text as the selected one
    stamp = sa.DateTime(timezone=True)
    size = GRAINS[grain]
    if not size:
        return sa.literal(ALL_TIME, stamp)  # one bucket: not grouped by
    seconds: sa.ColumnElement[int] = sa.literal_column(str(size))
    if dialect == "postgresql":
        epoch = sa.cast(sa.extract("epoch", column), sa.Double)  # (numeric arithmetic is slower)
        return sa.type_coerce(sa.func.to_timestamp(sa.func.floor(epoch / seconds) * seconds), stamp)
    # SQLite keeps datetimes as "YYYY-MM-DD HH:MM:SS.ffffff" text, in UTC here
    # (SQLite divides integers as integers)
    since_epoch = sa.cast(sa.func.strftime(sa.literal_column("'%s'"), column), sa.Integer)
    start = since_epoch.op("/")(seconds).op("*")(seconds)
    text = sa.func.strftime(
        sa.literal_column("'%Y-%m-%d %H:%M:%S.000000'"), start, sa.literal_column("'unixepoch'")
    )
    return sa.type_coerce(text, stamp)


def cells_query(
    dialect: str, grain: str, dim: str, since: dt.datetime | None = None, summed: tuple[str, ...] = SUMMED
) -> sa.Select[tuple[object, ...]]:
    """Every cell of (`grain`, `dim`) as the ledger's rows (from `since`) make them: each request's
    rows summed first (hashed, not sorted: a count of distinct ids sorts every row), then the
    requests."""
    bucket = _bucket_sql(dialect, grain, ledger.c.at)
    value = sa.func.coalesce(ledger.c[DIMS[dim]], sa.literal_column("''"))
    one: sa.ColumnElement[int] = sa.literal_column("1")
    zero: sa.ColumnElement[int] = sa.literal_column("0")
    per_request = (
        sa.select(
            value.label("value"),
            bucket.label("bucket"),
            sa.func.count().label("rows"),
            sa.func.max(sa.case((ledger.c.status < 400, one), else_=zero)).label("answered"),
            *(sa.func.sum(ledger.c[c]).label(c) for c in summed),
            sa.func.sum(sa.case((ledger.c.cost_micros.is_(None), one), else_=zero)).label("cost_unknown"),
            sa.func.sum(sa.case((ledger.c.estimated, one), else_=zero)).label("estimated"),
        )
        .group_by(ledger.c.request_id, value, *((bucket,) if GRAINS[grain] else ()))
        .where(*(() if since is None else (ledger.c.at >= since,)))
        .subquery()
    )
    r = per_request.c
    return sa.select(
        sa.literal(grain).label("grain"),
        sa.literal(dim).label("dim"),
        r.value,
        r.bucket,
        sa.func.count().label("requests"),
        sa.func.sum(r.rows).label("attempts"),
        sa.func.sum(one - r.answered).label("failed"),
        *(sa.func.coalesce(sa.func.sum(r[c]), 0).label(c) for c in summed),
        sa.func.sum(r.cost_unknown).label("cost_unknown"),
        sa.func.sum(r.estimated).label("estimated"),
    ).group_by(r.value, r.bucket)


def coarser_query(
    dialect: str, grain: str, dim: str, finer: str, counts: tuple[str, ...] = COUNTS
) -> sa.Select[tuple[object, ...]]:
    """The cells of (`grain`, `dim`) summed from those of a finer grain (exact: a request lies in
    one bucket of each grain)."""
    cells = spend_rollups.c
    bucket = _bucket_sql(dialect, grain, cells.bucket)
    return (
        sa.select(
            sa.literal(grain).label("grain"),
            sa.literal(dim).label("dim"),
            cells.value,
            bucket.label("bucket"),
            *(sa.func.sum(cells[c]).label(c) for c in counts),
        )
        .where(cells.grain == finer, cells.dim == dim)
        .group_by(cells.value, *((bucket,) if GRAINS[grain] else ()))
    )


def backfill(
    conn: sa.Connection,
    now: dt.datetime | None = None,
    dims: tuple[str, ...] = tuple(DIMS),
    summed: tuple[str, ...] = SUMMED,
) -> None:
    """Compute every cell of `dims` from the ledger's rows into spend_rollups (empty of them), run
    by the database: per dimension, hours (and recent quarter-hours) from the rows, days from the
    hours, all time from the days. A migration passes the ledger columns its revision sums
    (`summed`), so that adding one here later does not change what it does."""
    dialect = conn.dialect.name
    recent = (now or dt.datetime.now(dt.UTC)) - RECENT_QUARTERS
    into = spend_rollups.insert()
    counts = counts_of(summed)
    columns = [*KEY, *counts]
    for dim in dims:
        conn.execute(into.from_select(columns, cells_query(dialect, "hour", dim, summed=summed)))
        conn.execute(into.from_select(columns, coarser_query(dialect, "day", dim, "hour", counts)))
        conn.execute(into.from_select(columns, coarser_query(dialect, "all", dim, "day", counts)))
        if dim in FINE_DIMS:
            conn.execute(into.from_select(columns, cells_query(dialect, "quarter", dim, recent, summed)))
