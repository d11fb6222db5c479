"""The ledger's totals by every dimension at once (`tables.spend_cube`): one cell per hour (and per
day) and per combination of key, team, user, alias, preset, model, deployment and provider that
had rows in it, so `GET /admin/spend` can filter by some dimensions and group by others (a team's
spend by model, a key's by deployment) without reading the rows.

Tokens, money and `attempts` add up over any set of cells. Requests do not: a request whose
attempts went to two deployments has rows in two cells, and grouped by alias it is still one
request. So each cell also counts requests as seen through every subset of the attempt-level
dimensions (model, deployment, provider: bits 1, 2, 4 of a mask): `requests_<mask>` counts a
request once for each distinct value of the mask's dimensions among its rows (in the cell of the
first such row), and `failed_<mask>` those none of whose rows with that value answered. Mask 0 is
`requests`/`failed` (a request once); a query sums the mask of the attempt-level dimensions it
groups or filters by, and is exact.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from turnout.storage.rollups import GRAINS, SUMMED, _bucket_sql, counts_of
from turnout.storage.tables import ledger, spend_cube

# dimension → the ledger's (and the cube's) column
CUBE_DIMS: dict[str, str] = {
    "key": "key_id",
    "team": "team_id",
    "user": "user_id",
    "alias": "alias",
    "preset": "preset",
    "model": "model",
    "deployment": "deployment",
    "provider": "provider",
}
ATTEMPT_DIMS = ("model", "deployment", "provider")  # may differ between a request's rows
MASKS = range(1 << len(ATTEMPT_DIMS))
MASKED = tuple(f"requests_{m}" for m in MASKS[1:]) + tuple(f"failed_{m}" for m in MASKS[1:])


def cube_counts_of(summed: tuple[str, ...]) -> tuple[str, ...]:
    """A cell's figures when the ledger's columns `summed` are summed (a migration names those of
    its own revision)."""
    return (*counts_of(summed), *MASKED)


CUBE_COUNTS = cube_counts_of(SUMMED)
CUBE_GRAINS = ("hour", "day")
CUBE_KEY = ("grain", "bucket", *CUBE_DIMS.values())


def mask_of(dims: set[str] | frozenset[str]) -> int:
    """The mask of the attempt-level dimensions among `dims`."""
    return sum(1 << i for i, d in enumerate(ATTEMPT_DIMS) if d in dims)


def requests_column(mask: int) -> str:
    return "requests" if mask == 0 else f"requests_{mask}"


def failed_column(mask: int) -> str:
    return "failed" if mask == 0 else f"failed_{mask}"


def _hour_cells(
    dialect: str, since: dt.datetime | None = None, summed: tuple[str, ...] = SUMMED
) -> sa.Select[tuple[object, ...]]:
    """The hour cells as the ledger's rows make them, each row flagged per mask (window functions):
    the first row of its request with its mask's values, and whether one of those answered."""
    c = ledger.c
    one: sa.ColumnElement[int] = sa.literal_column("1")
    zero: sa.ColumnElement[int] = sa.literal_column("0")
    ok = sa.case((c.status < 400, one), else_=zero)
    flags = []
    for m in MASKS:
        part = [c.request_id, *(c[d] for i, d in enumerate(ATTEMPT_DIMS) if m & (1 << i))]
        first = sa.case(
            (sa.func.row_number().over(partition_by=part, order_by=c.attempt) == 1, one), else_=zero
        )
        flags += [first.label(f"first_{m}"), sa.func.max(ok).over(partition_by=part).label(f"answered_{m}")]
    rows = (
        sa.select(
            c.at,
            *(sa.func.coalesce(c[col], sa.literal_column("''")).label(col) for col in CUBE_DIMS.values()),
            *(c[s] for s in summed),
            sa.case((c.cost_micros.is_(None), one), else_=zero).label("cost_unknown"),
            sa.case((c.estimated, one), else_=zero).label("estimated"),
            *flags,
        )
        .where(*(() if since is None else (c.at >= since,)))
        .subquery()
    )
    r = rows.c
    bucket = _bucket_sql(dialect, "hour", r.at)
    dims = [r[col] for col in CUBE_DIMS.values()]

    def failed(m: int) -> sa.ColumnElement[int]:
        return sa.func.sum(r[f"first_{m}"] * (one - r[f"answered_{m}"]))

    return sa.select(
        sa.literal("hour").label("grain"),
        bucket.label("bucket"),
        *dims,
        sa.func.sum(r.first_0).label("requests"),
        sa.func.count().label("attempts"),
        failed(0).label("failed"),
        *(sa.func.coalesce(sa.func.sum(r[s]), 0).label(s) for s in summed),
        sa.func.sum(r.cost_unknown).label("cost_unknown"),
        sa.func.sum(r.estimated).label("estimated"),
        *(sa.func.sum(r[f"first_{m}"]).label(f"requests_{m}") for m in MASKS[1:]),
        *(failed(m).label(f"failed_{m}") for m in MASKS[1:]),
    ).group_by(bucket, *dims)


def _day_cells(dialect: str, counts: tuple[str, ...] = CUBE_COUNTS) -> sa.Select[tuple[object, ...]]:
    """The day cells summed from the hour cells (a request lies in one hour)."""
    c = spend_cube.c
    bucket = _bucket_sql(dialect, "day", c.bucket)
    dims = [c[col] for col in CUBE_DIMS.values()]
    return (
        sa.select(
            sa.literal("day").label("grain"),
            bucket.label("bucket"),
            *dims,
            *(sa.func.sum(c[n]).label(n) for n in counts),
        )
        .where(c.grain == "hour")
        .group_by(bucket, *dims)
    )


def backfill_cube(conn: sa.Connection, summed: tuple[str, ...] = SUMMED) -> None:
    """Compute every cell from the ledger's rows into an empty spend_cube, run by the database. A
    migration passes the ledger columns its revision sums (`summed`), so that adding one here later
    does not change what it does."""
    dialect = conn.dialect.name
    into = spend_cube.insert()
    counts = cube_counts_of(summed)
    conn.execute(into.from_select([*CUBE_KEY, *counts], _hour_cells(dialect, summed=summed)))
    conn.execute(into.from_select([*CUBE_KEY, *counts], _day_cells(dialect, counts)))


assert set(CUBE_GRAINS) <= set(GRAINS)
