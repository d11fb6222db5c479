"""A Gemini `streamGenerateContent?alt=sse` stream, translated response by response into OpenAI
`chat.completion.chunk`s: text → content, thoughts → `reasoning_content`, each functionCall → one
whole tool call, the finish reason → the finish chunk, and the last `usageMetadata` → the usage
chunk (when the client asked for it). Gemini has no end marker: a stream that closes before a
finish reason is truncated, and reported as such."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import orjson

from turnout.domain.errors import UpstreamConnectionError, UpstreamProtocolError
from turnout.domain.usage import Usage
from turnout.providers.gemini.translate import calls_of, finish_reason
from turnout.providers.gemini.wire import GenerateContentResponse, response_decoder
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.sse import SSEDecoder


class GeminiStream:
    def __init__(self, response: UpstreamResponse, *, provider: str, model: str, include_usage: bool) -> None:
        self._response = response
        self._provider = provider
        self._include_usage = include_usage
        self.usage: Usage | None = None
        self._base: dict[str, Any] = {
            "id": "chatcmpl-gemini",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self._started = False
        self._calls = 0

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self._relay()

    async def _relay(self) -> AsyncIterator[list[bytes]]:
        decoder = SSEDecoder()
        finished = False
        try:
            while (raw := await self._response.next_chunk()) is not None:
                batch: list[bytes] = []
                for data, _name in decoder.feed(raw):
                    try:
                        response = response_decoder.decode(data)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        raise UpstreamProtocolError(
                            f"The provider '{self._provider}' sent a malformed stream event."
                        ) from None
                    finished = self._translate(response, batch) or finished
                if batch:
                    yield batch
        finally:
            self._response.release()
        if not finished:
            raise UpstreamConnectionError(
                f"The provider '{self._provider}' ended the stream before it was complete."
            )
        if self._include_usage and self.usage is not None:
            u = self.usage
            usage = {
                "prompt_tokens": u.input_tokens,
                "completion_tokens": u.output_tokens,
                "total_tokens": u.input_tokens + u.output_tokens,
                "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
                "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            }
            yield [orjson.dumps({**self._base, "choices": [], "usage": usage})]

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps({**self._base, "choices": [choice]})

    def _translate(self, response: GenerateContentResponse, batch: list[bytes]) -> bool:
        """Append the chunks for one streamed response; True once the answer is finished."""
        if response.usage_metadata is not None:
            self.usage = response.usage_metadata.canonical()
        if response.response_id:
            self._base["id"] = f"chatcmpl-{response.response_id}"
        if not self._started:
            self._started = True
            batch.append(self._chunk({"role": "assistant", "content": ""}))
        if not response.candidates:
            if response.prompt_feedback is not None and response.prompt_feedback.block_reason:
                batch.append(self._chunk({}, "content_filter"))
                return True
            return False
        candidate = response.candidates[0]
        for part in candidate.content.parts if candidate.content else ():
            if part.text and part.thought:
                batch.append(self._chunk({"reasoning_content": part.text}))
            elif part.text:
                batch.append(self._chunk({"content": part.text}))
        calls = calls_of(candidate, self._calls)
        for call in calls:
            batch.append(self._chunk({"tool_calls": [{"index": self._calls, **call}]}))
            self._calls += 1
        if candidate.finish_reason is not None:
            batch.append(self._chunk({}, finish_reason(candidate.finish_reason, self._calls > 0)))
            return True
        return False

    async def aclose(self) -> None:
        self._response.release()
