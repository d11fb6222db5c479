"""Console sessions in the database (SQLite and PostgreSQL): a session ends at its expiry, signing
out ends it, the database holds no cookie token, and ended sessions are cleared out."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from turnout.console.sessions import Sessions
from turnout.storage.tables import console_sessions

from support.databases import opened_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_session_lasts_its_ttl_and_no_longer(backend: str, tmp_path: Path) -> None:
    async with opened_database(backend, tmp_path) as database:
        clock = Clock()
        sessions = Sessions(database, ttl=3600, clock=clock)
        token, session = await sessions.begin("key_1", b"h" * 32)
        found = await sessions.find(token)
        assert found is not None and found.key_id == "key_1" and found.csrf_matches(session.csrf_token)
        assert not found.csrf_matches(None) and not found.csrf_matches(session.csrf_token[:-1] + "x")
        clock.now += 3599
        assert await sessions.find(token) is not None
        clock.now += 1
        assert await sessions.find(token) is None
        assert await sessions.find("not-a-token") is None and await sessions.find(None) is None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_signing_out_ends_the_session_and_the_token_is_never_stored(
    backend: str, tmp_path: Path
) -> None:
    async with opened_database(backend, tmp_path) as database:
        clock = Clock()
        sessions = Sessions(database, ttl=60, clock=clock)
        token, session = await sessions.begin("key_1", b"h" * 32)
        other, _ = await sessions.begin("key_2", b"i" * 32)
        async with database.engine.connect() as conn:
            rows = (await conn.execute(sa.select(console_sessions))).all()
        assert all(token.encode() not in bytes(r.id_hash) and r.id_hash != token.encode() for r in rows)
        await sessions.end(session)
        assert await sessions.find(token) is None
        assert await sessions.find(other) is not None
        clock.now += 61  # both over: the next sign-in clears them out
        await sessions.begin("key_3", b"j" * 32)
        async with database.engine.connect() as conn:
            left = (await conn.execute(sa.select(console_sessions.c.key_id))).scalars().all()
        assert left == ["key_3"]
