"""Admission control per instance: at most `limit` requests in progress (a limit that follows their
latency, limits/gradient.py), a short queue ordered by priority, and beyond it an immediate refusal.

Each priority class may hold only its share of the limit (`critical` all of it), so the lowest
class is refused first and the headroom above the others' shares stays free for `critical`. When
the queue is full, a request of a higher class takes the place of the newest waiting request of the
lowest class, which is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from turnout.config.settings import OverloadSettings
from turnout.domain.errors import Overloaded
from turnout.limits.gradient import GradientLimit
from turnout.limits.priority import PRIORITIES, RANK


class _Waiter:
    __slots__ = ("future", "rank")

    def __init__(self, future: asyncio.Future[None], rank: int) -> None:
        self.future = future
        self.rank = rank


class ConcurrencyGate:
    def __init__(self, settings: OverloadSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.limiter = GradientLimit(
            settings.initial_limit,
            settings.min_limit,
            settings.max_limit,
            tolerance=settings.tolerance,
            window=settings.window,
            clock=clock,
        )
        self.shares = (1.0, settings.standard_share, settings.batch_share)  # by rank
        self.in_flight = 0
        self.queued = 0
        self._queues: tuple[deque[_Waiter], ...] = tuple(deque() for _ in PRIORITIES)
        self.refused = [0] * len(PRIORITIES)  # refusals by rank, since start

    def rank(self, priority: str | None) -> int:
        return RANK[priority or self.settings.default_priority]

    def _room(self, rank: int) -> bool:
        return self.in_flight < self.limiter.value * self.shares[rank]

    def try_enter(self, rank: int) -> bool:
        """Take a slot now if one is free for `rank` and nobody of its class or higher waits."""
        if not self._room(rank) or any(self._queues[r] for r in range(rank + 1)):
            return False
        self.in_flight += 1
        return True

    async def enter(self, rank: int) -> None:
        """Take a slot, waiting in the queue for at most `queue_timeout`; else `Overloaded`."""
        if self.try_enter(rank):
            return
        capacity = int(self.limiter.value * self.settings.queue_ratio)
        if self.queued >= capacity and not self._evict_below(rank):
            raise self._refusal(rank)
        waiter = _Waiter(asyncio.get_running_loop().create_future(), rank)
        self._queues[rank].append(waiter)
        self.queued += 1
        try:
            async with asyncio.timeout(self.settings.queue_timeout):
                await waiter.future  # set when `leave` hands this waiter a slot, or refused
        except TimeoutError:
            if not self._forget(waiter) and _handed(waiter):
                return  # a slot came as the time ran out
            raise self._refusal(rank) from None
        except asyncio.CancelledError:  # the client left while waiting
            if not self._forget(waiter) and _handed(waiter):
                self.leave(None)  # it was handed a slot just now: give it back
            raise

    def leave(self, latency: float | None) -> None:
        """A request ends: its slot goes to the highest waiting class that has room. `latency` is
        what it measured (None: nothing that tells about capacity, such as a refusal)."""
        in_flight = self.in_flight
        self.in_flight = in_flight - 1
        if latency is not None:
            self.limiter.sample(latency, in_flight)
        if self.queued:
            self._hand_over()

    def describe(self) -> dict[str, object]:
        return {
            "limit": self.limiter.limit,
            "in_flight": self.in_flight,
            "queued": self.queued,
            "latency_ms": round(self.limiter.long_latency * 1000, 1),
            "refused": dict(zip(PRIORITIES, self.refused, strict=True)),
        }

    def _hand_over(self) -> None:
        for rank, queue in enumerate(self._queues):
            while queue and self._room(rank):
                waiter = queue.popleft()
                self.queued -= 1
                if waiter.future.done():
                    continue
                self.in_flight += 1
                waiter.future.set_result(None)
            if queue:
                return  # the highest class waiting has no room: no lower class may overtake it

    def _evict_below(self, rank: int) -> bool:
        """Refuse the newest waiter of the lowest class below `rank`, if any waits."""
        for lower in range(len(self._queues) - 1, rank, -1):
            queue = self._queues[lower]
            if queue:
                waiter = queue.pop()
                self.queued -= 1
                waiter.future.set_exception(self._refusal(lower))
                return True
        return False

    def _forget(self, waiter: _Waiter) -> bool:
        """Take `waiter` out of its queue; False if it was not there (handed a slot, or evicted)."""
        try:
            self._queues[waiter.rank].remove(waiter)
        except ValueError:
            return False
        self.queued -= 1
        return True

    def _refusal(self, rank: int) -> Overloaded:
        self.refused[rank] += 1
        return Overloaded(
            "turnout is overloaded and cannot take this request now; retry after the time in the "
            "Retry-After header.",
            retry_after=self.settings.retry_after,
        )


def _handed(waiter: _Waiter) -> bool:
    """Was `waiter` given a slot (not refused, not cancelled)?"""
    future = waiter.future
    return future.done() and not future.cancelled() and future.exception() is None
