"""The running totals (spend_rollups) and the totals by every dimension (spend_cube) sum the units
image and audio requests are billed by (images generated, seconds of audio transcribed, characters
read aloud), as they sum cost; the cells of the ledger's rows that have any (written since 0026) are
given theirs here.

Adds columns with a default only (`expansion`): instances of the previous version keep serving
while this one starts; the units of image and audio requests they serve meanwhile are in the
ledger's rows but not in these totals (their cost is).

Revision ID: 0028
Revises: 0027
"""

import datetime as dt
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None
expansion = True

UNITS = ("images", "audio_seconds", "characters")  # the ledger's columns (0026), summed as they are

# the shape of the totals at this revision, frozen here (storage/rollups.py and storage/cube.py
# name today's)
ROLLUP_DIMS = {
    "key": "key_id",
    "team": "team_id",
    "user": "user_id",
    "model": "model",
    "alias": "alias",
    "deployment": "deployment",
    "preset": "preset",
    "preset_team": "preset_team_id",
    "provider": "provider",
}
FINE_DIMS = ("key", "team", "user")  # with quarter-hour cells
GRAINS = {"quarter": 900, "hour": 3600, "day": 86400, "all": 0}
CUBE_COLUMNS = ("key_id", "team_id", "user_id", "alias", "preset", "model", "deployment", "provider")
CUBE_GRAINS = ("hour", "day")
ALL_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
BATCH = 1000  # cells updated per statement

Sums = defaultdict[tuple[object, ...], list[int]]


def _bucket(at: dt.datetime, grain: str) -> dt.datetime:
    size = GRAINS[grain]
    if not size:
        return ALL_TIME
    seconds = (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).timestamp()
    return dt.datetime.fromtimestamp(int(seconds // size) * size, dt.UTC)


def upgrade() -> None:
    for table in ("spend_rollups", "spend_cube"):
        with op.batch_alter_table(table) as batch:
            for unit in UNITS:
                batch.add_column(sa.Column(unit, sa.BigInteger(), nullable=False, server_default="0"))
    _backfill(op.get_bind())


def _add(sums: Sums, cell: tuple[object, ...], units: tuple[int, ...]) -> None:
    held = sums[cell]
    for i, n in enumerate(units):
        held[i] += n


def _backfill(conn: sa.Connection) -> None:
    """Each cell's units, summed from the ledger's rows that have any (image and audio requests
    since 0026); a cell pruned since (an old hour or quarter-hour) stays pruned."""
    columns = sorted({*ROLLUP_DIMS.values(), *CUBE_COLUMNS})
    stamp = sa.DateTime(timezone=True)
    ledger = sa.table("ledger", sa.column("at", stamp), *(sa.column(c) for c in (*UNITS, *columns)))
    rollups: Sums = defaultdict(lambda: [0] * len(UNITS))
    cube: Sums = defaultdict(lambda: [0] * len(UNITS))
    query = sa.select(ledger.c.at, *(ledger.c[u] for u in UNITS), *(ledger.c[c] for c in columns)).where(
        sa.or_(*(ledger.c[u] > 0 for u in UNITS))
    )
    for row in conn.execute(query):
        at, values = row.at, row._mapping
        units = tuple(int(values[u]) for u in UNITS)
        for dim, column in ROLLUP_DIMS.items():
            grains = GRAINS if dim in FINE_DIMS else ("hour", "day", "all")
            for grain in grains:
                _add(rollups, (grain, dim, values[column] or "", _bucket(at, grain)), units)
        for grain in CUBE_GRAINS:
            _add(cube, (grain, _bucket(at, grain), *(values[c] or "" for c in CUBE_COLUMNS)), units)
    rollup_key = ("grain", "dim", "value", "bucket")
    _update(conn, _cells("spend_rollups", rollup_key, stamp), rollup_key, rollups)
    cube_key = ("grain", "bucket", *CUBE_COLUMNS)
    _update(conn, _cells("spend_cube", cube_key, stamp), cube_key, cube)


def _cells(name: str, key: tuple[str, ...], stamp: sa.DateTime) -> sa.TableClause:
    return sa.table(
        name,
        *(sa.column(c, stamp) if c == "bucket" else sa.column(c) for c in key),
        *(sa.column(u) for u in UNITS),
    )


def _update(conn: sa.Connection, table: sa.TableClause, key: tuple[str, ...], sums: Sums) -> None:
    if not sums:
        return
    statement = (
        sa.update(table)
        .where(*(table.c[k] == sa.bindparam(f"k_{k}") for k in key))
        .values({u: sa.bindparam(f"v_{u}") for u in UNITS})
    )
    rows = [
        {
            **{f"k_{k}": v for k, v in zip(key, cell, strict=True)},
            **{f"v_{u}": n for u, n in zip(UNITS, units, strict=True)},
        }
        for cell, units in sums.items()
    ]
    for start in range(0, len(rows), BATCH):
        conn.execute(statement, rows[start : start + BATCH])


def downgrade() -> None:
    for table in ("spend_cube", "spend_rollups"):
        with op.batch_alter_table(table) as batch:
            for unit in reversed(UNITS):
                batch.drop_column(unit)
