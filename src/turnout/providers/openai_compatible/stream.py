"""Relay an OpenAI-format SSE stream chunk by chunk, folding it into the attempt's answer on the way.

Each chunk's JSON is decoded once, typed (domain.completions: the fields turnout reads, the rest
skipped), folded into the attempt's accumulator, and forwarded as the upstream wrote it next to
its typed view, so a malformed upstream cannot pass garbage to the client and nothing reads the
chunk again. A chunk that is JSON but not of the shape turnout reads (a field of another type) is
passed on as it came, unread (its answer can then not be continued elsewhere).
turnout always asks the upstream for usage; when the client did not, the usage-only chunk is
accounted for and then dropped, so the client sees exactly the stream it asked for. A stream that
ends without `[DONE]` is truncated, and reported as an error, never passed off as complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from msgspec import UNSET

from turnout.domain.accumulator import StreamAccumulator
from turnout.domain.completions import Chunk, chunk_decoder, present
from turnout.domain.errors import TurnoutError, UpstreamConnectionError, UpstreamProtocolError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.domain.usage import Usage
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.openai_compatible.errors import stream_error
from turnout.providers.openai_compatible.wire import peek_decoder
from turnout.providers.sse import SSEDecoder

UNREAD = "a chunk turnout could not read"  # why such a stream cannot be continued elsewhere


class OpenAIStream:
    native = False  # same-format requests are forwarded as they are; their answers too

    def __init__(self, response: UpstreamResponse, *, provider: str, drop_usage_chunk: bool) -> None:
        self._response = response
        self._provider = provider
        self._drop_usage_chunk = drop_usage_chunk
        self.answer = StreamAccumulator()

    @property
    def usage(self) -> Usage | None:
        return self.answer.usage

    def __aiter__(self) -> AsyncIterator[list[Chunk]]:
        return self._relay()

    async def _relay(self) -> AsyncIterator[list[Chunk]]:
        decoder = SSEDecoder()
        decode = chunk_decoder.decode
        fold = self.answer.fold
        drop_usage = self._drop_usage_chunk
        next_chunk = self._response.next_chunk
        done = False
        try:
            while (raw := await next_chunk()) is not None:
                batch: list[Chunk] = []
                failed: TurnoutError | None = None
                try:
                    for data, name in decoder.feed(raw):
                        if done:
                            continue  # after [DONE]: read on so the connection can be reused
                        if data == b"[DONE]":
                            done = True
                            continue
                        try:
                            view = decode(data)
                        except DECODE_ERRORS:
                            chunk = self._unread(data, name)
                            if chunk is not None:
                                batch.append(chunk)
                            continue
                        if (view.error is not UNSET and present(view.error)) or name == b"error":
                            raise self._error(data)
                        fold(view)
                        if view.usage and drop_usage and not view.choices:
                            continue  # the usage the client did not ask for: read, not sent
                        batch.append(Chunk(view, data))
                except TurnoutError as error:
                    failed = error  # the chunks before it (in the same read) are relayed first
                if batch:
                    yield batch
                if failed is not None:
                    raise failed
        finally:
            self._response.release()
        if not done:
            trailing = decoder.flush()
            if trailing and trailing[-1][0] == b"[DONE]":
                return
            raise UpstreamConnectionError(
                f"The provider '{self._provider}' ended the stream before it was complete."
            )

    def _unread(self, data: bytes, name: bytes | None) -> Chunk | None:
        """A chunk the typed view cannot read: an error event, or garbage (refused), or JSON of
        another shape than turnout reads (usage read if it can be, passed on unread)."""
        try:
            peek = peek_decoder.decode(data)
        except DECODE_ERRORS:
            if name == b"error":
                raise self._error(data) from None
            raise UpstreamProtocolError(
                f"The provider '{self._provider}' sent a malformed stream chunk."
            ) from None
        if peek.error is not None or name == b"error":
            raise self._error(data)
        answer = self.answer
        answer.obstacle = answer.obstacle or UNREAD
        if peek.usage is not None:
            answer.usage = peek.usage.canonical(peek.service_tier)
            if self._drop_usage_chunk and not peek.choices:
                return None
        return Chunk(None, data)

    def _error(self, data: bytes) -> TurnoutError:
        """An error event from the upstream, mid-stream: classified as the same error over HTTP."""
        return stream_error(data, self._provider)

    async def aclose(self) -> None:
        self._response.release()
