"""A Cohere v2 chat stream, event by event into OpenAI `chat.completion.chunk`s: message-start →
the role chunk; content-delta → content; tool-plan-delta and thinking → `reasoning_content`;
tool-call-start / tool-call-delta → a tool call and its argument fragments; message-end → the
finish chunk and (when asked for) the usage chunk. A stream that closes before message-end is
truncated, and reported as such."""

from __future__ import annotations

from msgspec import UNSET

from turnout.domain.completions import Chunk, ChunkDelta, ChunkFunction, ChunkToolCall
from turnout.providers.cohere.errors import stream_error
from turnout.providers.cohere.translate import finish_reason
from turnout.providers.cohere.wire import DeltaContent, StreamEvent, ToolCall, event_decoder
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.translated_stream import TranslatedStream


class CohereStream(TranslatedStream):
    def __init__(self, response: UpstreamResponse, *, provider: str, model: str, include_usage: bool) -> None:
        super().__init__(response, provider=provider, model=model, include_usage=include_usage)
        self._id = "chatcmpl-cohere"

    def _event(self, data: bytes, batch: list[Chunk]) -> bool:
        return self._translate(self._decode(event_decoder, data), batch)

    def _translate(self, event: StreamEvent, batch: list[Chunk]) -> bool:
        kind = event.type
        message = event.delta.message if event.delta else None
        if kind == "message-start":
            if event.id:
                self._id = f"chatcmpl-{event.id}"
            batch.append(self._chunk(ChunkDelta(role="assistant", content="")))
        elif kind == "content-delta" and message is not None and isinstance(message.content, DeltaContent):
            if message.content.text:
                batch.append(self._chunk(ChunkDelta(content=message.content.text)))
            elif message.content.thinking:
                batch.append(self._chunk(ChunkDelta(reasoning_content=message.content.thinking)))
        elif kind == "tool-plan-delta" and message is not None and message.tool_plan:
            batch.append(self._chunk(ChunkDelta(reasoning_content=message.tool_plan)))
        elif (
            kind in ("tool-call-start", "tool-call-delta")
            and message is not None
            and isinstance(message.tool_calls, ToolCall)
        ):
            batch.append(
                self._chunk(ChunkDelta(tool_calls=[_tool_call(event.index or 0, kind, message.tool_calls)]))
            )
        elif kind == "message-end":
            delta = event.delta
            if delta is not None and delta.finish_reason == "ERROR":
                raise stream_error(delta.error, self._provider)
            if delta is not None and delta.usage is not None:
                self.usage = delta.usage.canonical()
            batch.append(self._chunk(ChunkDelta(), finish_reason(delta.finish_reason if delta else None)))
            return True
        return False


def _tool_call(index: int, kind: str, call: ToolCall) -> ChunkToolCall:
    """A tool call's start (its id, type and name) or one of its argument fragments."""
    entry = ChunkToolCall(index)
    if kind == "tool-call-start":
        entry.id = call.id
        entry.type = "function"
    if call.function is not None:
        entry.function = ChunkFunction(
            name=call.function.name or UNSET, arguments=call.function.arguments or ""
        )
    return entry
