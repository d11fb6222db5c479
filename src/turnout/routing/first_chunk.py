"""Commit to a stream only once its first chunk has arrived: failures before that are ordinary
errors (an HTTP status for the client, a failover for the router), not a broken stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from turnout.domain.accumulator import StreamAccumulator
from turnout.domain.completions import Chunk
from turnout.domain.usage import Usage
from turnout.providers.base import ChatStream


class PeekedStream:
    """A stream whose first batch of chunks is already in hand (`first`; empty if the upstream
    finished without any). `rest` yields the remaining batches."""

    def __init__(self, stream: ChatStream, rest: AsyncIterator[list[Chunk]], first: list[Chunk]) -> None:
        self._stream = stream
        self.rest = rest
        self.first = first

    @property
    def answer(self) -> StreamAccumulator:
        """The attempt's answer, as folded so far."""
        return self._stream.answer

    @property
    def usage(self) -> Usage | None:
        return self._stream.answer.usage

    @property
    def native(self) -> bool:
        return self._stream.native

    async def aclose(self) -> None:
        await self._stream.aclose()


async def peek_first(stream: ChatStream) -> PeekedStream:
    iterator = aiter(stream)
    try:
        first: list[Chunk] = await anext(iterator, [])
    except BaseException:
        await stream.aclose()
        raise
    return PeekedStream(stream, iterator, first)
