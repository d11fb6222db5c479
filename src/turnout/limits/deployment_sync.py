"""Deployments' capacity (a target's `rpm` / `tpm`) shared by the instances, so that together they
move traffic to an alias's other deployments before a provider's own limit is hit — and never
send a deployment more than its capacity.

The router decides in memory (routing/deployments.py: no round trip per attempt) from grants. A
deployment's shared sliding window in Redis (the layout of limits/shared.py) counts what every
instance sent in the last minute, and what it was granted: a grant is counted in the window as if it
were used, the moment Redis gives it, out of what the window leaves. An instance sends only within
its grant. When the grant runs out, the next request asks Redis for more — twice what the last grant
held, so a steady pace costs a few round trips a second, shared by every request waiting meanwhile —
and if Redis has nothing left, the deployment is held back until the next sync. Every `SYNC_SECONDS`
an instance gives back what it did not use of its grant (and adds what it used beyond it: tokens are
known only when an answer ends), so an idle instance holds nothing the others could use; what it
gives back is no longer its own from the moment it is offered (a request meanwhile waits for the
exchange's answer). A killed instance's grant stays counted until its minute has passed: its
deployments may be sent less for that minute, never more. Without Redis (or while it is unreachable)
each instance takes its share: the limit ÷ the live instances.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from turnout.domain.rate_limits import MINUTE
from turnout.limits.shared import NOW, PREFIX, SharedLimits
from turnout.periodic import Periodic
from turnout.routing.deployments import DeploymentRegistry, DeploymentState
from turnout.storage.redis_client import Script

log = logging.getLogger("turnout.limits")

SYNC_SECONDS = 1.0
SLICES = 60

# KEYS: the deployments' windows. ARGV[1]: slice ms, slices; then per key: the amount to add now
# (used beyond a grant), the amount to give back (a grant's unused part), the slice it was counted
# in, the limit, the grant wanted. Returns per key the window's sum after the change (slices older
# than the window dropped first, a give-back only if its slice is still counted), the grant (what
# is wanted, within what the window leaves: counted in the window at once) and the current slice.
SYNC = (
    NOW
    + """
