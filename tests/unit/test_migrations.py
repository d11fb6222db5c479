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
    OLDEST_READER,
    current_revision,
    upgrade_if_needed,
    upgrade_with_alembic,
)

from support.databases import database_url

BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


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


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_fresh_database_and_a_migrated_one_have_the_same_schema(backend: str, tmp_path: Path) -> None:
    (tmp_path / "fresh").mkdir()
    (tmp_path / "migrated").mkdir()
    async with (
        database_url(backend, tmp_path / "fresh") as fresh_url,
        database_url(backend, tmp_path / "migrated") as migrated_url,
    ):
        fresh = create_async_engine(fresh_url)
        await upgrade_if_needed(fresh)
        migrated = create_async_engine(migrated_url)
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


async def test_keys_issued_before_0007_get_the_people_behind_them(tmp_path: Path) -> None:
    """Upgrading fills in who each existing key acts for and who could use it, from who issued
    what: a key Alice issued without a user is hers, one she issued for Bob is Bob's and hers,
    one the master key handed Bob is Bob's alone; budgets and pending actions likewise."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: upgrade_with_alembic(c, "0006"))
        keys = [
            ("master", "master", None, None, None),
            ("key_alice", "virtual", "user_alice", None, "master"),
            ("key_spare", "virtual", None, None, "key_alice"),
            ("key_for_bob", "virtual", "user_bob", None, "key_alice"),
            ("key_bob", "virtual", "user_bob", None, "master"),
            ("key_red_app", "virtual", None, "team_red", "key_spare"),
        ]
        for key_id, kind, user_id, team_id, created_by in keys:
            await conn.execute(
                sa.text(
                    "INSERT INTO api_keys (id, key_hash, prefix, name, kind, role, created_at, user_id, "
                    "team_id, created_by, max_budget_micros) VALUES (:id, :hash, 'p', :id, :kind, 'admin', "
                    "CURRENT_TIMESTAMP, :user, :team, :by, :budget)"
                ),
                {
                    "id": key_id,
                    "hash": key_id.encode().ljust(32, b"-"),
                    "kind": kind,
                    "user": user_id,
                    "team": team_id,
                    "by": created_by,
                    "budget": 5 if key_id == "key_red_app" else None,
                },
            )
        await conn.execute(
            sa.text(
                "INSERT INTO budgets (id, scope, subject_id, period, timezone, limit_micros, created_at, "
                "created_by) VALUES ('b1', 'key', 'key_spare', 'daily', 'UTC', 5, CURRENT_TIMESTAMP, :by)"
            ),
            {"by": "key_red_app"},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO pending_actions (id, action, target_type, target_id, params, requested_by, "
                "requested_at, expires_at, status) VALUES ('act_1', 'delete_team', 'team', 't', '{}', "
                "'key_spare', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'pending')"
            )
        )
        await conn.run_sync(upgrade_with_alembic)
        rows = await conn.execute(sa.text("SELECT id, person, budget_set_level FROM api_keys"))
        people = {r.id: (r.person, r.budget_set_level) for r in rows}
        controllers: dict[str, set[str]] = {}
        for key_id, person in await conn.execute(sa.text("SELECT key_id, person FROM key_controllers")):
            controllers.setdefault(key_id, set()).add(person)
        level = (await conn.execute(sa.text("SELECT set_level FROM budgets"))).scalar()
        proposer = (await conn.execute(sa.text("SELECT requested_by_person FROM pending_actions"))).scalar()
    await engine.dispose()
    assert people == {
        "master": ("master", None),
        "key_alice": ("user_alice", None),
        "key_spare": ("user_alice", None),
        "key_for_bob": ("user_bob", None),
        "key_bob": ("user_bob", None),
        "key_red_app": ("user_alice", "organisation"),  # issued by an organisation-wide key
    }
    assert controllers == {
        "master": {"master"},
        "key_alice": {"user_alice"},
        "key_spare": {"user_alice"},
        "key_for_bob": {"user_bob", "user_alice"},
        "key_bob": {"user_bob"},
        "key_red_app": {"user_alice"},
    }
    assert level == "team"  # set with a team's key
    assert proposer == "user_alice"


def test_the_oldest_reader_is_where_the_expansions_since_head_began() -> None:
    """OLDEST_READER is what a newer database tells older instances they may serve: walking back
    from HEAD over the migrations flagged `expansion` (each only adds what older code ignores)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    reader = HEAD
    while getattr(scripts.get_revision(reader).module, "expansion", False):
        down = scripts.get_revision(reader).down_revision
        assert isinstance(down, str)
        reader = down
    assert reader == OLDEST_READER


async def test_a_database_records_which_turnout_may_serve_it(tmp_path: Path) -> None:
    for name, build in (("fresh", None), ("migrated", upgrade_with_alembic)):
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / name}.db")
        if build is not None:  # upgraded from an older revision, as an existing database is
            async with engine.begin() as conn:
                await conn.run_sync(upgrade_with_alembic, "0013")
        await upgrade_if_needed(engine)
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT revision, oldest_reader FROM schema_readers"))).all()
        assert [tuple(r) for r in rows] == [(HEAD, OLDEST_READER)], name
        await engine.dispose()
