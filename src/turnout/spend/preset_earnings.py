"""What each preset earned its team: requests through it, what their callers were charged and the
revenue share credited to the preset's team, this month (UTC) and in all, read in one query from
the running totals by preset (`spend_rollups`, dim `preset`) — never from the ledger's rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from turnout.storage.database import Database
from turnout.storage.rollups import floor_to
from turnout.storage.tables import spend_rollups

FIGURES = ("requests", "customer_price_micros", "revenue_share_micros")
Earned = dict[str, dict[str, int]]  # "month" | "all" → figure → amount


async def preset_earnings(database: Database, names: Iterable[str], now: dt.datetime) -> dict[str, Earned]:
    """Each named preset's figures (presets with none are absent)."""
    wanted = list(names)
    if not wanted:
        return {}
    month = floor_to(now, "day").replace(day=1)
    c = spend_rollups.c
    query = (
        sa.select(c.value, c.grain, *(sa.func.sum(c[f]).label(f) for f in FIGURES))
        .where(
            c.dim == "preset",
            c.value.in_(wanted),
            sa.or_(c.grain == "all", sa.and_(c.grain == "day", c.bucket >= month)),
        )
        .group_by(c.value, c.grain)
    )
    async with database.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    out: dict[str, Earned] = {}
    for row in rows:
        span = "all" if row.grain == "all" else "month"
        out.setdefault(row.value, {})[span] = {f: int(row._mapping[f] or 0) for f in FIGURES}
    return out
