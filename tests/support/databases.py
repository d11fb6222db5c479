"""Databases for contract tests: a fresh SQLite file, or a fresh database on the PostgreSQL
server at 127.0.0.1:5432 (created for the test, dropped after it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

PG_HOST = os.environ.get("TURNOUT_TEST_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("TURNOUT_TEST_PG_USER", "postgres")


@contextlib.asynccontextmanager
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}"
        return
    name = f"turnout_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host=PG_HOST, user=PG_USER, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')  # a generated name, not input
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def opened_database(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of `backend` (sqlite or postgres), migrated and open; closed and dropped after."""
    async with database_url(backend, tmp_path) as url:
        database = await Database.open(url)
        try:
            yield database
        finally:
            await database.close()


async def create_postgres_database() -> str:
    """A fresh database's URL (drop it with `drop_postgres_database`)."""
    name = f"turnout_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host=PG_HOST, user=PG_USER, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')  # a generated name, not input
    finally:
        await admin.close()
    return name


async def drop_postgres_database(name: str) -> None:
    admin = await asyncpg.connect(host=PG_HOST, user=PG_USER, database="postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def ledger_rows(data_dir: Path) -> list[dict[str, Any]]:
    """The ledger a gateway with `data_dir` left in its SQLite database, oldest first."""

    async def read() -> list[dict[str, Any]]:
        database = await Database.open(f"sqlite+aiosqlite:///{data_dir}/turnout.db")
        try:
            return await LedgerStore(database).entries()
        finally:
            await database.close()

    return asyncio.run(read())
