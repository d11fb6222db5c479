"""Relay an OpenAI-format SSE stream chunk by chunk, reading usage on the way.

Each chunk's JSON is checked (a typed decode that skips what it does not need, ~1 µs) and then
forwarded as the upstream wrote it, so a malformed upstream cannot pass garbage to the client.
turnout always asks the upstream for usage; when the client did not, the usage-only chunk is
accounted for and then dropped, so the client sees exactly the stream it asked for. A stream that
ends without `[DONE]` is truncated, and reported as an error, never passed off as complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from turnout.domain.errors import TurnoutError, UpstreamConnectionError, UpstreamProtocolError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.domain.usage import Usage
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.openai_compatible.errors import stream_error
from turnout.providers.openai_compatible.wire import chunk_decoder
from turnout.providers.sse import SSEDecoder


class OpenAIStream:
    native = False  # same-format requests are forwarded as they are; their answers too

    def __init__(self, response: UpstreamResponse, *, provider: str, drop_usage_chunk: bool) -> None:
        self._response = response
        self._provider = provider
        self._drop_usage_chunk = drop_usage_chunk
        self.usage: Usage | None = None
        self.chunks = 0

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self._relay()

    async def _relay(self) -> AsyncIterator[list[bytes]]:
        decoder = SSEDecoder()
        decode = chunk_decoder.decode
        next_chunk = self._response.next_chunk
        done = False
        try:
            while (raw := await next_chunk()) is not None:
                batch: list[bytes] = []
                for data, name in decoder.feed(raw):
                    if done:
                        continue  # after [DONE]: read on so the connection can be reused
                    if data == b"[DONE]":
                        done = True
                        continue
                    try:
                        peek = decode(data)
                    except DECODE_ERRORS:
                        if name == b"error":
                            raise self._error(data) from None
                        raise UpstreamProtocolError(
                            f"The provider '{self._provider}' sent a malformed stream chunk."
                        ) from None
                    if peek.error is not None or name == b"error":
                        raise self._error(data)
                    if peek.usage is not None:
                        self.usage = peek.usage.canonical(peek.service_tier)
                        if self._drop_usage_chunk and not peek.choices:
                            continue
                    batch.append(data)
                if batch:
                    self.chunks += len(batch)
                    yield batch
        finally:
            self._response.release()
        if not done:
            trailing = decoder.flush()
            if trailing and trailing[-1][0] == b"[DONE]":
                return
            raise UpstreamConnectionError(
                f"The provider '{self._provider}' ended the stream before it was complete."
            )

    def _error(self, data: bytes) -> TurnoutError:
        """An error event from the upstream, mid-stream: classified as the same error over HTTP."""
        return stream_error(data, self._provider)

    async def aclose(self) -> None:
        self._response.release()
