"""The ledger in the database: idempotent inserts (a request id already there is left alone, so
replaying a journal never counts twice) and the reads reports are built from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa

from turnout.spend.ledger import LedgerEntry
from turnout.storage.database import Database
from turnout.storage.tables import ledger

# Rows are inserted this many at a time: the event loop runs between two (SQLAlchemy prepares a
# batch's parameters on it, about 20 µs a row), so moving a second's journal at 500 req/s never
# holds it more than about a millisecond. (Whole: 500 rows held it 4-7 ms, which was the
# benchmark's p99.)
CHUNK = 50


def _row(entry: LedgerEntry) -> dict[str, Any]:
    row = msgspec.structs.asdict(entry)  # its fields are the table's columns
    row["at"] = datetime.fromtimestamp(entry.at, UTC)
    return row


class LedgerStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._insert = database.insert_new(ledger, "request_id", "attempt")

    async def insert(self, entries: list[LedgerEntry]) -> None:
        if not entries:
            return
        async with self.database.engine.begin() as conn:
            for start in range(0, len(entries), CHUNK):
                await conn.execute(self._insert, [_row(e) for e in entries[start : start + CHUNK]])

    async def count(self) -> int:
        async with self.database.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(ledger))).scalar_one())

    async def entries(self, **where: object) -> list[dict[str, Any]]:
        """Rows (as dicts), oldest first, matching every `column=value` given."""
        query = sa.select(ledger).order_by(ledger.c.at, ledger.c.request_id, ledger.c.attempt)
        for column, value in where.items():
            query = query.where(ledger.c[column] == value)
        async with self.database.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]


REPORT_BY = {
    "team": "team_id",
    "key": "key_id",
    "model": "model",
    "alias": "alias",
    "deployment": "deployment",
    "user": "user_id",
    "preset": "preset",
}


async def spend_report(
    database: Database, by: str, since: datetime, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Spend grouped by `by` (team, key, user, model, alias, deployment, preset) over [since,
    until): requests, failures, tokens by kind, cost, what customers paid and presets' revenue
    share in micro-dollars, and how many requests had no known price. The ledger holds a row per
    upstream attempt: `requests` counts client requests, `attempts` rows, `failed` the requests
    none of whose attempts (in the group) answered, and tokens and money sum every attempt."""
    group = ledger.c[REPORT_BY[by]]
    answered = sa.func.count(sa.distinct(sa.case((ledger.c.status < 400, ledger.c.request_id))))
    requests = sa.func.count(sa.distinct(ledger.c.request_id))
    query = (
        sa.select(
            group.label("group"),
            requests.label("requests"),
            sa.func.count().label("attempts"),
            (requests - answered).label("failed"),
            sa.func.sum(ledger.c.input_tokens).label("input_tokens"),
            sa.func.sum(ledger.c.cached_input_tokens).label("cached_input_tokens"),
            sa.func.sum(ledger.c.output_tokens).label("output_tokens"),
            sa.func.coalesce(sa.func.sum(ledger.c.cost_micros), 0).label("cost_micros"),
            sa.func.coalesce(sa.func.sum(ledger.c.customer_price_micros), 0).label("customer_price_micros"),
            sa.func.coalesce(sa.func.sum(ledger.c.revenue_share_micros), 0).label("revenue_share_micros"),
            sa.func.sum(sa.case((ledger.c.cost_micros.is_(None), 1), else_=0)).label("cost_unknown"),
            sa.func.sum(sa.case((ledger.c.estimated, 1), else_=0)).label("estimated"),
        )
        .where(ledger.c.at >= since)
        .group_by(group)
        .order_by(sa.desc("cost_micros"), group)
    )
    if until is not None:
        query = query.where(ledger.c.at < until)
    async with database.engine.connect() as conn:
        return [
            {k: (int(v) if k != "group" else v) for k, v in row._mapping.items()}
            for row in await conn.execute(query)
        ]
