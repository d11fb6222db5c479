"""Rate limits shared by every instance through Redis (`storage.redis_url`), in one script run per
request: on its own, or inside the budget reservation's script (spend/budget_counters.py), which
checks the limits and the budgets and takes both or neither — one round trip for both.

A window limit (rpm, tpm, rpd) is a hash `turnout:limit:<scope>:<subject>:<measure>` holding a
count per slice of time (by Redis's `TIME`), `sum` (the window's total) and `lo` (the oldest slice
counted, always one that holds a count): the layout of limits/window.py, so a minute is 60
one-second slices and nothing doubles at a boundary. A request admitted in a window costs Redis
two commands there (read `sum`, `lo` and the current slice; write the slice and `sum`, the script
being atomic); old slices are dropped, and the key's expiry pushed back, only when the window has
moved on. A concurrency limit is a sorted set of the requests running, each with a deadline its
instance pushes back while the request runs: a killed instance's requests free their places (the
lapsed ones are dropped when a request would not fit without them).
Settlements (a token reservation set to the actual, a finished request's place) are sent behind
the requests, collected for `SETTLE_INTERVAL` seconds into one script run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from turnout.storage.redis_client import Script

log = logging.getLogger("turnout.limits")

PREFIX = "turnout:limit:"
SETTLE_INTERVAL = 0.05
RETRY_SECONDS = 5.0  # how long an unreachable Redis is left alone before it is tried again

# A Lua fragment: `limits_check(words, base)` with the limits' words, one argument each (count,
# request id, lapse ms, then per limit: kind ('w' window, 'p' at once), limit, amount, slice ms,
# slices; then the number of places given back and their request ids: Redis splits them, the
# script parses no string) and the index in KEYS before the
# first limit's key (the places' keys follow the limits'). `limits_release` gives those places back
# first: a finished request's place rides with the instance's next script run, no round trip of
# its own. Needs `now` (ms, Redis's TIME). Returns
# 0, 0, results when every limit has room (results: per limit {used after, reset ms, slice}), or
# j, wait ms (-1: never), nil for the first limit j without room. Writes nothing but pruning.
CHECK = """
local function limits_release(lw, base)
  local n = tonumber(lw[1])
  local at = 4 + n * 5
  local m = tonumber(lw[at]) or 0
  for i = 1, m do
    redis.call('ZREM', KEYS[base + n + i], lw[at + i])
  end
end
local function limits_check(lw, base)
  local n = tonumber(lw[1])
  local res = {}
  for j = 1, n do
    local b = 3 + (j - 1) * 5
    local kind, limit, amount = lw[b + 1], tonumber(lw[b + 2]), tonumber(lw[b + 3])
    local sl, ns = tonumber(lw[b + 4]), tonumber(lw[b + 5])
    local k = KEYS[base + j]
    if kind == 'p' then
      local used = redis.call('ZCARD', k)
      if used + 1 > limit then
        redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
        used = redis.call('ZCARD', k)
        if used + 1 > limit then return j, 1000, nil end
      end
      res[j] = {used + 1, 0, 0}
    else
      local cur = math.floor(now / sl)
      local cutoff = cur - ns + 1
      local v = redis.call('HMGET', k, 'sum', 'lo', cur)
      local total, lo, here = tonumber(v[1]) or 0, tonumber(v[2]), tonumber(v[3])
      local fresh = false
      if lo == nil or cutoff - lo > ns then
        if lo ~= nil then redis.call('DEL', k) end
        total, lo, here, fresh = 0, cur, nil, true
      elseif lo < cutoff then
        while lo < cur and (lo < cutoff or redis.call('HEXISTS', k, lo) == 0) do
          local c = redis.call('HGET', k, lo)
          if c then
            total = total - tonumber(c)
            redis.call('HDEL', k, lo)
          end
          lo = lo + 1
        end
        redis.call('HSET', k, 'sum', total, 'lo', lo)
      end
      if amount > limit then return j, -1, nil end
      local excess = total + amount - limit
      if excess > 0 then
        for s = lo, cur do
          local c = tonumber(redis.call('HGET', k, s))
          if c then
            excess = excess - c
            if excess <= 0 then return j, (s + ns) * sl - now, nil end
          end
        end
        return j, ns * sl, nil
      end
      local reset = (lo + ns) * sl - now
      if total == 0 then reset = (cur + ns) * sl - now end
      res[j] = {total + amount, reset, cur, fresh or lo > cur, here}
    end
  end
  return 0, 0, res
