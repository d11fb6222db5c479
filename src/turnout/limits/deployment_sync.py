"""Deployments' capacity (a target's `rpm` / `tpm`) shared by the instances, so that together they
move traffic to an alias's other deployments before a provider's own limit is hit.

The router decides in memory (routing/deployments.py: no round trip per attempt). Every
`SYNC_SECONDS` this instance adds what it sent each capacity-limited deployment since the last
sync to the deployment's shared sliding window in Redis (the layout of limits/shared.py, one
script run for all of them) and reads back every instance's use: the others' part is what the
router adds to its own count. Until the next sync each instance may add only its part of what was
left (what remained ÷ the live instances: what it adds counts once for each of them), so a burst
through every instance overshoots only by what the others sent since their own last sync (a burst
through two instances at 20 rpm: 22 to 27 served, 40 before); what one idle instance leaves unused
is taken at the next sync. Without Redis (or while it is unreachable) each instance takes its
share: the limit ÷ the live instances. A deployment first used between two syncs takes its share
until the next."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from turnout.domain.rate_limits import MINUTE
from turnout.limits.shared import NOW, PREFIX, SharedLimits
from turnout.periodic import Periodic
from turnout.routing.deployments import DeploymentRegistry, DeploymentState

log = logging.getLogger("turnout.limits")

SYNC_SECONDS = 1.0
SLICES = 60

# KEYS: the deployments' windows. ARGV[1]: slice ms, slices; then per key the amount to add now.
# Returns each window's sum after the addition (slices older than the window dropped first).
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
  local add = tonumber(a[2 + i])
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
  if add > 0 then redis.call('HINCRBY', k, cur, add) end
  total = total + add
  redis.call('HSET', k, 'sum', total, 'lo', lo)
  redis.call('PEXPIRE', k, sl * ns + sl)
  out[i] = total
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
        self._sync: Any = None if shared is None else shared.client.register_script(SYNC)
        self._sent: dict[tuple[int, str], int] = {}  # by (state, measure): what was sent on
        self.periodic = Periodic(self.tick, SYNC_SECONDS, "sharing deployments' capacity")

    def start(self) -> None:
        self.periodic.start()

    async def tick(self) -> None:
        registry = self.registry()
        peers = max(self.peers(), 1)
        registry.share_of = peers  # what a deployment first used before the next sync takes
        limited = [s for s in registry.all() if s.rpm is not None or s.tpm is not None]
        if not limited:
            return
        shared = self.shared
        if shared is None or not shared.usable or not await self._exchange(limited, peers):
            for state in limited:
                state.share_of, state.growing = peers, 1
                state.elsewhere_requests = state.elsewhere_tokens = 0

    async def _exchange(self, states: list[DeploymentState], peers: int) -> bool:
        """Send this instance's use and read everyone's; False when Redis cannot be reached."""
        keys: list[str] = []
        adds: list[int] = []
        sent: list[tuple[tuple[int, str], int]] = []
        for state in states:
            for measure, total in (("rpm", state.sent_requests), ("tpm", state.sent_tokens)):
                if (state.rpm if measure == "rpm" else state.tpm) is None:
                    continue
                mark = (id(state), measure)
                keys.append(f"{PREFIX}deployment:{state.key[0]}/{state.key[1]}:{measure}")
                adds.append(max(total - self._sent.get(mark, 0), 0))
                sent.append((mark, total))
        slice_ms = int(MINUTE * 1000) // SLICES
        try:
            sums = await self._sync(keys=keys, args=[f"{slice_ms} {SLICES} " + " ".join(map(str, adds))])
        except RedisError:
            log.warning("could not share deployments' capacity through Redis")
            return False
        self._sent.update(sent)
        index = 0
        now = self._now()
        for state in states:
            state.share_of, state.growing = 1, peers
            mine_requests, mine_tokens = state.used(now)
            state.synced_requests, state.synced_tokens = mine_requests, mine_tokens
            if state.rpm is not None:
                state.elsewhere_requests = max(int(sums[index]) - mine_requests, 0)
                index += 1
            if state.tpm is not None:
                state.elsewhere_tokens = max(int(sums[index]) - mine_tokens, 0)
                index += 1
        return True

    def _now(self) -> float:
        registry = self.registry()
        return registry.now()

    async def aclose(self) -> None:
        await self.periodic.aclose()
