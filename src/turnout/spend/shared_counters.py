"""Redis shared by every instance of a deployment (`storage.redis_url`): the connection and
whether Redis answers. Budgets and prepaid credit keep their counters there in the layout of
spend/budget_counters.py; rate limits in that of limits/shared.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from turnout.storage.redis_client import Script, connect

log = logging.getLogger("turnout.spend")

SETTLE_INTERVAL = 0.05  # seconds settlements are collected before they are sent together
RETRY_SECONDS = 5.0  # how long an unreachable Redis is left alone before it is tried again


class SharedCounters:
    """The connection, and whether Redis answers: while it does not, `call` returns None at once
    (each instance decides alone) and Redis is tried again after `RETRY_SECONDS`."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.down = False
        self._retry_at = 0.0  # monotonic: while down, the first reservation from then tries Redis

    @classmethod
    def connect(cls, url: str) -> SharedCounters:
        return cls(connect(url))

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[int | str]) -> Any:
        """Run a registered script; None (at once while Redis is known to be away) when Redis
        cannot be reached."""
        if self.down and time.monotonic() < self._retry_at:
            return None
        try:
            reply = await script(keys, args)
        except RedisError:
            if not self.down:
                log.warning(
                    "Redis is unreachable: each instance holds budgets and prepaid credit on its own "
                    "until it answers"
                )
            self.down = True
            self._retry_at = time.monotonic() + RETRY_SECONDS
            return None
        if self.down:
            log.info("Redis answers again: budgets and prepaid credit are shared by the instances again")
            self.down = False
        return reply

    async def answers(self) -> bool:
        """Does Redis answer a ping now (within the client's one-second timeouts)? For /metrics."""
        try:
            return bool(await self.client.ping())
        except RedisError:
            return False

    async def aclose(self) -> None:
        await self.client.aclose()
