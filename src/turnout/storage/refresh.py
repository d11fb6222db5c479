"""Keeping an in-memory copy of stored state current: `refresh` every `interval` seconds, off the
hot path; a store that cannot be reached is logged and the copy kept until the next try."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("turnout.storage")


class PeriodicRefresh:
    def __init__(self, refresh: Callable[[], Awaitable[None]], interval: float, what: str) -> None:
        self.refresh = refresh
        self.interval = interval
        self.what = what
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever())

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception:  # unreachable store: keep what this instance has
                log.warning(
                    "could not read %s from the database; keeping the ones loaded", self.what, exc_info=True
                )

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
