"""Schema migrations, applied on start.

A new, empty database gets the current schema straight from `tables.metadata` and is stamped at
`HEAD` (Alembic's documented practice for fresh databases); Alembic itself is imported only to
upgrade a database that is behind. Importing Alembic costs ~10 MiB of resident memory that a
serving process would otherwise carry for its whole life. A test checks that both paths build the
same schema.

On PostgreSQL, creating or upgrading the schema happens under a transaction-level advisory lock,
and the schema's state is read again once it is held: instances started at once on an empty
database wait for the first one, then find the schema current.

A database stamped with a revision this code does not know (a newer turnout upgraded it) is never
written to by the migrations here. It is served when the newer turnout recorded that code of this
revision may serve it (`schema_readers`: every migration since only added what older code ignores,
a migration's `expansion` flag), so an instance of the previous version keeps serving during a
rolling upgrade; otherwise it is refused, saying which version it needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from turnout.storage.refusal import StartRefused
from turnout.storage.tables import metadata, schema_readers

log = logging.getLogger("turnout.storage")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD = "0028"  # keep equal to the newest revision in migrations/versions (a test checks it)
# The oldest revision whose code may serve a database at HEAD: walking back from HEAD over the
# migrations flagged `expansion` (a test checks it against them).
OLDEST_READER = "0018"
LOCK_KEY = 0x7475726E6F7574  # "turnout" in ASCII: the advisory lock schema changes are made under

_version_table = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


@dataclass(frozen=True)
class SchemaState:
    revision: str | None  # stamped in the database
    has_tables: bool  # whether it holds any of turnout's tables
    oldest_reader: str | None = None  # what its writer recorded may serve it (schema_readers)

    @property
    def newer(self) -> bool:
        """Stamped by a newer turnout (or by something else) than this code."""
        revision = self.revision
        return revision is not None and not (revision.isdigit() and int(revision) <= int(HEAD))

    @property
    def readable(self) -> bool:
        """A newer schema this code may serve: its writer said code of this revision can."""
        reader = self.oldest_reader
        return reader is not None and reader.isdigit() and int(reader) <= int(HEAD)


def _state(conn: sa.Connection) -> SchemaState:
    inspector = sa.inspect(conn)
    names = set(inspector.get_table_names())
    revision = reader = None
    if "alembic_version" in names:
        revision = conn.execute(sa.select(_version_table.c.version_num)).scalar()
    if revision is not None and schema_readers.name in names:
        found = schema_readers.c.revision == revision
        reader = conn.execute(sa.select(schema_readers.c.oldest_reader).where(found)).scalar()
    return SchemaState(revision, bool(names & set(metadata.tables)), reader)


def check_known(state: SchemaState) -> None:
    """Refuse a schema this code does not know and may not serve; say so when it may."""
    if not state.newer:
        return
    if state.readable:
        log.warning(
            "the database's schema is at revision %s, newer than this turnout knows (up to %s); "
            "the turnout that upgraded it recorded that this version may still serve it (oldest: %s), "
            "so it is served as it is, never migrated. Upgrade this instance when you can.",
            state.revision,
            HEAD,
            state.oldest_reader,
        )
        return
    needs = f" (it needs schema revision {state.oldest_reader} or newer)" if state.oldest_reader else ""
    raise StartRefused(
        f"the database's schema is at revision {state.revision}, newer than this turnout knows (up to "
        f"{HEAD}){needs}: a newer turnout has upgraded it. Run that version (or a newer one) against this "
        "database; turnout never downgrades a schema (restore a backup taken before the upgrade to go back)."
    )


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        state = await conn.run_sync(_state)
    return state.revision


async def upgrade_if_needed(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        state = await conn.run_sync(_state)
    if state.revision == HEAD:
        return
    check_known(state)
    if state.newer:
        return  # served as it is (check_known refuses what may not be)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            state = await _locked_state(conn)
            if state.revision == HEAD:
                return  # another instance brought it up to date while this one waited
            check_known(state)
            if state.newer:
                return
        if state.revision is None and not state.has_tables:
            await conn.run_sync(_create_current)
        else:
            await conn.run_sync(upgrade_with_alembic)
        await conn.run_sync(_record_readers)


def _record_readers(conn: sa.Connection) -> None:
    """Say which turnout may serve the schema as this code left it (for older instances)."""
    conn.execute(sa.delete(schema_readers).where(schema_readers.c.revision == HEAD))
    conn.execute(sa.insert(schema_readers).values(revision=HEAD, oldest_reader=OLDEST_READER))


async def _locked_state(conn: AsyncConnection) -> SchemaState:
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
