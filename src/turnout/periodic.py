"""Background work on a timer: `work` every `interval` seconds, off the hot path, until closed.
A failing round is logged and the next one runs as planned (what it keeps current stays as it
was: an unreachable store keeps the copy an instance has).

Closing waits for a round in progress to end (up to FINISH_WITHIN) instead of cancelling it:
a database call cancelled half-way can leave its connection holding SQLite's write lock until
the garbage collector finds it, and every later write (the ledger's last move at shutdown
among them) then fails with "database is locked"."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("turnout")

FINISH_WITHIN = 5.0  # seconds a round in progress is given to end when closed; then it is cancelled


class Periodic:
    def __init__(self, work: Callable[[], Awaitable[object]], interval: float, what: str) -> None:
        self.work = work
        self.interval = interval
        self.what = what
        self._task: asyncio.Task[None] | None = None
        self._working = False
        self._closing = False

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._forever(), name=f"turnout: {self.what}")

    async def _forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.interval)
            self._working = True
            try:
                await self.work()
            except Exception:  # never the end of it: the next round may succeed
                log.warning("%s failed; trying again in %gs", self.what, self.interval, exc_info=True)
            finally:
                self._working = False

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        if self._working:  # let it end: it leaves after this round
            await finish(task, self.what)
        else:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def finish(task: asyncio.Task[Any], what: str) -> None:
    """Let `task` end, for up to FINISH_WITHIN, then cancel it (cancelled itself while waiting: at
    once) and wait for it to unwind."""
    try:
        await asyncio.wait({task}, timeout=FINISH_WITHIN)
        if not task.done():
            log.warning("%s did not end within %gs of closing; cancelled", what, FINISH_WITHIN)
    finally:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
