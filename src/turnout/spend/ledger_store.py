"""The ledger in the database: idempotent inserts (a request id already there is left alone, so
replaying a journal never counts twice), each adding the rows it inserted to the running totals
(spend_rollups, and spend_cube by every dimension at once) in the same transaction."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.domain.ledger_entry import REHEARSAL_KEY_ID, LedgerEntry
from turnout.spend.cube import CubeBuilder
from turnout.spend.rollups import RollupBuilder, as_values
from turnout.storage.cube import CUBE_COUNTS, CUBE_KEY
from turnout.storage.database import Database
from turnout.storage.rollups import COUNTS, KEY
from turnout.storage.tables import ledger, spend_cube, spend_rollups

# Rows are inserted this many at a time: the event loop runs between two (a batch's parameters are
# prepared on it: about 20 µs a row by SQLAlchemy on PostgreSQL, 3 µs on SQLite), so moving a
# second's journal at 500 req/s never holds it more than about a millisecond. (Whole: 500 rows held
# it 4-7 ms, which was the benchmark's p99.) Bound by position (`_Positional`) a row costs about
# 1 µs, but 500 a statement measured worse in the gateway (1.06x the CPU a request, traffic from 100
# keys: aiosqlite's thread and the loop taking turns on one core), though cheaper alone.
CHUNK = 50


def as_row(entry: LedgerEntry) -> dict[str, Any]:
    row = msgspec.structs.asdict(entry)  # its fields are the table's columns
    row["at"] = datetime.fromtimestamp(entry.at, UTC)
    return row


def _bind_processor(column: sa.Column[Any], dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    """What the dialect does to a value of `column` before the driver sees it (on SQLite a
    datetime becomes SQLAlchemy's own text form, the one every query compares against)."""
    processor: Callable[[Any], Any] | None = column.type.dialect_impl(dialect).bind_processor(dialect)
    return processor


def _compiled(
    statement: Any, table: sa.Table, names: Sequence[str], dialect: sa.Dialect
) -> tuple[str, tuple[str, ...], list[tuple[int, Callable[[Any], Any]]]]:
    """`statement` compiled for the dialect with a parameter for each of `names`: its SQL, the
    parameters' order, and where that order needs one the dialect's type processor."""
    compiled = statement.compile(dialect=dialect, column_keys=list(names))
    order: tuple[str, ...] = tuple(compiled.positiontup or ())
    processors = [(i, _bind_processor(table.c[n], dialect)) for i, n in enumerate(order)]
    return compiled.string, order, [(i, p) for i, p in processors if p]


class _Positional:
    """A statement compiled once for the dialect and run with each row a tuple of `names`' values,
    put in the statement's parameter order through the dialect's own type processors, as
    SQLAlchemy's executemany would bind them from dicts. Those cost it about 9 µs a row: for the
    running totals' upserts, up to ten a ledger row when a batch's rows come from many keys, moving
    the journal cost 118 µs a row from 100 keys and 335 µs from 1,000 on SQLite, 114 and 274 µs on
    PostgreSQL (bench/ledger_move.py; so bound: 71, 183, 57 and 133). A processed value is kept
    within a run (the only one processed, a cell's bucket, is shared by many), by value and time
    zone: equal instants in two zones are equal datetimes, but not the same text."""

    def __init__(self, statement: Any, table: sa.Table, names: Sequence[str], dialect: sa.Dialect) -> None:
        self.sql, order, self._processors = _compiled(statement, table, names, dialect)
        self._pick = operator.itemgetter(*(names.index(n) for n in order))

    def rows(self, rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
        pick, processors = self._pick, self._processors
        if not processors:
            return [pick(row) for row in rows]
        done: list[dict[Any, Any]] = [{} for _ in processors]
        out = []
        for row in rows:
            values = list(pick(row))
            for (i, process), processed in zip(processors, done, strict=True):
                value = values[i]
                key = (value, getattr(value, "tzinfo", None))
                known = processed.get(key)
                values[i] = known if known is not None else processed.setdefault(key, process(value))
            out.append(tuple(values))
        return out


class _SQLiteInsert:
    """The ledger's idempotent INSERT on SQLite, compiled once and run with each row as a tuple of
    the values SQLAlchemy would bind (its own type processors): moving the journal cost 45 µs of
    CPU a row with SQLAlchemy's executemany and RETURNING, 25 µs so (docs/architecture.md). Which
    rows were new comes from the row count, and only when some were not from their rowids: in one
    transaction, SQLite gives the rows a statement inserts the rowids after the largest."""

    def __init__(self, database: Database) -> None:
        statement = database.insert_new(ledger, "request_id", "attempt")
        columns = [c.name for c in ledger.c]
        self.sql, names, self._processors = _compiled(statement, ledger, columns, database.engine.dialect)
        self._values = operator.attrgetter(*names)  # LedgerEntry's fields are the table's columns
        self._at = names.index("at")

    def row(self, entry: LedgerEntry) -> tuple[Any, ...]:
        values = list(self._values(entry))
        values[self._at] = datetime.fromtimestamp(entry.at, UTC)  # then SQLAlchemy's text form
        for i, process in self._processors:
            values[i] = process(values[i])
        return tuple(values)

    async def inserted(self, conn: AsyncConnection, chunk: list[LedgerEntry]) -> set[tuple[str, int]] | None:
        """Insert `chunk`: None when every entry was new, else the keys of those that were."""
        count = (await conn.exec_driver_sql(self.sql, [self.row(e) for e in chunk])).rowcount
        if count == len(chunk):
            return None
        if not count:
            return set()
        new = "SELECT request_id, attempt FROM ledger WHERE rowid > last_insert_rowid() - ?"
        return {(row.request_id, row.attempt) for row in await conn.exec_driver_sql(new, (count,))}


class LedgerStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._insert = database.insert_new(ledger, "request_id", "attempt").returning(
            ledger.c.request_id, ledger.c.attempt
        )
        self._sqlite = _SQLiteInsert(database) if database.engine.dialect.name == "sqlite" else None
        adding = database.insert_adding(spend_rollups, KEY, COUNTS)
        self._add = _Positional(adding, spend_rollups, (*KEY, *COUNTS), database.engine.dialect)
        adding = database.insert_adding(spend_cube, CUBE_KEY, CUBE_COUNTS)
        self._add_cube = _Positional(adding, spend_cube, (*CUBE_KEY, *CUBE_COUNTS), database.engine.dialect)

    async def insert(self, entries: list[LedgerEntry]) -> int:
        """Insert the entries not already there and add them to the totals, in one transaction;
        returns how many were inserted. A request's entries must all be in one call."""
        if not entries:
            return 0
        inserted = 0
        totals = RollupBuilder()
        cube = CubeBuilder()
        async with self.database.engine.begin() as conn:
            for start in range(0, len(entries), CHUNK):
                chunk = entries[start : start + CHUNK]
                added = await self._insert_chunk(conn, chunk)
                totals.add(added)
                cube.add(added)
                inserted += len(added)
            cells = totals.cells()
            add = self._add
            for start in range(0, len(cells), CHUNK):
                await conn.exec_driver_sql(add.sql, add.rows(as_values(cells[start : start + CHUNK])))
            add = self._add_cube
            for start in range(0, cube.cells(), CHUNK):
                await conn.exec_driver_sql(add.sql, add.rows(cube.values(start, start + CHUNK)))
        return inserted

    async def _insert_chunk(self, conn: AsyncConnection, chunk: list[LedgerEntry]) -> list[LedgerEntry]:
        """Insert the entries of `chunk` not already there; returns those."""
        if self._sqlite is not None:
            new = await self._sqlite.inserted(conn, chunk)
            if new is None:
                return chunk
        else:
            result = await conn.execute(self._insert, [as_row(e) for e in chunk])
            new = {(r.request_id, r.attempt) for r in result}
        added = []
        for e in chunk:  # (an entry twice in one batch is inserted once)
            if (e.request_id, e.attempt) in new:
                new.discard((e.request_id, e.attempt))
                added.append(e)
        return added

    async def rehearsal_spent(self, alias: str, since: datetime) -> int:
        """What the shadows of `alias`'s mirror cost from `since` (a midnight UTC; micro-dollars,
        unpriced ones 0), from the totals by day: a few cells, however many rows, and still right
        once ledger retention has deleted the rows."""
        c = spend_cube.c
        query = sa.select(sa.func.coalesce(sa.func.sum(c.cost_micros), 0)).where(
            c.grain == "day", c.key_id == REHEARSAL_KEY_ID, c.alias == alias, c.bucket >= since
        )
        async with self.database.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

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
