"""OpenAI's Responses API, forwarded: a client's `POST /v1/responses` passed whole to a provider
that has the API (OpenAI; any other OpenAI-format provider with `responses_api: true`), and its
answer or its events passed back as they came. turnout reads only the usage (from the response,
or the stream's `response.completed` / `response.incomplete` event) and, for counting when none
comes, the text and function-call arguments as they stream."""

from __future__ import annotations

import msgspec

from turnout.domain.completions import ChatCompletionChunk, Chunk, ChunkDelta, ChunkFunction, ChunkToolCall
from turnout.domain.errors import UpstreamServerError
from turnout.domain.usage import TokenCount, Usage
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.translated_stream import TranslatedStream

# The events that end a response's stream; the edge writes them once the request is accounted for.
FINAL_EVENTS = (b"response.completed", b"response.incomplete")


class _InputDetails(msgspec.Struct, frozen=True):
    cached_tokens: TokenCount | None = None


class _OutputDetails(msgspec.Struct, frozen=True):
    reasoning_tokens: TokenCount | None = None


class ResponsesUsage(msgspec.Struct, frozen=True):
    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None

    def canonical(self, service_tier: str | None = None) -> Usage:
        cached = self.input_tokens_details.cached_tokens if self.input_tokens_details else None
        reasoning = self.output_tokens_details.reasoning_tokens if self.output_tokens_details else None
        return Usage(
            input_tokens=self.input_tokens or 0,
            output_tokens=self.output_tokens or 0,
            cached_input_tokens=cached or 0,
            reasoning_tokens=reasoning or 0,
            service_tier=service_tier,
        )


class ResponsePeek(msgspec.Struct):
    """A Response object, read only as far as turnout needs."""

    usage: ResponsesUsage | None = None
    service_tier: str | None = None


class _Item(msgspec.Struct):
    type: str = ""
    call_id: str | None = None
    name: str | None = None


class EventPeek(msgspec.Struct):
    type: str = ""
    delta: str | None = None
    output_index: int = 0
    item: _Item | None = None
    response: ResponsePeek | None = None
    message: str | None = None  # an `error` event's


response_decoder = msgspec.json.Decoder(ResponsePeek)
event_decoder = msgspec.json.Decoder(EventPeek)


def usage_of(data: bytes) -> Usage | None:
    """The usage a whole Response reports (None if it reports none)."""
    peek = response_decoder.decode(data)
    return peek.usage.canonical(peek.service_tier) if peek.usage is not None else None


class NativeResponsesStream(TranslatedStream):
    """A Responses stream's own events, re-framed as SSE and passed on; what each means in chat
    terms (text, function calls, usage) is folded into the attempt's answer, never written."""

    native = True

    def __init__(self, response: UpstreamResponse, *, provider: str, model: str) -> None:
        super().__init__(response, provider=provider, model=model, include_usage=False)
        self._calls: dict[int, int] = {}  # output index → tool call index

    def _event(self, data: bytes, batch: list[Chunk]) -> bool:
        event = self._decode(event_decoder, data)
        kind = event.type
        raw = b"event: %s\ndata: %s\n\n" % (kind.encode(), data)
        view = self._view(event)
        batch.append(Chunk(view, raw))
        return kind.encode() in FINAL_EVENTS

    def _view(self, event: EventPeek) -> ChatCompletionChunk | None:
        kind = event.type
        if kind == "response.created":
            return self._chunk(ChunkDelta(role="assistant", content="")).view
        if kind == "response.output_text.delta" and event.delta:
            return self._chunk(ChunkDelta(content=event.delta)).view
        item = event.item
        if kind == "response.output_item.added" and item is not None and item.type == "function_call":
            index = self._calls.setdefault(event.output_index, len(self._calls))
            function = ChunkFunction(name=item.name, arguments="")
            start = ChunkToolCall(index, id=item.call_id, type="function", function=function)
            return self._chunk(ChunkDelta(tool_calls=[start])).view
        if kind == "response.function_call_arguments.delta" and event.delta:
            call = self._calls.get(event.output_index)
            if call is None:
                return None
            fragment = ChunkToolCall(call, function=ChunkFunction(arguments=event.delta))
            return self._chunk(ChunkDelta(tool_calls=[fragment])).view
        if kind.encode() in FINAL_EVENTS and event.response is not None:
            peek = event.response
            if peek.usage is not None:
                self.usage = peek.usage.canonical(peek.service_tier)
            return self._chunk(ChunkDelta(), "stop").view
        if kind in ("response.failed", "error"):
            raise UpstreamServerError(
                f"The provider '{self._provider}' failed the response mid-stream.", upstream_status=502
            )
        return None
