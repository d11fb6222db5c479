"""Budget windows' use in Redis, shared by every instance (`storage.redis_url`).

Each budget window is a hash `turnout:budget:<id>:<window start>` — `spent` (settled cost, in
micro-dollars), `held` (the sum of the reservations) and one field `r:<reservation>` per request in
flight — and a sorted set `...:due` of those reservations by deadline (Redis's clock, in ms). A
reservation lives `lapse` seconds unless its instance renews it, so the reservations of a killed
instance lapse by themselves; the scripts prune lapsed ones (a bounded number per call) before
they read a window, and a reservation does when the window would not have room without pruning.
Reserving is one script run, one round trip: it reads Redis's `TIME`, checks the instance chose the
window that holds that instant, and reserves in every budget or in none.

A window without `spent` (a new window; a counter flushed or evicted) is never guessed at: the
script says so and the instance seeds it from the ledger under a lock (spend/budgets.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from turnout.limits.shared import CHECK as LIMITS_CHECK
from turnout.limits.shared import Answer, Ask, answer_of
from turnout.spend.shared_counters import RETRY_SECONDS, SETTLE_INTERVAL, SharedCounters
from turnout.storage.redis_client import Script
from turnout.storage.reference_clock import ReferenceClock

log = logging.getLogger("turnout.spend")

PREFIX = "turnout:budget:"
BATCH_MARK_SECONDS = 7 * 24 * 3600  # how long an instance's last applied batch number is kept
NO_MARK = PREFIX + "batches:-"  # the mark of batches that may be applied twice (never written)
AFTER_WINDOW_MS = 24 * 3600 * 1000  # a window's keys outlive its end by a day (set when seeded)
SEED_LOCK_MS = 10_000  # how long a seeding instance holds the lock at most
SEED_WAIT = 2.0  # seconds another instance waits for that seed before deciding alone

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function prune(h, due)
  local gone = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, 64)
  for _, r in ipairs(gone) do
    local held = tonumber(redis.call('HGET', h, 'r:' .. r))
    if held then
      redis.call('HDEL', h, 'r:' .. r)
      redis.call('HINCRBY', h, 'held', -held)
    end
    redis.call('ZREM', due, r)
  end
end
local function used(h)
  local v = redis.call('HMGET', h, 'spent', 'held')
  return (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
end
"""

# KEYS: one hash per budget (its sorted set is the hash's key + ':due'), then the rate limits' keys
# (limits/shared.py) if any. ARGV: the rate limits' words if any (one argument each), then last,
# space-separated: amount, reservation id, lapse ms, then per budget: limit, window start ms,
# window end ms (0: none). The limits are checked first, then the
# budgets; both are taken, or neither. Returns {code, value, now}, then the limits' reply when
# they were given: {0, 0} reserved in all; {i, used} budget i has no room; {-1, i} budget i's
# window has no counter (seed it); {-2, i} Redis's clock is outside budget i's window (the
# instance's clock is off); {-3, 0} a rate limit has no room (which: the limits' reply).
RESERVE = (
    _NOW
    + LIMITS_CHECK
    + """
local a = {}
for w in string.gmatch(ARGV[#ARGV], '%S+') do a[#a + 1] = w end
local amount, rid, lapse = tonumber(a[1]), a[2], tonumber(a[3])
local nb, lw, lres, held = #KEYS, nil, nil, {}
if #ARGV > 1 then
  lw = ARGV
  nb = #KEYS - tonumber(lw[1]) - (tonumber(lw[4 + tonumber(lw[1]) * 5]) or 0)
  limits_release(lw, nb)
  local lcode, lvalue
  lcode, lvalue, lres = limits_check(lw, nb)
  if lcode ~= 0 then return {-3, 0, now, lcode, lvalue, now} end
end
for i = 1, nb do
  local h = KEYS[i]
  local due, b = h .. ':due', 4 + (i - 1) * 3
  local start, stop = tonumber(a[b + 1]), tonumber(a[b + 2])
  if now < start or (stop > 0 and now >= stop) then return {-2, i, now} end
  local v = redis.call('HMGET', h, 'spent', 'held')
  if not v[1] then return {-1, i, now} end
  local u = tonumber(v[1]) + (tonumber(v[2]) or 0)
  local left = tonumber(a[b]) - u
  if amount > left or left <= 0 then
    prune(h, due)
    v = redis.call('HMGET', h, 'spent', 'held')
    u = tonumber(v[1]) + (tonumber(v[2]) or 0)
    left = tonumber(a[b]) - u
    if amount > left or left <= 0 then return {i, u, now} end
  end
  held[i] = tonumber(v[2]) or 0
end
for i = 1, nb do
  local h = KEYS[i]
  redis.call('HSET', h, 'r:' .. rid, amount, 'held', held[i] + amount)
  redis.call('ZADD', h .. ':due', now + lapse, rid)
end
if not lw then return {0, 0, now} end
limits_take(lw, nb, lres)
local out = limits_reply(0, 0, lres, tonumber(lw[1]))
table.insert(out, 1, now)
table.insert(out, 1, 0)
table.insert(out, 1, 0)
return out
"""
)

