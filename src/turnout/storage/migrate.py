"""Schema migrations, applied on start.

A new, empty database gets the current schema straight from `tables.metadata` and is stamped at
`HEAD` (Alembic's documented practice for fresh databases); Alembic itself is imported only to
upgrade a database that is behind. Importing Alembic costs ~10 MiB of resident memory that a
serving process would otherwise carry for its whole life. A test checks that both paths build the
same schema.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from turnout.storage.tables import metadata

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD = "0010"  # keep equal to the newest revision in migrations/versions (a test checks it)

_version_table = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def _state(conn: sa.Connection) -> tuple[str | None, bool]:
    """(revision stamped in the database, whether it holds any of turnout's tables)."""
    inspector = sa.inspect(conn)
    names = set(inspector.get_table_names())
    revision = None
    if "alembic_version" in names:
        revision = conn.execute(sa.select(_version_table.c.version_num)).scalar()
    return revision, bool(names & set(metadata.tables))


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        revision, _ = await conn.run_sync(_state)
    return revision


async def upgrade_if_needed(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        revision, has_tables = await conn.run_sync(_state)
    if revision == HEAD:
        return
    async with engine.begin() as conn:
        if revision is None and not has_tables:
            await conn.run_sync(_create_current)
        else:
            await conn.run_sync(upgrade_with_alembic)


def _create_current(conn: sa.Connection) -> None:
    metadata.create_all(conn)
    _version_table.create(conn)
    conn.execute(_version_table.insert().values(version_num=HEAD))


def upgrade_with_alembic(conn: sa.Connection, target: str = "head") -> None:
    from alembic import command  # imported only when a migration is due
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, target)
