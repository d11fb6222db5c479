"""Commit to a stream only once its first chunk has arrived: failures before that are ordinary
errors (an HTTP status for the client, a failover for the router), not a broken stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from turnout.domain.usage import Usage
from turnout.providers.base import ChatStream


class PeekedStream:
    """A stream whose first chunk is already in hand."""

    def __init__(self, stream: ChatStream, iterator: AsyncIterator[bytes], first: bytes | None) -> None:
        self._stream = stream
        self._iterator = iterator
        self.first = first

    @property
    def usage(self) -> Usage | None:
        return self._stream.usage

    async def rest(self) -> AsyncIterator[bytes]:
        async for chunk in self._iterator:
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


async def peek_first(stream: ChatStream) -> PeekedStream:
    iterator = aiter(stream)
    try:
        first = await anext(iterator, None)
    except BaseException:
        await stream.aclose()
        raise
    return PeekedStream(stream, iterator, first)
