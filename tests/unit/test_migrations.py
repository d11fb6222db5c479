"""The two ways a database reaches the current schema — built fresh from the metadata, or upgraded
by the Alembic migrations — must give the same schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from turnout.storage.migrate import (
    HEAD,
    MIGRATIONS,
    current_revision,
    upgrade_if_needed,
    upgrade_with_alembic,
)


def _schema(conn: sa.Connection) -> dict[str, Any]:
    inspector = sa.inspect(conn)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "unique": sorted(
                (u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), i["unique"]) for i in inspector.get_indexes(table)
            ),
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"])
                for f in inspector.get_foreign_keys(table)
            ),
        }
    return schema


def test_head_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD]


async def test_a_fresh_database_and_a_migrated_one_have_the_same_schema(tmp_path: Path) -> None:
    fresh = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    await upgrade_if_needed(fresh)
    migrated = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}")
    async with migrated.begin() as conn:
        await conn.run_sync(upgrade_with_alembic)
    async with fresh.connect() as a, migrated.connect() as b:
        assert await a.run_sync(_schema) == await b.run_sync(_schema)
    assert await current_revision(fresh) == HEAD
    assert await current_revision(migrated) == HEAD
    await upgrade_if_needed(migrated)  # already at head: nothing to do, nothing breaks
    await fresh.dispose()
    await migrated.dispose()


async def test_a_database_without_a_stamp_but_with_tables_goes_through_alembic(tmp_path: Path) -> None:
    """Never create_all over an existing schema: an unstamped database with turnout's tables is left
    to Alembic, which fails loudly rather than silently mixing schemas."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'odd.db'}")
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE api_keys (id TEXT PRIMARY KEY)"))
    try:
        with pytest.raises(sa.exc.OperationalError, match="already exists"):
            await upgrade_if_needed(engine)
    finally:
        await engine.dispose()
