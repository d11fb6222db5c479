"""Slow down key guessing: after `limit` failed authentications from one client address within
`window` seconds, that address is refused (429) without its key being looked at until the window
ends. In memory, per instance; the addresses are kept in an LRU of bounded size."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from turnout.domain.errors import TooManyFailedAuthentications

MAX_ADDRESSES = 10_000  # addresses remembered at once (each ~200 bytes): the least recent go first


class _Window:
    __slots__ = ("count", "last", "start")

    def __init__(self, start: float) -> None:
        self.start = start  # the window's first failure: it ends `window` seconds later
        self.count = 0
        self.last = start  # the address's latest failure or refused attempt (for the LRU)


class AuthFailures:
    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = MAX_ADDRESSES,
    ) -> None:
        self.limit = limit
        self.window = window
        self.capacity = capacity
        self._clock = clock
        self._windows: OrderedDict[str, _Window] = OrderedDict()  # least recently active first

    def __bool__(self) -> bool:
        """Is any address being counted? (When none is, a request needs no check at all.)"""
        return bool(self._windows)

    def __len__(self) -> int:
        return len(self._windows)

    def check(self, address: str) -> None:
        """Raise `TooManyFailedAuthentications` if `address` is refused now. The hot path: one dict
        lookup for an address without failures."""
        w = self._windows.get(address)
        if w is None or w.count < self.limit:
            return
        now = self._clock()
        if now >= w.start + self.window:
            del self._windows[address]  # its window is over: a clean slate
            return
        w.last = now
        self._windows.move_to_end(address)  # an address still trying stays remembered
        wait = max(1, math.ceil(w.start + self.window - now))
        raise TooManyFailedAuthentications(
            f"Too many requests from your address failed to authenticate; try again in {wait} s.",
            retry_after=wait,
        )

    def failed(self, address: str) -> None:
        """A request from `address` was refused for its key."""
        now = self._clock()
        self._forget_idle(now)
        w = self._windows.get(address)
        if w is None or now >= w.start + self.window:
            w = self._windows[address] = _Window(now)
        w.count += 1
        w.last = now
        self._windows.move_to_end(address)
        while len(self._windows) > self.capacity:
            self._windows.popitem(last=False)

    def _forget_idle(self, now: float) -> None:
        """Drop addresses whose window is certainly over (idle for a whole window: it began before)."""
        windows = self._windows
        while windows:
            address, w = next(iter(windows.items()))
            if w.last + self.window > now:
                return
            del windows[address]
