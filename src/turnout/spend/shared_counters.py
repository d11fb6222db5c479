"""Counters in Redis shared by every instance of a deployment (`storage.redis_url`): the
connection and whether Redis answers, and prepaid teams' credit counters (budgets have their own
layout: spend/budget_counters.py).

One counter per prepaid team holds what it has used — charged plus held, in micro-dollars — across
instances. A hold is one script run (one round trip): it checks the counter and, only if it has
room, adds the amount, atomically. A counter that does not exist yet (Redis restarted) starts from
the instance's own knowledge (the ledger's sum, read on start), written only if still absent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger("turnout.spend")

SETTLE_INTERVAL = 0.05  # seconds settlements are collected before they are sent together
RETRY_SECONDS = 5.0  # how long an unreachable Redis is left alone before it is tried again

# KEYS: one counter per budget. ARGV: amount, then for each budget: limit, seed, ttl (0: none).
# Returns {0, 0} when reserved in all, else {i, used}: the first budget without room (1-based)
# and what it had used.
RESERVE = """
local amount = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local base = 2 + (i - 1) * 3
  local used = redis.call('GET', key)
  if not used then
    used = ARGV[base + 1]
    local ttl = tonumber(ARGV[base + 2])
    if ttl > 0 then redis.call('SET', key, used, 'EX', ttl) else redis.call('SET', key, used) end
  end
  local left = tonumber(ARGV[base]) - tonumber(used)
  if amount > left or left <= 0 then return {i, tonumber(used)} end
end
for i, key in ipairs(KEYS) do redis.call('INCRBY', key, amount) end
return {0, 0}
"""


class SharedCounters:
    """The counters, and whether Redis answers: while it does not, `reserve` returns None at once
    (each instance decides alone) and Redis is tried again after `RETRY_SECONDS`."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._reserve: Any = client.register_script(RESERVE)
        self.down = False
        self._retry_at = 0.0  # monotonic: while down, the first reservation from then tries Redis

    @classmethod
    def connect(cls, url: str) -> SharedCounters:
        return cls(redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0))

    async def reserve(
        self,
        keys: Sequence[str],
        limits: Sequence[int],
        seeds: Sequence[int],
        ttls: Sequence[int],
        amount: int,
    ) -> tuple[int, int] | None:
        """(0, 0) when `amount` was reserved in every counter; else (i, used) for the first
        budget (1-based) without room and what it had used. None: Redis cannot be reached."""
        args: list[int] = [amount]
        for limit, seed, ttl in zip(limits, seeds, ttls, strict=True):
            args += [limit, seed, ttl]
        reply = await self.call(self._reserve, keys, args)
        return None if reply is None else (int(reply[0]), int(reply[1]))

    async def call(self, script: Any, keys: Sequence[str], args: Sequence[int | str]) -> Any:
        """Run a registered script; None (at once while Redis is known to be away) when Redis
        cannot be reached."""
        if self.down and time.monotonic() < self._retry_at:
            return None
        try:
            reply = await script(keys=list(keys), args=list(args))
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

    async def adjust(self, deltas: dict[str, int]) -> None:
        """Add each delta to its counter now (one round trip): reservations that were counted
        exactly and shrank give back what they no longer need before a refusal is decided."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key, delta in deltas.items():
                pipe.incrby(key, delta)
            await pipe.execute()

    async def aclose(self) -> None:
        await self.client.aclose()


class SettleBatch:
    """Settlements (what requests cost less what they reserved) collected for `interval` seconds
    and sent to the counters in one pipeline: one round trip for them all rather than one per
    request. Until then a counter holds the reservation in full: too much is held for a moment,
    never too little. `on_value(context, value)` sees each counter's new value."""

    def __init__(
        self,
        counters: SharedCounters,
        on_value: Callable[[Any, int], None] | None = None,
        interval: float = SETTLE_INTERVAL,
    ) -> None:
        self.counters = counters
        self.on_value = on_value
        self.interval = interval
        self._deltas: dict[str, int] = {}
        self._contexts: dict[str, Any] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    def add(self, key: str, delta: int, context: Any = None) -> None:
        self._deltas[key] = self._deltas.get(key, 0) + delta
        if context is not None:
            self._contexts[key] = context
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._start)

    def _start(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self) -> None:
        deltas, contexts = self._deltas, self._contexts
        self._deltas, self._contexts = {}, {}
        if not deltas:
            return
        try:
            async with self.counters.client.pipeline(transaction=False) as pipe:
                for key, delta in deltas.items():
                    pipe.incrby(key, delta)
                values = [int(v) for v in await pipe.execute()]
        except RedisError:  # the counters keep the reservations: too much held, never too little
            log.warning("could not settle %d reservations in Redis", len(deltas), exc_info=True)
            return
        if self.on_value is not None:
            for key, value in zip(deltas, values, strict=True):
                if key in contexts:
                    self.on_value(contexts[key], value)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.gather(*self._flushing, return_exceptions=True)
        await self.flush()
