"""A Cohere v2 chat stream, event by event into OpenAI `chat.completion.chunk`s: message-start →
the role chunk; content-delta → content; tool-plan-delta and thinking → `reasoning_content`;
tool-call-start / tool-call-delta → a tool call and its argument fragments; message-end → the
finish chunk and (when asked for) the usage chunk. A stream that closes before message-end is
truncated, and reported as such."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import orjson

from turnout.domain.errors import UpstreamConnectionError, UpstreamProtocolError, UpstreamServerError
from turnout.domain.usage import Usage
from turnout.providers.cohere.translate import finish_reason, openai_usage
from turnout.providers.cohere.wire import DeltaContent, StreamEvent, ToolCall, event_decoder
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.sse import SSEDecoder


class CohereStream:
    def __init__(self, response: UpstreamResponse, *, provider: str, model: str, include_usage: bool) -> None:
        self._response = response
        self._provider = provider
        self._include_usage = include_usage
        self.usage: Usage | None = None
        self._base: dict[str, Any] = {
            "id": "chatcmpl-cohere",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self._relay()

    async def _relay(self) -> AsyncIterator[list[bytes]]:
        decoder = SSEDecoder()
        finished = False
        try:
            while (raw := await self._response.next_chunk()) is not None:
                batch: list[bytes] = []
                for data, _name in decoder.feed(raw):
                    if data == b"[DONE]":
                        continue
                    try:
                        event = event_decoder.decode(data)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        raise UpstreamProtocolError(
                            f"The provider '{self._provider}' sent a malformed stream event."
                        ) from None
                    finished = self._translate(event, batch) or finished
                if batch:
                    yield batch
                if finished:
                    break
        finally:
            self._response.release()
        if not finished:
            raise UpstreamConnectionError(
                f"The provider '{self._provider}' ended the stream before it was complete."
            )

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps({**self._base, "choices": [choice]})

    def _translate(self, event: StreamEvent, batch: list[bytes]) -> bool:
        kind = event.type
        message = event.delta.message if event.delta else None
        if kind == "message-start":
            if event.id:
                self._base["id"] = f"chatcmpl-{event.id}"
            batch.append(self._chunk({"role": "assistant", "content": ""}))
        elif kind == "content-delta" and message is not None and isinstance(message.content, DeltaContent):
            if message.content.text:
                batch.append(self._chunk({"content": message.content.text}))
            elif message.content.thinking:
                batch.append(self._chunk({"reasoning_content": message.content.thinking}))
        elif kind == "tool-plan-delta" and message is not None and message.tool_plan:
            batch.append(self._chunk({"reasoning_content": message.tool_plan}))
        elif (
            kind in ("tool-call-start", "tool-call-delta")
            and message is not None
            and isinstance(message.tool_calls, ToolCall)
        ):
            call = message.tool_calls
            entry: dict[str, Any] = {"index": event.index or 0}
            if kind == "tool-call-start":
                entry["id"] = call.id
                entry["type"] = "function"
            if call.function is not None:
                function: dict[str, Any] = {"arguments": call.function.arguments or ""}
                if call.function.name:
                    function["name"] = call.function.name
                entry["function"] = function
            batch.append(self._chunk({"tool_calls": [entry]}))
        elif kind == "message-end":
            delta = event.delta
            if delta is not None and delta.finish_reason == "ERROR":
                reason = delta.error or "no details given"
                raise UpstreamServerError(
                    f"The provider '{self._provider}' reported an error during the stream: {reason}",
                    upstream_status=502,
                )
            if delta is not None and delta.usage is not None:
                self.usage = delta.usage.canonical()
            batch.append(self._chunk({}, finish_reason(delta.finish_reason if delta else None)))
            if self._include_usage and delta is not None:
                usage = openai_usage(delta.usage)
                if usage is not None:
                    batch.append(orjson.dumps({**self._base, "choices": [], "usage": usage}))
            return True
        return False

    async def aclose(self) -> None:
        self._response.release()
