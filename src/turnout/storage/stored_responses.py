"""Responses kept for retrieval (`GET /v1/responses/{id}`) and continuation
(`previous_response_id`), written behind the request.

Saving never holds up an answer: a finished response goes into the pending map at once (so the
same instance can read it back immediately) and a background task writes pending responses to
the database in batches; a failed write is retried with the next batch. Reads look at the
pending map first, then the database, so any instance sharing the database finds a response
once it is written. Each response belongs to the key that created it; other keys get "not
found". Stored responses expire after the retention period (OpenAI keeps them 30 days) and are
purged in the background. Closing the store writes everything still pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from turnout.storage.database import Database
from turnout.storage.tables import stored_responses as table
from turnout.storage.times import as_utc

log = logging.getLogger("turnout.responses")

RETENTION = timedelta(days=30)
FLUSH_BATCH = 200
RETRY_AFTER = 1.0  # seconds before a failed write is tried again
PURGE_EVERY = 3600.0


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    key_id: str
    created_at: datetime
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    conversation: list[dict[str, Any]]  # the chat messages a continuation starts from


class ResponseStore:
    def __init__(self, database: Database, retention: timedelta = RETENTION) -> None:
        self.database = database
        self.retention = retention
        self._pending: dict[str, StoredResponse] = {}
        self._deleted: set[str] = set()  # deleted while still pending a write
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def save(self, stored: StoredResponse) -> None:
        self._pending[stored.id] = stored
        self._wake.set()

    async def get(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        """The response, if it exists, has not expired, and belongs to `key_id` (None: any key)."""
        stored = self._pending.get(response_id)
        if stored is None:
            stored = await self._read(response_id)
        if stored is None or (key_id is not None and stored.key_id != key_id):
            return None
        return stored

    async def delete(self, response_id: str, key_id: str | None) -> bool:
        stored = await self.get(response_id, key_id)
        if stored is None:
            return False
        if self._pending.pop(response_id, None) is not None:
            self._deleted.add(response_id)
        async with self.database.engine.begin() as conn:
            await conn.execute(sa.delete(table).where(table.c.id == response_id))
        return True

    async def _read(self, response_id: str) -> StoredResponse | None:
        now = datetime.now(UTC)
        query = sa.select(table).where(table.c.id == response_id, table.c.expires_at > now)
        async with self.database.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        created = as_utc(row.created_at)
        return StoredResponse(
            row.id,
            row.key_id,
            created,
            orjson.loads(row.response),
            orjson.loads(row.input_items),
            orjson.loads(row.conversation),
        )

    async def flush(self) -> None:
        """Write every pending response (raises if the database refuses)."""
        while self._pending:
            batch = list(self._pending.values())[:FLUSH_BATCH]
            rows = [
                {
                    "id": s.id,
                    "key_id": s.key_id,
                    "created_at": s.created_at,
                    "expires_at": s.created_at + self.retention,
                    "response": orjson.dumps(s.response),
                    "input_items": orjson.dumps(s.input_items),
                    "conversation": orjson.dumps(s.conversation),
                }
                for s in batch
            ]
            async with self.database.engine.begin() as conn:
                await conn.execute(sa.insert(table), rows)
            for s in batch:
                if self._pending.get(s.id) is s:
                    del self._pending[s.id]
            if self._deleted:  # deleted while its write was in flight
                async with self.database.engine.begin() as conn:
                    await conn.execute(sa.delete(table).where(table.c.id.in_(self._deleted)))
                self._deleted.clear()

    async def purge_expired(self) -> int:
        async with self.database.engine.begin() as conn:
            result = await conn.execute(sa.delete(table).where(table.c.expires_at <= datetime.now(UTC)))
        return int(result.rowcount or 0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        while True:
            if loop.time() >= next_purge:
                next_purge = loop.time() + PURGE_EVERY
                with contextlib.suppress(Exception):
                    await self.purge_expired()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), PURGE_EVERY)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as error:  # the database is away: keep them and try again
                log.warning("could not store %d responses yet: %s", len(self._pending), error)
                await asyncio.sleep(RETRY_AFTER)
                self._wake.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as error:
            log.error("%d stored responses could not be written on shutdown: %s", len(self._pending), error)