end
local function limits_take(lw, base, res)
  local rid, lapse = lw[2], tonumber(lw[3])
  for j = 1, tonumber(lw[1]) do
    local b = 3 + (j - 1) * 5
    local k = KEYS[base + j]
    if lw[b + 1] == 'p' then
      redis.call('ZADD', k, now + lapse, rid)
      redis.call('PEXPIRE', k, lapse * 2)
    else
      local amount, sl, ns = tonumber(lw[b + 3]), tonumber(lw[b + 4]), tonumber(lw[b + 5])
      local r = res[j]
      local cur, here = r[3], r[5]
      if r[4] then
        redis.call('HSET', k, 'sum', r[1], cur, (here or 0) + amount, 'lo', cur)
      else
        redis.call('HSET', k, 'sum', r[1], cur, (here or 0) + amount)
      end
      if here == nil then redis.call('PEXPIRE', k, sl * ns + sl) end
    end
  end
end
local function limits_reply(code, value, res, n)
  local out = {code, value, now}
  if res then
    for j = 1, n do
      out[#out + 1] = res[j][1]
      out[#out + 1] = res[j][2]
      out[#out + 1] = res[j][3]
    end
  end
  return out
end
"""

NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: the limits' keys. ARGV: the limits' words. Returns {0, 0, now, used, reset, slice...}
# when admitted in every limit, {j, wait ms, now} for the first limit j without room.
ADMIT = (
    NOW
    + CHECK
    + """
local lw = ARGV
limits_release(lw, 0)
local code, value, res = limits_check(lw, 0)
if code ~= 0 then return limits_reply(code, value, nil, 0) end
limits_take(lw, 0, res)
return limits_reply(0, 0, res, tonumber(lw[1]))
"""
)

# KEYS: the keys settled. ARGV[1]: lapse ms; ARGV[2], per operation: key index, op, slice or request
# id, amount. op 't': tokens counted in a slice changed by `amount` (if that slice is still held);
# 'x': a request's place given back; 'r': its place renewed.
SETTLE = (
    NOW
    + """
local lapse = tonumber(ARGV[1])
local a = {}
for w in string.gmatch(ARGV[2], '%S+') do a[#a + 1] = w end
for b = 1, #a, 4 do
  local k, op, what, amount = KEYS[tonumber(a[b])], a[b + 1], a[b + 2], tonumber(a[b + 3])
  if op == 't' then
    local v = redis.call('HMGET', k, what, 'sum')
    local c = tonumber(v[1])
    if c then
      local d = math.max(amount, -c)
      redis.call('HSET', k, what, c + d, 'sum', (tonumber(v[2]) or 0) + d)
    end
  elseif op == 'x' then
    redis.call('ZREM', k, what)
  else
    redis.call('ZADD', k, 'XX', now + lapse, what)
  end
end
return 0
"""
)


@dataclass(frozen=True, slots=True)
class Ask:
    """What a request asks of the shared limits: the keys and the one packed argument (with the
    places of finished requests it gives back on the way)."""

    keys: list[str]
    words: list[str | int]
    count: int
    released: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Answer:
    """The script's reply for the limits: code 0 (admitted; per limit (used, reset ms, slice)) or
    the 1-based index of the limit without room and the wait in ms (-1: never)."""

    code: int
    wait_ms: int
    now_ms: int
    taken: list[tuple[int, int, int]]


def answer_of(reply: Sequence[Any], offset: int = 0) -> Answer:
    """The limits' part of a reply: {code, value, now, then per limit used, reset, slice} from
    `offset` on."""
    code, value, now = int(reply[offset]), int(reply[offset + 1]), int(reply[offset + 2])
    rest = reply[offset + 3 :]
    taken = [(int(rest[i]), int(rest[i + 1]), int(rest[i + 2])) for i in range(0, len(rest), 3)]
    return Answer(code, value, now, taken)


class SharedLimits:
    """The limits' scripts and whether Redis answers: while it does not, each instance decides
    alone (its share of each limit) and Redis is tried again after `RETRY_SECONDS`."""

    def __init__(self, client: redis.Redis, lapse: float) -> None:
        self.client = client
        self.lapse_ms = int(lapse * 1000)
        self._admit: Script = Script(client, ADMIT)
        self._settle: Script = Script(client, SETTLE)
        self.down = False
        self._retry_at = 0.0
        self._ops: list[tuple[str, str, str, int]] = []
        self._released: list[tuple[str, str]] = []  # (key, request id): places given back
        self._timer: asyncio.TimerHandle | None = None
        self._releasing = False  # a script run giving places back is due at the loop's next turn
        self._flushing: set[asyncio.Task[None]] = set()

    @property
    def usable(self) -> bool:
        return not self.down or time.monotonic() >= self._retry_at

    async def admit(self, ask: Ask) -> Answer | None:
        """One round trip; None when Redis cannot be reached."""
        try:
            reply = await self._admit(keys=ask.keys, args=ask.words)
        except RedisError:
            self.unreachable()
            return None
        self.reachable()
        return answer_of(reply)

    def unreachable(self) -> None:
        if not self.down:
            log.warning(
                "Redis is unreachable: each instance enforces its share of every rate limit until it answers"
            )
        self.down = True
        self._retry_at = time.monotonic() + RETRY_SECONDS

    def reachable(self) -> None:
        if self.down:
            log.info("Redis answers again: rate limits are shared by the instances again")
            self.down = False

    def add(self, key: str, op: str, what: str, amount: int = 0) -> None:
        """An operation sent with the next settlements (within SETTLE_INTERVAL)."""
        self._ops.append((key, op, what, amount))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SETTLE_INTERVAL, self._start)

    def release(self, key: str, rid: str) -> None:
        """A finished request's place: given back at the event loop's next turn, in one script run
        with every place given back meanwhile (or by this instance's next admission, if it comes
        first), so that the client's next request finds it free through any instance."""
        self._released.append((key, rid))
        if not self._releasing:
            self._releasing = True
            asyncio.get_running_loop().call_soon(self._release_now)

    def _release_now(self) -> None:
        self._releasing = False
        if self._released:  # not carried by an admission's script run meanwhile
            self._flush_behind()

    def take_released(self) -> list[tuple[str, str]]:
        released, self._released = self._released, []
        return released

    def give_back(self, released: list[tuple[str, str]]) -> None:
        """Places a script run could not give back (Redis away): sent again later."""
        if released:
            self._released += released

    def _start(self) -> None:
        self._timer = None
        self._flush_behind()

    def _flush_behind(self) -> None:
        task = asyncio.get_running_loop().create_task(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self) -> None:
        ops, self._ops = self._ops, []
        ops += [(key, "x", rid, 0) for key, rid in self.take_released()]
        if not ops:
            return
        index: dict[str, int] = {}
        words = []
        for key, op, what, amount in ops:
            words.append(f"{index.setdefault(key, len(index) + 1)} {op} {what} {amount}")
        try:
            await self._settle(keys=list(index), args=[self.lapse_ms, " ".join(words)])
        except RedisError:  # places lapse by themselves; tokens stay counted at their estimate
            log.warning("could not send %d rate-limit settlements to Redis", len(ops))

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.gather(*self._flushing, return_exceptions=True)
        await self.flush()
