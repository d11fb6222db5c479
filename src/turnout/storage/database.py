"""The database connection: an async SQLAlchemy engine, SQLite (WAL) unless configured otherwise.

Every query the gateway makes while serving has a deadline (`storage.database_timeout`): on
PostgreSQL a connect timeout, a client-side command timeout (which holds even when the server
stops answering altogether) and the server's `statement_timeout`; on SQLite the time a writer
waits for a lock. `within` bounds a whole operation (pool checkout, reconnect, query) by the
deadline and never waits on the cancelled operation's clean-up. Schema changes on start run on an
engine of their own, without the statement deadline (an upgrade of a large table takes time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from turnout.storage.migrate import upgrade_if_needed

T = TypeVar("T")
DEFAULT_TIMEOUT = 2.0
MIGRATION_LOCK_WAIT = 600.0  # seconds a starting instance waits for another's schema upgrade

_abandoned: set[asyncio.Task[Any]] = set()  # operations past their deadline, left to finish


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _sqlite_pragmas(busy_ms: int, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")  # an int: not input
    cursor.close()


def _engine(url: str, timeout: float, *, statements: bool) -> AsyncEngine:
    """An engine whose connects (and, with `statements`, queries) give up after `timeout`."""
    backend = make_url(url).get_backend_name()
    args: dict[str, Any] = {}
    if backend == "postgresql" and make_url(url).get_driver_name() == "asyncpg":
        args["timeout"] = timeout  # connecting, the server's handshake included
        if statements:
            args["command_timeout"] = timeout
            args["server_settings"] = {"statement_timeout": str(max(1, round(timeout * 1000)))}
    pooled: dict[str, Any] = {} if backend == "sqlite" else {"pool_pre_ping": True, "pool_timeout": timeout}
    engine = create_async_engine(url, connect_args=args, **pooled)
    if engine.dialect.name == "sqlite":
        busy = timeout if statements else MIGRATION_LOCK_WAIT
        sa.event.listen(engine.sync_engine, "connect", partial(_sqlite_pragmas, round(busy * 1000)))
    return engine


class Database:
    """Open with `await Database.open(url)`: creates the SQLite file and brings the schema to head."""

    def __init__(self, engine: AsyncEngine, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.engine = engine
        self.timeout = timeout

    @classmethod
    async def open(cls, url: str, deadline: float = DEFAULT_TIMEOUT) -> Database:
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        migrating = _engine(url, max(deadline, 10.0), statements=False)
        try:
            await upgrade_if_needed(migrating)
        finally:
            await migrating.dispose()
        return cls(_engine(url, deadline, statements=True), deadline)

    def insert_new(self, table: sa.Table, *keys: str) -> Any:
        """An INSERT that leaves alone the rows whose `keys` are already there (ON CONFLICT DO
        NOTHING, in this database's dialect): what makes replays and second writers no-ops."""
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        return insert(table).on_conflict_do_nothing(index_elements=list(keys))

    async def within(self, operation: Awaitable[T]) -> T:
        """`operation`'s result, or TimeoutError once the database deadline has passed. The
        operation is then cancelled and left to unwind on its own: a connection to a server that
        stopped answering may take longer than the deadline to let go of."""
        return await bounded(operation, self.timeout)

    def insert_adding(self, table: sa.Table, keys: tuple[str, ...], counts: tuple[str, ...]) -> Any:
        """An INSERT that, where the row whose `keys` are already there, adds the new row's
        `counts` to it instead (ON CONFLICT DO UPDATE SET count = count + new)."""
        insert = (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(table)
        return insert.on_conflict_do_update(
            index_elements=list(keys), set_={c: table.c[c] + insert.excluded[c] for c in counts}
        )

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def unreachable(error: BaseException) -> bool:
    """Did `error` come from a database that could not be reached in time (not from a query)?"""
    if isinstance(error, TimeoutError | ConnectionError | sa.exc.OperationalError | sa.exc.InterfaceError):
        return True
    return isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated


async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
    """`awaitable`'s result, or TimeoutError after `seconds` without waiting for it to
    unwind (it is cancelled, and kept referenced until it has)."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=max(0.0, seconds))
    if task in done:
        return task.result()
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_forget)
    raise TimeoutError(f"no answer within {seconds:g}s")


def _forget(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned operation's failure is not news