# KEYS: the windows' hashes (each once). ARGV[1]: lapse ms; ARGV[2], space-separated, per
# operation: window (index into KEYS), op, reservation id, amount, held. op 's': a reservation
# settled — removed (its `held`, the amount this instance knows it holds, taken off the window's
# sum if the entry was still there) and `amount`, its cost, added to `spent`; 'p': spend recorded
# while Redis could not be reached (`amount` added to `spent`); 'k': a reservation shrunk by
# `amount`; 'r': a reservation renewed. Sums change once per window per run. Spend is added only
# to a window that has a counter: one without is seeded from the ledger, which holds it. Returns
# each window's use after the run, in the order of KEYS.
# The last KEY is the sending instance's batch mark and ARGV[3] the batch's number (0: a batch
# that only renews, safe to apply twice): a batch whose number is not above the mark was applied
# already (its answer was lost on the way back and it was sent again) and changes nothing.
APPLY = (
    _NOW
    + """
local lapse = tonumber(ARGV[1])
local n = #KEYS - 1
local mark, batch = KEYS[#KEYS], tonumber(ARGV[3])
if batch > 0 then
  if batch <= tonumber(redis.call('GET', mark) or '0') then
    local out = {}
    for i = 1, n do out[i] = used(KEYS[i]) end
    return out
  end
  redis.call('SET', mark, batch, 'EX', """
    + str(BATCH_MARK_SECONDS)
    + """)
end
local a = {}
for w in string.gmatch(ARGV[2], '%S+') do a[#a + 1] = w end
local held, spent = {}, {}
for i = 1, n do held[i], spent[i] = 0, 0 end
for b = 1, #a, 5 do
  local i, op, rid, amount = tonumber(a[b]), a[b + 1], a[b + 2], tonumber(a[b + 3])
  local h = KEYS[i]
  if op == 'r' then
    redis.call('ZADD', h .. ':due', 'XX', now + lapse, rid)
  elseif op == 'k' then
    local entry = tonumber(redis.call('HGET', h, 'r:' .. rid))
    if entry then
      local d = math.min(amount, entry)
      redis.call('HINCRBY', h, 'r:' .. rid, -d)
      held[i] = held[i] - d
    end
  else
    if op == 's' then
      if redis.call('HDEL', h, 'r:' .. rid) == 1 then held[i] = held[i] - tonumber(a[b + 4]) end
      redis.call('ZREM', h .. ':due', rid)
    end
    spent[i] = spent[i] + amount
  end
end
local out = {}
for i = 1, n do
  local h = KEYS[i]
  if held[i] ~= 0 then redis.call('HINCRBY', h, 'held', held[i]) end
  if spent[i] ~= 0 and redis.call('HEXISTS', h, 'spent') == 1 then
    redis.call('HINCRBY', h, 'spent', spent[i])
  end
  out[i] = used(h)
end
return out
"""
)

