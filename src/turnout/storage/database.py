"""The database connection: an async SQLAlchemy engine, SQLite (WAL) unless configured otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from turnout.storage.migrate import upgrade_if_needed


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Database:
    """Open with `await Database.open(url)`: creates the SQLite file and brings the schema to head."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, url: str) -> Database:
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, pool_pre_ping=path is None)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        await upgrade_if_needed(engine)
        return cls(engine)

    def insert_new(self, table: sa.Table, *keys: str) -> Any:
        """An INSERT that leaves alone the rows whose `keys` are already there (ON CONFLICT DO
        NOTHING, in this database's dialect): what makes replays and second writers no-ops."""
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        return insert(table).on_conflict_do_nothing(index_elements=list(keys))

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