local a = {}
for w in string.gmatch(ARGV[1], '%S+') do a[#a + 1] = w end
local sl, ns = tonumber(a[1]), tonumber(a[2])
local cur = math.floor(now / sl)
local cutoff = cur - ns + 1
local out = {}
for i, k in ipairs(KEYS) do
  local b = 2 + (i - 1) * 5
  local add, back, slice = tonumber(a[b + 1]), tonumber(a[b + 2]), tonumber(a[b + 3])
  local limit, want = tonumber(a[b + 4]), tonumber(a[b + 5])
  local v = redis.call('HMGET', k, 'sum', 'lo')
  local total, lo = tonumber(v[1]) or 0, tonumber(v[2])
  if lo == nil or cutoff - lo > ns then
    if lo ~= nil then redis.call('DEL', k) end
    total = 0
  else
    while lo < cutoff do
      local c = redis.call('HGET', k, lo)
      if c then
        total = total - tonumber(c)
        redis.call('HDEL', k, lo)
      end
      lo = lo + 1
    end
  end
  if lo == nil or lo < cutoff then lo = cutoff end
  if back > 0 and slice >= lo then
    local c = tonumber(redis.call('HGET', k, slice))
    if c then
      local d = math.min(back, c)
      redis.call('HINCRBY', k, slice, -d)
      total = total - d
    end
  end
  local grant = math.max(math.min(want, limit - total - add), 0)
  if add + grant > 0 then redis.call('HINCRBY', k, cur, add + grant) end
  total = total + add + grant
  redis.call('HSET', k, 'sum', total, 'lo', lo)
  redis.call('PEXPIRE', k, sl * ns + sl)
  out[3 * i - 2] = total
  out[3 * i - 1] = grant
  out[3 * i] = cur
end
return out
"""
)


class DeploymentSync:
    def __init__(
        self,
        registry: Callable[[], DeploymentRegistry],
        shared: SharedLimits | None,
        peers: Callable[[], int],
    ) -> None:
        self.registry = registry
        self.shared = shared
        self.peers = peers
        self._sync: Script | None = None if shared is None else Script(shared.client, SYNC)
        self._exchanging = asyncio.Lock()  # one exchange at a time: what was sent on is counted once
        self.periodic = Periodic(self.tick, SYNC_SECONDS, "sharing deployments' capacity")
        if shared is not None:
            registry().grants = self.top_up  # grants from the first request on

    def start(self) -> None:
        self.periodic.start()

    async def tick(self) -> None:
        registry = self.registry()
        peers = max(self.peers(), 1)
        registry.share_of = peers  # what a deployment takes without Redis
        limited = [s for s in registry.all() if s.rpm is not None or s.tpm is not None]
        shared = self.shared
        if shared is None or not shared.usable:
            self._alone(registry, limited, peers)
            return
        registry.grants = self.top_up
        if limited and not await self._exchange(limited, topping_up=False):
            self._alone(registry, limited, peers)

    async def top_up(self, state: DeploymentState) -> None:
        """A grant ran out before the next sync: ask Redis for more now. Nothing more to grant
        holds the deployment back until the next sync."""
        shared = self.shared
        if shared is None or not shared.usable or not await self._exchange([state], topping_up=True):
            self._alone(self.registry(), [state], max(self.peers(), 1))

    def _alone(self, registry: DeploymentRegistry, states: list[DeploymentState], peers: int) -> None:
        """Redis cannot be reached: each instance takes its share of every deployment's capacity."""
        registry.grants = None
        for state in states:
            state.share_of, state.granted = peers, False
            state.elsewhere_requests = state.elsewhere_tokens = 0

    async def _exchange(self, states: list[DeploymentState], *, topping_up: bool) -> bool:
        """Give back what is left of this instance's grants (adding what it used beyond them), take
        fresh ones (when `topping_up`: twice what the last held) and read everyone's use; False
        when Redis cannot be reached."""
        sync = self._sync
        if sync is None:
            return False
        async with self._exchanging:
            now = self._now()
            if topping_up:
                states = [s for s in states if s.out_of_grant()]
                if not states:  # granted meanwhile
                    return True
            keys: list[str] = []
            words: list[int] = []
            reported: list[int] = []
            for state in states:
                for measure, grant in state.grants():
                    keys.append(f"{PREFIX}deployment:{state.key[0]}/{state.key[1]}:{measure}")
                    used = grant.sent
                    reported.append(used)
                    # at least a second's worth at the limit's pace
                    want = max(2 * grant.amount, grant.limit // 60, 1) if topping_up else 0
                    words += (max(used - grant.amount, 0), max(grant.amount - used, 0), grant.slice)
                    words += (grant.limit, want)
                    # its unused part is given back: not to be sent on while Redis answers (it may
                    # go to another instance); a request meanwhile waits for this exchange's grant
                    grant.amount = min(grant.amount, used)
            head = f"{int(MINUTE * 1000) // SLICES} {SLICES} "
            try:
                reply = await sync(keys=keys, args=[head + " ".join(map(str, words))])
            except RedisError:
                log.warning("could not share deployments' capacity through Redis")
                return False
            answers = iter(int(x) for x in reply)
            sent = iter(reported)
            for state in states:
                state.granted, state.share_of = True, 1
                mine_requests, mine_tokens = state.used(now)
                for measure, grant in state.grants():
                    total, amount, slice_index = next(answers), next(answers), next(answers)
                    grant.renew(amount, slice_index, next(sent))
                    if measure == "rpm":
                        state.elsewhere_requests = max(total - mine_requests, 0)
                    else:
                        state.elsewhere_tokens = max(total - mine_tokens, 0)
                if topping_up and state.out_of_grant():  # a second from Redis's answer
                    state.exhausted_until = self._now() + SYNC_SECONDS
            return True

    def _now(self) -> float:
        registry = self.registry()
        return registry.now()

    async def aclose(self) -> None:
        await self.periodic.aclose()
