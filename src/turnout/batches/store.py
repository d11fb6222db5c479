"""The batch API's records in the database: which deployment holds each file and batch, whose they
are, the most a file's lines can use, a batch's last known state and whether it was accounted."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from turnout.storage.database import Database
from turnout.storage.tables import batch_files, batches

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled", "ended"})  # (ended: Anthropic's)
MAX_PAGE = 100


@dataclass(frozen=True)
class Owner:
    """Who a file or batch belongs to (its key, the key's team and user)."""

    key_id: str
    team_id: str | None
    user_id: str | None = None

    def admits(self, key_id: str, team_id: str | None) -> bool:
        """May the caller (a key, its team) see it? Its team's keys, or its own key without one."""
        return (self.team_id is not None and self.team_id == team_id) or self.key_id == key_id


@dataclass(frozen=True)
class Placement:
    """Where a file or batch lives: the alias it came through and the deployment that holds it."""

    provider: str
    deployment: str
    model: str
    alias: str


@dataclass(frozen=True)
class FileRecord:
    id: str
    place: Placement
    owner: Owner
    purpose: str
    endpoint: str | None
    lines: int
    max_input_tokens: int
    max_output_tokens: int
    file: dict[str, Any]


@dataclass(frozen=True)
class BatchRecord:
    id: str
    api: str  # batches (OpenAI's /v1/batches) | messages (Anthropic's /v1/messages/batches)
    place: Placement
    owner: Owner
    created_at: float
    reserved_micros: int
    status: str
    batch: dict[str, Any]
    accounted_at: float | None


def _place(row: Any) -> Placement:
    return Placement(row.provider, row.deployment, row.model, row.alias)


def _file(row: Any) -> FileRecord:
    return FileRecord(
        row.id,
        _place(row),
        Owner(row.key_id, row.team_id),
        row.purpose,
        row.endpoint,
        row.lines,
        row.max_input_tokens,
        row.max_output_tokens,
        orjson.loads(row.file),
    )


def _batch(row: Any) -> BatchRecord:
    return BatchRecord(
        row.id,
        row.api,
        _place(row),
        Owner(row.key_id, row.team_id, row.user_id),
        row.created_at,
        row.reserved_micros,
        row.status,
        orjson.loads(row.batch),
        row.accounted_at,
    )


class BatchStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def add_file(self, record: FileRecord) -> bool:
        """Record a file (False: one with its id is already recorded, left as it was)."""
        values = {
            "id": record.id,
            "provider": record.place.provider,
            "deployment": record.place.deployment,
            "model": record.place.model,
            "alias": record.place.alias,
            "key_id": record.owner.key_id,
            "team_id": record.owner.team_id,
            "created_at": time.time(),
            "purpose": record.purpose,
            "endpoint": record.endpoint,
            "lines": record.lines,
            "max_input_tokens": record.max_input_tokens,
            "max_output_tokens": record.max_output_tokens,
            "file": orjson.dumps(record.file).decode(),
        }
        async with self.database.engine.begin() as conn:
            result = await conn.execute(self.database.insert_new(batch_files, "id").values(values))
        return bool(result.rowcount)

    async def file(self, file_id: str) -> FileRecord | None:
        async with self.database.engine.connect() as conn:
            row = (await conn.execute(sa.select(batch_files).where(batch_files.c.id == file_id))).first()
        return None if row is None else _file(row)

    async def drop_file(self, file_id: str) -> None:
        async with self.database.engine.begin() as conn:
            await conn.execute(sa.delete(batch_files).where(batch_files.c.id == file_id))

    async def add_batch(self, record: BatchRecord) -> None:
        values = {
            "id": record.id,
            "api": record.api,
            "provider": record.place.provider,
            "deployment": record.place.deployment,
            "model": record.place.model,
            "alias": record.place.alias,
            "key_id": record.owner.key_id,
            "team_id": record.owner.team_id,
            "user_id": record.owner.user_id,
            "created_at": record.created_at,
            "reserved_micros": record.reserved_micros,
            "status": record.status,
            "batch": orjson.dumps(record.batch).decode(),
            "accounted_at": None,
        }
        async with self.database.engine.begin() as conn:
            await conn.execute(sa.insert(batches).values(values))

    async def batch(self, batch_id: str) -> BatchRecord | None:
        async with self.database.engine.connect() as conn:
            row = (await conn.execute(sa.select(batches).where(batches.c.id == batch_id))).first()
        return None if row is None else _batch(row)

    async def update_batch(self, batch_id: str, status: str, batch: dict[str, Any]) -> None:
        async with self.database.engine.begin() as conn:
            await conn.execute(
                sa.update(batches)
                .where(batches.c.id == batch_id)
                .values(status=status, batch=orjson.dumps(batch).decode())
            )

    async def claim_accounting(self, batch_id: str) -> bool:
        """Mark the batch accounted; True only for the one caller (of any instance) that did."""
        async with self.database.engine.begin() as conn:
            result = await conn.execute(
                sa.update(batches)
                .where(batches.c.id == batch_id, batches.c.accounted_at.is_(None))
                .values(accounted_at=time.time())
            )
        return bool(result.rowcount)

    async def unaccounted(self, limit: int) -> list[BatchRecord]:
        """The batches not accounted yet, oldest first (at most `limit`)."""
        query = (
            sa.select(batches)
            .where(batches.c.accounted_at.is_(None))
            .order_by(batches.c.created_at, batches.c.id)
            .limit(limit)
        )
        async with self.database.engine.connect() as conn:
            return [_batch(row) for row in (await conn.execute(query)).all()]

    async def page(
        self, api: str, key_id: str, team_id: str | None, after: str | None, limit: int
    ) -> tuple[list[BatchRecord], bool]:
        """The caller's batches made through `api`, newest first, after the batch `after` (and
        whether more follow)."""
        visible = batches.c.key_id == key_id
        if team_id is not None:
            visible = sa.or_(visible, batches.c.team_id == team_id)
        query = sa.select(batches).where(visible, batches.c.api == api)
        if after is not None:
            anchor = await self.batch(after)
            if anchor is not None:
                query = query.where(
                    sa.or_(
                        batches.c.created_at < anchor.created_at,
                        sa.and_(batches.c.created_at == anchor.created_at, batches.c.id < anchor.id),
                    )
                )
        query = query.order_by(batches.c.created_at.desc(), batches.c.id.desc()).limit(limit + 1)
        async with self.database.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_batch(r) for r in rows[:limit]], len(rows) > limit

    async def file_page(
        self, key_id: str, team_id: str | None, purpose: str | None, after: str | None, limit: int
    ) -> tuple[list[FileRecord], bool]:
        """The caller's files (of `purpose`), newest first, after the file `after` (and whether
        more follow)."""
        visible = batch_files.c.key_id == key_id
        if team_id is not None:
            visible = sa.or_(visible, batch_files.c.team_id == team_id)
        query = sa.select(batch_files).where(visible)
        if purpose is not None:
            query = query.where(batch_files.c.purpose == purpose)
        if after is not None:
            async with self.database.engine.connect() as conn:
                anchor = sa.select(batch_files.c.created_at).where(batch_files.c.id == after)
                at = (await conn.execute(anchor)).scalar_one_or_none()
            if at is not None:
                query = query.where(
                    sa.or_(
                        batch_files.c.created_at < at,
                        sa.and_(batch_files.c.created_at == at, batch_files.c.id < after),
                    )
                )
        query = query.order_by(batch_files.c.created_at.desc(), batch_files.c.id.desc()).limit(limit + 1)
        async with self.database.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_file(r) for r in rows[:limit]], len(rows) > limit
