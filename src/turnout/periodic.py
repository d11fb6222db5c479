"""Background work on a timer: `work` every `interval` seconds, off the hot path, until closed.
A failing round is logged and the next one runs as planned (what it keeps current stays as it
was: an unreachable store keeps the copy an instance has)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("turnout")


class Periodic:
    def __init__(self, work: Callable[[], Awaitable[object]], interval: float, what: str) -> None:
        self.work = work
        self.interval = interval
        self.what = what
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._forever(), name=f"turnout: {self.what}")

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.work()
            except Exception:  # never the end of it: the next round may succeed
                log.warning("%s failed; trying again in %gs", self.what, self.interval, exc_info=True)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
