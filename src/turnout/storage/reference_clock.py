"""The instant the instances of a deployment agree on: this machine's clock corrected by the offset
to a shared one — Redis's `TIME` while Redis answers, else the database's `now()` — so that budget
windows turn over at the same moment on every instance whatever their own clocks say."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Literal

Source = Literal["redis", "database"]
REDIS_PREFERRED = 30.0  # s: a Redis reading this recent outranks the database's


class ReferenceClock:
    def __init__(self, local: Callable[[], float] = time.time) -> None:
        self.local = local  # this machine's clock (unix seconds); only ever read through `now`
        self.offset = 0.0  # shared clock minus local clock, in seconds
        self._redis_seen = -REDIS_PREFERRED  # monotonic time of the last Redis reading

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.local() + self.offset, dt.UTC)

    def seconds(self) -> float:
        return self.local() + self.offset

    def observe(self, shared_seconds: float, source: Source, local_before: float | None = None) -> None:
        """A reading of the shared clock; `local_before`, the local time when it was asked for
        (the reading is taken as half-way through the round trip)."""
        local_after = self.local()
        local = local_after if local_before is None else (local_before + local_after) / 2
        if source == "redis":
            self._redis_seen = time.monotonic()
        elif time.monotonic() - self._redis_seen < REDIS_PREFERRED:
            return  # Redis decides windows while it answers: one authority at a time
        self.offset = shared_seconds - local