# KEYS: hash, due. ARGV: spent (from the ledger), window end ms (0: none). 1 if seeded. Both keys
# get their expiry here, once (the reservation script does not touch it): the sorted set holds a
# member that never lapses ('~', scored +inf), so it lives as long as the hash.
SEED = (
    """
if redis.call('HEXISTS', KEYS[1], 'spent') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spent', ARGV[1])
redis.call('ZADD', KEYS[2], '+inf', '~')
local stop = tonumber(ARGV[2])
if stop > 0 then
  redis.call('PEXPIREAT', KEYS[1], stop + """
    + str(AFTER_WINDOW_MS)
    + """)
  redis.call('PEXPIREAT', KEYS[2], stop + """
    + str(AFTER_WINDOW_MS)
    + """)
end
return 1
"""
)

# KEYS: hash, due. Returns {spent, held, now} after pruning, or {-1, 0, now} without a counter.
READ = (
    _NOW
    + """
prune(KEYS[1], KEYS[2])
local v = redis.call('HMGET', KEYS[1], 'spent', 'held')
if not v[1] then return {-1, 0, now} end
return {tonumber(v[1]), tonumber(v[2]) or 0, now}
"""
)

# KEYS: hash. ARGV: the correction, the time (ms) of the reading it was computed from. Applied
# (1) only if no correction was made since that reading (`checked`): never twice for one drift.
CORRECT = (
    _NOW
    + """
if redis.call('HEXISTS', KEYS[1], 'spent') == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'checked') or 0) > tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[1])
redis.call('HSET', KEYS[1], 'checked', now)
return 1
"""
)

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


Op = tuple[str, str, str, int, int]  # window key, op, reservation id, amount, held (APPLY)


@dataclass(frozen=True, slots=True)
class Span:
    """A budget window as a script sees it: its limit and bounds (unix ms; end 0: none)."""

    key: str
    limit: int
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Outcome:
    code: int  # 0 reserved; i > 0 budget i has no room; -1 seed budget i; -2 wrong window; -3 limited
    value: int  # used (code > 0) or the budget's index (code < 0)
    limits: Answer | None = None  # the rate limits' verdict, when they were asked too


def due_key(key: str) -> str:
    return key + ":due"


class BudgetCounters:
    def __init__(self, shared: SharedCounters, clock: ReferenceClock, lapse: float) -> None:
        self.shared = shared
        self.clock = clock
        self.lapse_ms = int(lapse * 1000)
        client = shared.client
        self._reserve: Script = Script(client, RESERVE)
        self._apply: Script = Script(client, APPLY)
        self._seed: Script = Script(client, SEED)
        self._read: Script = Script(client, READ)
        self._correct: Script = Script(client, CORRECT)
        self._unlock: Script = Script(client, RELEASE_LOCK)

    async def reserve(
        self, spans: Sequence[Span], rid: str, amount: int, limits: Ask | None = None
    ) -> Outcome | None:
        """One round trip (the rate limits' too, when `limits` asks); None when Redis cannot be
        reached (the instance decides alone)."""
        packed = f"{amount} {rid} {self.lapse_ms} " + " ".join(
            f"{span.limit} {span.start_ms} {span.end_ms}" for span in spans
        )
        keys = [span.key for span in spans]
        args: list[str | int] = [packed]
        if limits is not None:
            keys += limits.keys
            args = [*limits.words, packed]
        before = self.clock.local()
        reply = await self.shared.call(self._reserve, keys, args)
        if reply is None:
            return None
        self.clock.observe(int(reply[2]) / 1000, "redis", before)
        answer = None if len(reply) <= 3 else answer_of(reply, 3)
        return Outcome(int(reply[0]), int(reply[1]), answer)

    async def apply(self, ops: Sequence[Op], mark: str = NO_MARK, batch: int = 0) -> list[int]:
        """(window key, op, reservation id, amount, held) each, in one round trip, unless batch
        number `batch` of the sender whose mark is `mark` was applied already (batch 0: renewals
        only, which may be applied twice); each operation's window's use after them. Raises
        RedisError."""
        index: dict[str, int] = {}
        words = []
        for key, op, rid, amount, held in ops:
            i = index.setdefault(key, len(index) + 1)
            words.append(f"{i} {op} {rid or '-'} {amount} {held}")
        use = await self._apply(keys=[*index, mark], args=[self.lapse_ms, " ".join(words), batch])
        return [int(use[index[key] - 1]) for key, *_ in ops]

    async def read(self, key: str) -> tuple[int, int] | None:
        """(spent, held) of a window, or None without a counter. Raises RedisError."""
        reading = await self.reading(key)
        return None if reading is None else (reading[0], reading[1])

    async def reading(self, key: str) -> tuple[int, int, int] | None:
        """(spent, held, Redis's time in ms) of a window, or None without a counter."""
        spent, held, now = await self._read(keys=[key, due_key(key)])
        return None if int(spent) < 0 else (int(spent), int(held), int(now))

    async def seed(self, key: str, spent: int, end_ms: int) -> bool:
        return bool(await self._seed(keys=[key, due_key(key)], args=[spent, end_ms]))

    async def correct(self, key: str, delta: int, read_at_ms: int) -> bool:
        return bool(await self._correct(keys=[key], args=[delta, read_at_ms]))

    async def lock(self, key: str, token: str) -> bool:
        return bool(await self.shared.client.set(key + ":lock", token, nx=True, px=SEED_LOCK_MS))

    async def unlock(self, key: str, token: str) -> None:
        await self._unlock(keys=[key + ":lock"], args=[token])


