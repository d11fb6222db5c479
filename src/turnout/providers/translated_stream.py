"""The frame every translated stream shares: read the upstream's server-sent events (or the wire
format's own framing), let the wire format turn each into typed OpenAI `chat.completion.chunk`s
(folded into the attempt's accumulator as they are made, encoded only at the edge), yield them one
upstream read at a time, and end with the usage chunk when the client asked for it. A malformed
event is a protocol error; a stream that ends before the wire format's finish is truncated, and
reported as such."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import Protocol, TypeVar

import msgspec

from turnout.domain.accumulator import StreamAccumulator
from turnout.domain.completions import ChatCompletionChunk, Chunk, ChunkChoice, ChunkDelta
from turnout.domain.errors import TurnoutError, UpstreamConnectionError, UpstreamProtocolError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.domain.usage import Usage
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.sse import SSEDecoder

T = TypeVar("T")


class EventDecoder(Protocol):
    """Raw upstream bytes in, the events completed so far out: (data, name) pairs."""

    def feed(self, chunk: bytes) -> Iterable[tuple[bytes, bytes | None]]: ...


class TranslatedStream:
    """Subclasses implement `_event`. `stops_at_finish`: stop reading once the answer is finished
    (the wire format sends nothing after it); otherwise later events (usage) are still read."""

    stops_at_finish = True
    native = False

    def __init__(self, response: UpstreamResponse, *, provider: str, model: str, include_usage: bool) -> None:
        self._response = response
        self._provider = provider
        self._include_usage = include_usage
        self.answer = StreamAccumulator()
        self._id = "chatcmpl-turnout"
        self._created = int(time.time())
        self._model = model

    @property
    def usage(self) -> Usage | None:
        return self.answer.usage

    @usage.setter
    def usage(self, usage: Usage | None) -> None:
        self.answer.usage = usage

    def __aiter__(self) -> AsyncIterator[list[Chunk]]:
        return self._relay()

    async def _relay(self) -> AsyncIterator[list[Chunk]]:
        decoder = self._decoder()
        finished = False
        try:
            while (raw := await self._response.next_chunk()) is not None:
                batch: list[Chunk] = []
                failed: TurnoutError | None = None
                try:
                    for data, name in decoder.feed(raw):
                        if data != b"[DONE]" and not (finished and self.stops_at_finish):
                            finished = self._named_event(data, name, batch) or finished
                except TurnoutError as error:
                    failed = error  # the chunks before it (in the same read) are relayed first
                if batch:
                    yield batch
                if failed is not None:
                    raise failed
                if finished and self.stops_at_finish:
                    break
        finally:
            self._response.release()
        if not finished:
            raise UpstreamConnectionError(
                f"The provider '{self._provider}' ended the stream before it was complete."
            )
        if self._include_usage and self.usage is not None:
            # not folded: the accumulator has the usage as reported, finer than OpenAI's shape
            usage = self.usage.openai_usage()
            yield [
                Chunk(ChatCompletionChunk(self._id, created=self._created, model=self._model, usage=usage))
            ]

    def _decoder(self) -> EventDecoder:
        """How the upstream's bytes become events: server-sent events, unless the wire format
        frames its own (Bedrock's binary event stream)."""
        return SSEDecoder()

    def _named_event(self, data: bytes, name: bytes | None, batch: list[Chunk]) -> bool:
        """`_event`, for wire formats that tell their events apart by name rather than by data."""
        return self._event(data, batch)

    def _event(self, data: bytes, batch: list[Chunk]) -> bool:
        """Append the chunks for one event's `data`; True once the answer is finished."""
        raise NotImplementedError

    def _decode(self, decoder: msgspec.json.Decoder[T], data: bytes) -> T:
        try:
            return decoder.decode(data)
        except DECODE_ERRORS:
            raise UpstreamProtocolError(
                f"The provider '{self._provider}' sent a malformed stream event."
            ) from None

    def _chunk(self, delta: ChunkDelta, finish: str | None = None) -> Chunk:
        """The chunk for one delta of the only choice, folded into the attempt's answer."""
        view = ChatCompletionChunk(
            self._id,
            created=self._created,
            model=self._model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
        )
        self.answer.fold(view)
        return Chunk(view)

    async def aclose(self) -> None:
        self._response.release()
