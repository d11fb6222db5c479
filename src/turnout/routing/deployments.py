"""What the router knows about each deployment (a provider + upstream model) from live traffic:
its circuit breaker, a cool-down the provider asked for (Retry-After), requests in flight, recent
latency, and use of its known capacity. All in memory, O(1) to update, no I/O; bounded for the
deployments clients can name through wildcard aliases."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from turnout.config.settings import BreakerSettings
from turnout.routing.circuit import CircuitBreaker, State
from turnout.routing.window import WindowCounter

RATE_LIMIT_COOLDOWN = 1.0  # seconds a provider's 429 without a Retry-After keeps its deployment aside
LATENCY_SMOOTHING = 0.2  # weight of the newest observation in the moving average
MINUTE = 60.0
MAX_REACHED = 1000  # states of deployments reached through wildcard aliases, kept at once
IDLE_TTL = 600.0  # seconds unused after which such a state is dropped (unless it matters)
EVICTION_SCAN = 32  # reached states looked at, least recently used first, to find one to drop


class Grant:
    """Capacity of one measure (rpm or tpm) of a deployment that Redis set aside for this instance
    (limits/deployment_sync.py), counted in the deployment's shared window in slice `slice`, and
    what this instance sent on it since."""

    __slots__ = ("amount", "limit", "sent", "slice")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.amount = 0
        self.sent = 0
        self.slice = 0

    @property
    def spent(self) -> bool:
        return self.sent >= self.amount

    def renew(self, amount: int, slice_index: int, reported: int) -> None:
        """A fresh grant, the last one settled with `reported` sent (what was sent since that
        report counts against the fresh one)."""
        self.amount, self.slice = amount, slice_index
        self.sent -= reported


@dataclass(slots=True)
class DeploymentState:
    key: tuple[str, str]  # (provider, upstream model): one state however many aliases share it
    label: str
    breaker: CircuitBreaker
    rpm: int | None = None
    tpm: int | None = None
    in_flight: int = 0
    latency: float | None = None  # seconds to the first token (streams) or the answer; moving average
    cooldown_until: float = 0.0  # the provider asked us (Retry-After) to stay away until then
    successes: int = 0
    failures: int = 0
    last_failure: str | None = None
    last_used: float = 0.0  # (the loop clock) when a request last chose or finished on it
    _requests: WindowCounter = field(default_factory=lambda: WindowCounter(MINUTE, 12))
    _tokens: WindowCounter = field(default_factory=lambda: WindowCounter(MINUTE, 12))
    # the capacity is shared by the instances (limits/deployment_sync.py). With Redis, each
    # instance sends only what Redis granted it (`request_grant`, `token_grant`) and asks for more
    # when that runs out; what the others used in the last minute is shown in `elsewhere_*`.
    # Without Redis, `share_of` instances share it equally.
    elsewhere_requests: int = 0
    elsewhere_tokens: int = 0
    share_of: int = 1
    granted: bool = False  # decided by grants (Redis answers), else by this instance's share
    request_grant: Grant | None = None  # with an rpm
    token_grant: Grant | None = None  # with a tpm
    exhausted_until: float = 0.0  # Redis had nothing more to grant: not asked again before then

    def __post_init__(self) -> None:
        if self.rpm is not None:
            self.request_grant = Grant(self.rpm)
        if self.tpm is not None:
            self.token_grant = Grant(self.tpm)

    def available(self, now: float) -> bool:
        """Could a request be sent here now (breaker, cool-down and capacity allowing)?"""
        return self.breaker.available() and now >= self.cooldown_until and self.has_capacity(now)

    def has_capacity(self, now: float) -> bool:
        """Could it take a request now as far as its capacity goes (with grants: within this
        instance's grant, or Redis may be asked for more)?"""
        if self.granted:
            return not self.out_of_grant() or now >= self.exhausted_until
        return not self._requests_full(now) and not self._tokens_full(now)

    def may_take(self, now: float) -> bool:
        """Capacity-wise, may a request be sent now: within its grant, or (Redis away) its share?"""
        return not self.out_of_grant() if self.granted else self.has_capacity(now)

    def out_of_grant(self) -> bool:
        """Decided by grants, and has this instance sent all its grant of a measure allows? (A
        request must then ask Redis for more: `DeploymentRegistry.claim`.)"""
        return self.granted and self._beyond_grant() != ""

    def grants(self) -> list[tuple[Literal["rpm", "tpm"], Grant]]:
        out: list[tuple[Literal["rpm", "tpm"], Grant]] = []
        if self.request_grant is not None:
            out.append(("rpm", self.request_grant))
        if self.token_grant is not None:
            out.append(("tpm", self.token_grant))
        return out

    def _beyond_grant(self) -> Literal["rpm", "tpm", ""]:
        if self.request_grant is not None and self.request_grant.spent:
            return "rpm"
        if self.token_grant is not None and self.token_grant.spent:
            return "tpm"
        return ""

    def _requests_full(self, now: float) -> bool:
        return self.rpm is not None and self._requests.total(now) >= max(self.rpm // self.share_of, 1)

    def _tokens_full(self, now: float) -> bool:
        return self.tpm is not None and self._tokens.total(now) >= max(self.tpm // self.share_of, 1)

    def limiting(self, now: float) -> tuple[Literal["rpm", "tpm"], int]:
        """The capacity limit that holds it back (rpm first)."""
        rpm_held = self._beyond_grant() != "tpm" if self.granted else self._requests_full(now)
        if rpm_held and self.rpm is not None:
            return "rpm", self.rpm
        return "tpm", self.tpm or 0

    def used(self, now: float) -> tuple[int, int]:
        """(requests, tokens) this instance sent here in the last minute."""
        return self._requests.total(now), self._tokens.total(now)

    def available_at(self, now: float) -> float:
        """The soonest time this deployment may take a request again (`now` if it can)."""
        when = max(self.cooldown_until, self.breaker.retry_at)
        if not self.has_capacity(now):
            # Redis granted nothing more until then; else the capacity window moves on in slices
            when = max(when, self.exhausted_until if self.granted else now + MINUTE / 12)
        return max(now, when)

    def started(self, now: float) -> None:
        self.in_flight += 1
        if self.request_grant is not None:
            self._requests.add(now)
            self.request_grant.sent += 1

    def finished(self, now: float, tokens: int = 0) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self.last_used = now
        if tokens and self.token_grant is not None:
            self._tokens.add(now, tokens)
            self.token_grant.sent += tokens

    def succeeded(self, latency: float | None = None) -> None:
        """An answer came back whole: the breaker is told (and the latency noted, when given)."""
        self.successes += 1
        self.breaker.record_success()
        if latency is not None:
            self.answered(latency)

    def answered(self, latency: float) -> None:
        """The first of an answer came after `latency` seconds (the breaker waits for its end)."""
        self.latency = (
            latency if self.latency is None else self.latency + LATENCY_SMOOTHING * (latency - self.latency)
        )

    def failed(self, now: float, cause: str, retry_after: float | None) -> None:
        self.failures += 1
        self.last_failure = cause
        self.breaker.record_failure()
        if retry_after:
            self.cooldown_until = max(self.cooldown_until, now + retry_after)

    def rate_limited(self, now: float, cause: str, retry_after: float | None) -> None:
        """The provider said it is busy (429): stay away for its Retry-After (or a short default).
        Busy is not broken: the breaker is not told (a half-open probe slot is given back)."""
        self.last_failure = cause
        self.breaker.release_probe()
        wait = RATE_LIMIT_COOLDOWN if retry_after is None else retry_after
        self.cooldown_until = max(self.cooldown_until, now + wait)

    def lease(self, clock: Callable[[], float]) -> Lease:
        """A request in flight here from now until the lease is released."""
        return Lease(self, clock)

    def describe(self, now: float) -> dict[str, object]:
        """For `/health/ready` detail and `turnout status`."""
        state = self.breaker.state
        shown = "cooling_down" if state is State.CLOSED and now < self.cooldown_until else state.value
        detail: dict[str, object] = {
            "deployment": self.label,
            "provider": self.key[0],
            "model": self.key[1],
            "state": shown,
            "in_flight": self.in_flight,
            "successes": self.successes,
            "failures": self.failures,
            "opened": self.breaker.opened_count,
        }
        if self.latency is not None:
            detail["latency_ms"] = round(self.latency * 1000, 1)
        if shown != "closed":
            detail["retry_in_s"] = round(max(0.0, self.available_at(now) - now), 1)
        if self.last_failure is not None:
            detail["last_failure"] = self.last_failure
        if self.breaker.changes:  # its breaker's latest transitions, oldest first
            detail["changes"] = [{"at": round(at, 3), "state": st} for at, st in self.breaker.changes]
        return detail


class Lease:
    """One request in flight on a deployment: counted when taken, given back exactly once, with
    the tokens it used (toward the deployment's tpm). A context manager for the common case; a
    stream keeps its lease past the walk and releases it when it ends."""

    __slots__ = ("_clock", "released", "state")

    def __init__(self, state: DeploymentState, clock: Callable[[], float]) -> None:
        self.state = state
        self._clock = clock
        self.released = False
        state.started(clock())

    def release(self, tokens: int = 0) -> None:
        if not self.released:
            self.released = True
            self.state.finished(self._clock(), tokens)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class DeploymentRegistry:
    """One state per deployment, created on first use. The deployments the configuration names
    (`configured`) keep theirs for good. Those a wildcard alias reaches are named by clients, so
    their states are bounded: at most `capacity` are kept (the least recently used go first), and
    one unused for `idle_ttl` is dropped — but never one that matters (`_matters`): a request in
    flight on it, an open breaker's cool-down or a provider's Retry-After still running. Dropping a
    state forgets only its statistics; its deployment starts afresh if it is used again."""

    def __init__(
        self,
        breaker: BreakerSettings,
        clock: Callable[[], float],
        *,
        configured: frozenset[tuple[str, str]] = frozenset(),
        capacity: int = MAX_REACHED,
        idle_ttl: float = IDLE_TTL,
    ) -> None:
        self._breaker = breaker
        self._clock = clock
        self._configured = configured
        self.capacity = capacity
        self.idle_ttl = idle_ttl
        # instances sharing capacity, as last known (each takes its share, without Redis); with
        # Redis, `grants` asks it for a state's grant when the one it holds runs out
        self.share_of = 1
        self.grants: Callable[[DeploymentState], Awaitable[None]] | None = None
        self._asking: dict[int, asyncio.Future[None]] = {}  # by id(state): grants being asked for
        self._states: dict[tuple[str, str], DeploymentState] = {}  # configured: kept for good
        self._reached: OrderedDict[tuple[str, str], DeploymentState] = OrderedDict()  # LRU first

    def get(
        self, provider: str, model: str, label: str, rpm: int | None = None, tpm: int | None = None
    ) -> DeploymentState:
        key = (provider, model)
        state = self._states.get(key)
        if state is not None:
            return state
        now = self._clock()
        state = self._reached.get(key)
        if state is not None:
            self._reached.move_to_end(key)
            state.last_used = now
            return state
        state = DeploymentState(key, label, CircuitBreaker(self._breaker, self._clock), rpm, tpm)
        state.last_used = now
        state.share_of = self.share_of
        state.granted = self.grants is not None and (rpm is not None or tpm is not None)
        if key in self._configured:
            self._states[key] = state
            return state
        self._forget_idle(now)
        if len(self._reached) >= self.capacity:
            self._make_room(now)
        self._reached[key] = state
        return state

    def now(self) -> float:
        """The clock the states are kept by."""
        return self._clock()

    async def claim(self, state: DeploymentState) -> bool:
        """May a request be sent to `state` now, capacity-wise? Without grants (no Redis), its
        share decided that already. With grants: within this instance's, or once Redis granted
        more (one round trip, shared by every request that found the grant spent meanwhile); when
        Redis has nothing more to give, the state is held back until its next grant."""
        if not state.out_of_grant():
            return True
        grants = self.grants
        if grants is None:
            return True
        asking = self._asking.get(id(state))
        if asking is None:
            asking = asyncio.get_running_loop().create_future()
            self._asking[id(state)] = asking
            try:
                await grants(state)
            finally:
                del self._asking[id(state)]
                asking.set_result(None)
        else:
            await asyncio.shield(asking)
        return state.may_take(self._clock())

    def all(self) -> list[DeploymentState]:
        self._forget_idle(self._clock())
        return [*self._states.values(), *self._reached.values()]

    def __len__(self) -> int:
        return len(self._states) + len(self._reached)

    def _forget_idle(self, now: float) -> None:
        """Drop reached states unused for `idle_ttl` (from the least recently used on)."""
        reached = self._reached
        for _ in range(len(reached)):
            key, state = next(iter(reached.items()))
            if state.last_used + self.idle_ttl > now:
                return
            if _matters(state, now):
                reached.move_to_end(key)  # looked at again once it no longer matters
            else:
                del reached[key]

    def _make_room(self, now: float) -> None:
        """Drop the least recently used reached state that nothing depends on (looking at a few:
        when all of those matter, the registry holds one more for now)."""
        reached = self._reached
        for _ in range(min(EVICTION_SCAN, len(reached))):
            key, state = next(iter(reached.items()))
            if not _matters(state, now):
                del reached[key]
                return
            reached.move_to_end(key)


def _matters(state: DeploymentState, now: float) -> bool:
    """Would dropping this state lose something a request or the routing relies on?"""
    return (
        state.in_flight > 0
        or now < state.cooldown_until
        or (state.breaker.state is State.OPEN and now < state.breaker.retry_at)
    )
