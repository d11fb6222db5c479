"""Console sessions: a signed-in browser holds a random token in an HttpOnly cookie; the database
keeps its SHA-256 (never the token), the key it signed in with, its CSRF token and its end. Every
instance sharing the database knows every session; signing out deletes the row, so the cookie is
worthless at once everywhere. Who the session acts as is not stored: the key is read again on each
request (console/signing_in.py)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from turnout.storage.database import Database
from turnout.storage.tables import console_sessions

TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class Session:
    id_hash: bytes
    key_id: str
    key_hash: bytes
    csrf_token: str
    expires_at: float

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf_token.encode())


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Sessions:
    def __init__(self, database: Database, ttl: float, *, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.ttl = ttl
        self.clock = clock

    async def begin(self, key_id: str, key_hash: bytes) -> tuple[str, Session]:
        """A new session for the key: (the cookie's token, the session). Sessions past their end
        are deleted on the way."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self.clock()
        session = Session(_hash(token), key_id, key_hash, secrets.token_urlsafe(TOKEN_BYTES), now + self.ttl)
        async with self.database.engine.begin() as conn:
            await conn.execute(sa.delete(console_sessions).where(console_sessions.c.expires_at < now))
            await conn.execute(
                sa.insert(console_sessions).values(
                    id_hash=session.id_hash,
                    key_id=key_id,
                    key_hash=key_hash,
                    csrf_token=session.csrf_token,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return token, session

    async def find(self, token: str | None) -> Session | None:
        """The live session the cookie's token names (None: none, or it has ended)."""
        if not token or len(token) > 128:
            return None
        table = console_sessions.c
        query = sa.select(console_sessions).where(
            table.id_hash == _hash(token), table.expires_at > self.clock()
        )
        async with self.database.engine.connect() as conn:
            row = (await self.database.within(conn.execute(query))).first()
        if row is None:
            return None
        return Session(row.id_hash, row.key_id, row.key_hash, row.csrf_token, row.expires_at)

    async def end(self, session: Session) -> None:
        async with self.database.engine.begin() as conn:
            await conn.execute(
                sa.delete(console_sessions).where(console_sessions.c.id_hash == session.id_hash)
            )
