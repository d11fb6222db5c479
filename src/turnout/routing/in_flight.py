"""The streams being relayed right now, so that a shutdown whose grace ran out ends them itself —
each told why in its last event, its attempt recorded as the shutdown's doing (503
`gateway_shutdown`) and billed for what it produced — rather than have them cut off mid-answer and
taken for clients that left (499). Once it has (`cut`), whatever else is then cancelled is recorded
the same way."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from turnout.domain.errors import CLIENT_CLOSED, SHUT_DOWN, GatewayShutdown, TurnoutError


class Cuttable(Protocol):
    async def cut(self, error: TurnoutError) -> None:
        """Stop the upstream and end the stream with `error` as its last event."""
        ...


class InFlight:
    __slots__ = ("_streams", "cut")

    def __init__(self) -> None:
        self._streams: dict[Cuttable, asyncio.Task[Any] | None] = {}  # each with the task relaying it
        self.cut = False  # the shutdown's grace ran out: what is cancelled now is its doing

    def add(self, stream: Cuttable) -> None:
        """A stream starts being relayed (by the task running now)."""
        self._streams[stream] = asyncio.current_task()

    def discard(self, stream: Cuttable) -> None:
        self._streams.pop(stream, None)

    def __len__(self) -> int:
        return len(self._streams)

    async def cut_short(self) -> set[asyncio.Task[Any]]:
        """End every stream now (the shutdown's grace ran out); returns the tasks relaying them,
        which finish on their own once their last event is written."""
        self.cut = True
        streams = list(self._streams.items())
        for stream, _ in streams:
            await stream.cut(GatewayShutdown())
        return {task for _, task in streams if task is not None}

    def cancelled(self) -> tuple[int, str]:
        """The status and reason of a request or an attempt cancelled before it was answered: the
        client left (499), unless the shutdown is cutting what is left short (503)."""
        if self.cut:
            return GatewayShutdown.status, SHUT_DOWN
        return 499, CLIENT_CLOSED
