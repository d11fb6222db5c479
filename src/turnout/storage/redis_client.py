"""The connection to Redis (`storage.redis_url`) and the Lua scripts run through it, both made for
the request path: a rate-limited request runs one script with 50-80 arguments."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio as redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError
from redis.typing import EncodableT


def connect(url: str) -> redis.Redis:
    """A client of the Redis at `url` (TCP, TLS or a Unix socket) whose calls give up after a
    second (the caller then decides alone)."""
    pool = redis.ConnectionPool.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    pool.connection_class = packing_in_one_call(pool.connection_class)
    return redis.Redis.from_pool(pool)  # the client closes the pool with it


class Script:
    """A Lua script run by its SHA1 (`EVALSHA`), sent once more in full after Redis lost it (a
    restart, `SCRIPT FLUSH`). redis-py's own registered script costs twice as much Python a call
    (two imports and type checks each time): this one runs on every request."""

    __slots__ = ("client", "sha", "source")

    def __init__(self, client: redis.Redis, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()  # Redis names it so

    async def __call__(self, keys: Sequence[str], args: Sequence[int | str] = ()) -> Any:
        try:
            return await self.client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            self.sha = await self.client.script_load(self.source)
            return await self.client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]


def packing_in_one_call(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """`base` (a TCP, TLS or Unix socket connection) packing a command in one hiredis call: the
    limits-and-budgets script's 50-80 arguments took redis-py 31 us to pack one at a time (8% of
    a rate-limited request's CPU), 4 us so. What hiredis does not take (bytearray, bool, None, a
    command name of two words) goes the usual way: the same bytes, or redis-py's own error."""

    class Packing(base):  # type: ignore[valid-type, misc]
        def pack_command(self, *args: EncodableT) -> list[bytes]:
            name = args[0]
            two_words = (isinstance(name, str) and " " in name) or (isinstance(name, bytes) and b" " in name)
            if not two_words:
                try:
                    return [hiredis.pack_command(args)]  # type: ignore[arg-type]
                except TypeError:
                    pass
            return super().pack_command(*args)  # type: ignore[no-any-return]

    Packing.__name__ = Packing.__qualname__ = f"Packing{base.__name__}"
    return Packing