class Settlements:
    """Operations on the counters collected for `interval` seconds and sent in one script run:
    one round trip for them all rather than one per request. What cannot be sent (Redis away) is
    kept and sent when it answers again — nothing settled is lost from the counters. Until then a
    counter holds the reservation in full: too much is held for a while, never too little.
    `on_value(context, value)` sees each window's use after its operation.

    Batches are numbered and sent one at a time; one that failed is sent again, alone and under
    its number, before any later one. Redis keeps the number of this sender's last applied batch
    (its mark, kept `BATCH_MARK_SECONDS`), so a batch Redis applied but whose answer was lost (a
    timeout, a connection cut after the write) is not counted twice when it is sent again."""

    def __init__(
        self,
        counters: BudgetCounters,
        on_value: Callable[[Any, int], None] | None = None,
        interval: float = SETTLE_INTERVAL,
    ) -> None:
        self.counters = counters
        self.on_value = on_value
        self.interval = interval
        self._ops: list[Op] = []
        self._contexts: list[Any] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        self.mark = f"{PREFIX}batches:{secrets.token_hex(8)}"  # this sender's, in Redis
        self._batches = 0  # the last batch's number
        self._unsent: tuple[int, list[Op], list[Any]] | None = None  # a batch to send again
        self._sending = asyncio.Lock()

    @property
    def pending(self) -> int:
        return len(self._ops) + (0 if self._unsent is None else len(self._unsent[1]))

    def add(self, key: str, op: str, rid: str, amount: int, held: int = 0, context: Any = None) -> None:
        self._ops.append((key, op, rid, amount, held))
        self._contexts.append(context)
        self._arm(self.interval)

    def _arm(self, delay: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._start)

    def _start(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self) -> None:
        async with self._sending:
            if self._unsent is not None and not await self._send(*self._unsent):
                return
            ops, contexts = self._ops, self._contexts
            self._ops, self._contexts = [], []
            if ops:
                self._batches += 1
                await self._send(self._batches, ops, contexts)

    async def _send(self, batch: int, ops: list[Op], contexts: list[Any]) -> bool:
        try:
            values = await self.counters.apply(ops, self.mark, batch)
        except RedisError:
            self._unsent = (batch, ops, contexts)
            log.warning("could not send %d budget settlements to Redis; trying again", len(ops))
            self._arm(RETRY_SECONDS)
            return False
        self._unsent = None
        if self.on_value is not None:
            for context, value in zip(contexts, values, strict=True):
                if context is not None:
                    self.on_value(context, value)
        return True

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def aclose(self) -> None:
        self._disarm()
        await asyncio.gather(*self._flushing, return_exceptions=True)
        await self.flush()
        self._disarm()  # Redis away at shutdown: reconciliation adds that spend later
