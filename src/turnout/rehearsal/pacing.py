"""The replay's rate bound: requests start at most `rate` a second, evenly spaced (a start that
came late does not let the next ones bunch up to catch up). The clock and the sleep are given, so
the spacing is tested on a fake clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Pacer:
    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = 1.0 / rate
        self.clock = clock
        self.sleep = sleep
        self.next = clock()

    async def wait(self) -> None:
        """Return when the next request may start."""
        wait = self.next - self.clock()
        if wait > 0:
            await self.sleep(wait)
        self.next = max(self.next, self.clock()) + self.interval
