"""An Anthropic event stream, translated event by event into OpenAI `chat.completion.chunk`s.

message_start → the role chunk; text_delta → content; a tool_use block → a tool call (id and name
first, then its `input_json_delta`s as argument fragments); thinking_delta → `reasoning_content`;
message_delta → the finish chunk; message_stop ends it (the usage chunk follows when the client
asked for it). `ping` is skipped; an `error` event fails the stream (`overloaded_error` as a
retryable upstream failure). A stream that ends before `message_stop` is truncated.
"""

from __future__ import annotations

from turnout.domain.completions import Chunk, ChunkDelta, ChunkFunction, ChunkToolCall
from turnout.domain.errors import TurnoutError
from turnout.providers.anthropic.errors import error_from_event
from turnout.providers.anthropic.translate import JsonMode, chat_id, finish_reason
from turnout.providers.anthropic.wire import AnthropicUsage, Event, event_decoder
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.translated_stream import TranslatedStream


class AnthropicStream(TranslatedStream):
    def __init__(
        self,
        response: UpstreamResponse,
        *,
        provider: str,
        requested_model: str,
        json_mode: JsonMode | None,
        include_usage: bool,
    ) -> None:
        super().__init__(response, provider=provider, model=requested_model, include_usage=include_usage)
        self._id = "chatcmpl-anthropic"
        self._json_mode = json_mode
        self._tool_index: dict[int, int] = {}  # Anthropic block index → OpenAI tool call index
        self._json_blocks: set[int] = set()  # blocks carrying the JSON-mode answer
        self._input: AnthropicUsage | None = None

    def _event(self, data: bytes, batch: list[Chunk]) -> bool:
        event = self._decode(event_decoder, data)
        if event.type == "message_stop":
            return True
        chunk = self._translate(event)
        if chunk is not None:
            batch.append(chunk)
        return False

    def _translate(self, event: Event) -> Chunk | None:
        kind = event.type
        if kind == "content_block_delta" and event.delta is not None:
            d = event.delta
            if d.type == "text_delta" and d.text:
                return self._chunk(ChunkDelta(content=d.text))
            if d.type == "input_json_delta" and d.partial_json:
                index = event.index or 0
                if index in self._json_blocks:
                    return self._chunk(ChunkDelta(content=d.partial_json))
                call = self._tool_index.get(index)
                if call is None:
                    return None
                fragment = ChunkToolCall(call, function=ChunkFunction(arguments=d.partial_json))
                return self._chunk(ChunkDelta(tool_calls=[fragment]))
            if d.type == "thinking_delta" and d.thinking:
                return self._chunk(ChunkDelta(reasoning_content=d.thinking))
            return None
        if kind == "content_block_start" and event.content_block is not None:
            block = event.content_block
            index = event.index or 0
            if block.type == "tool_use":
                if self._json_mode is not None and block.name == self._json_mode.tool:
                    self._json_blocks.add(index)
                    return None
                call = len(self._tool_index)
                self._tool_index[index] = call
                function = ChunkFunction(name=block.name, arguments="")
                start = ChunkToolCall(call, id=block.id, type="function", function=function)
                return self._chunk(ChunkDelta(tool_calls=[start]))
            if block.type == "text" and block.text:
                return self._chunk(ChunkDelta(content=block.text))
            return None
        if kind == "message_start" and event.message is not None:
            message = event.message
            self._id = chat_id(message.id)
            self._model = message.model or self._model
            self._input = message.usage
            return self._chunk(ChunkDelta(role="assistant", content=""))
        if kind == "message_delta":
            self._settle_usage(event.usage)
            reason = finish_reason(event.delta.stop_reason if event.delta else None, self._json_mode)
            return self._chunk(ChunkDelta(), reason or "stop")
        if kind == "error":
            raise self._error(event)
        return None  # ping, content_block_stop, and event types added later

    def _settle_usage(self, final: AnthropicUsage | None) -> None:
        start = self._input or AnthropicUsage()
        final = final or AnthropicUsage()
        merged = AnthropicUsage(
            input_tokens=final.input_tokens if final.input_tokens is not None else start.input_tokens,
            output_tokens=final.output_tokens if final.output_tokens is not None else start.output_tokens,
            cache_creation_input_tokens=final.cache_creation_input_tokens
            if final.cache_creation_input_tokens is not None
            else start.cache_creation_input_tokens,
            cache_read_input_tokens=final.cache_read_input_tokens
            if final.cache_read_input_tokens is not None
            else start.cache_read_input_tokens,
            cache_creation=final.cache_creation or start.cache_creation,
            service_tier=final.service_tier or start.service_tier,
        )
        self.usage = merged.canonical()

    def _error(self, event: Event) -> TurnoutError:
        return error_from_event(event.error, self._provider)


class NativeAnthropicStream(AnthropicStream):
    """The upstream's own events, passed on as they came (for a client speaking Anthropic's
    format): each re-framed as SSE. What each means in OpenAI's terms is folded into the
    attempt's answer as in the translated stream (usage, text, tool calls: what counts its output
    when the provider reports none), but never written; an `error` event fails the stream as in
    the translated one."""

    native = True

    def _event(self, data: bytes, batch: list[Chunk]) -> bool:
        event = self._decode(event_decoder, data)
        kind = event.type
        if kind == "message_stop":
            return True  # written by the edge once the request is accounted for
        translated = self._translate(event)  # raises on an error event
        view = None if translated is None else translated.view
        batch.append(Chunk(view, b"event: %s\ndata: %s\n\n" % (kind.encode(), data)))
        return False
