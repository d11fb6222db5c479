"""Schema migrations, applied on start.

A new, empty database gets the current schema straight from `tables.metadata` and is stamped at
`HEAD` (Alembic's documented practice for fresh databases); Alembic itself is imported only to
upgrade a database that is behind. Importing Alembic costs ~10 MiB of resident memory that a
serving process would otherwise carry for its whole life. A test checks that both paths build the
same schema.

On PostgreSQL, creating or upgrading the schema happens under a transaction-level advisory lock,
and the schema's state is read again once it is held: instances started at once on an empty
database wait for the first one, then find the schema current. A database stamped with a revision
this code does not know (a newer turnout upgraded it) is refused, never written to.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from turnout.storage.refusal import StartRefused
from turnout.storage.tables import metadata

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD = "0014"  # keep equal to the newest revision in migrations/versions (a test checks it)
LOCK_KEY = 0x7475726E6F7574  # "turnout" in ASCII: the advisory lock schema changes are made under

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


def check_known(revision: str | None) -> None:
    """Refuse a schema this code does not know: stamped by a newer turnout (or by something else)."""
    if revision is None or (revision.isdigit() and int(revision) <= int(HEAD)):
        return
    raise StartRefused(
        f"the database's schema is at revision {revision}, newer than this turnout knows (up to "
        f"{HEAD}): a newer turnout has upgraded it. Run that version (or a newer one) against this "
        "database; turnout never downgrades a schema (restore a backup taken before the upgrade to go back)."
    )


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        revision, _ = await conn.run_sync(_state)
    return revision


async def upgrade_if_needed(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        revision, has_tables = await conn.run_sync(_state)
    if revision == HEAD:
        return
    check_known(revision)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            revision, has_tables = await _locked_state(conn)
            if revision == HEAD:
                return  # another instance brought it up to date while this one waited
            check_known(revision)
        if revision is None and not has_tables:
            await conn.run_sync(_create_current)
        else:
            await conn.run_sync(upgrade_with_alembic)


async def _locked_state(conn: AsyncConnection) -> tuple[str | None, bool]:
    """Take the schema lock (held until this transaction ends), then read the state afresh."""
    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    return await conn.run_sync(_state)


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
