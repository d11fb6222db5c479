"""What a request is routed with — the catalog and router built from one configuration — and how
many requests begun on it are still in flight, so that a reload can let the old one go (close its
providers) once the last request that began on it has ended."""

from __future__ import annotations

import asyncio

from turnout.routing.catalog import Catalog
from turnout.routing.router import Router


class Generation:
    __slots__ = ("_idle", "catalog", "in_flight", "router")

    def __init__(self, catalog: Catalog, router: Router) -> None:
        self.catalog = catalog
        self.router = router
        self.in_flight = 0
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def drained(self) -> None:
        """Return once no request begun on this generation is in flight (for a retired one: no new
        request begins on it)."""
        while self.in_flight:
            self._idle = asyncio.Event()
            await self._idle.wait()
