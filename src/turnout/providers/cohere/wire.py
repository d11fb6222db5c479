"""Cohere v2 wire types: what turnout reads from Cohere, decoded with msgspec. Requests are built as
plain dicts in translate.py."""

from __future__ import annotations

from typing import Any

import msgspec

from turnout.domain.usage import TokenCountFloat, Usage


class Tokens(msgspec.Struct, frozen=True):
    input_tokens: TokenCountFloat | None = None
    output_tokens: TokenCountFloat | None = None


class CohereUsage(msgspec.Struct, frozen=True):
    billed_units: Tokens | None = None
    tokens: Tokens | None = None
    cached_tokens: TokenCountFloat | None = None

    def canonical(self) -> Usage:
        counted = self.tokens or self.billed_units or Tokens()
        return Usage(
            input_tokens=int(counted.input_tokens or 0),
            output_tokens=int(counted.output_tokens or 0),
            cached_input_tokens=int(self.cached_tokens or 0),
        )


class Function(msgspec.Struct, frozen=True):
    name: str | None = None
    arguments: str | None = None


class ToolCall(msgspec.Struct, frozen=True):
    id: str | None = None
    type: str | None = None
    function: Function | None = None


class ContentItem(msgspec.Struct, frozen=True):
    type: str = "text"
    text: str | None = None
    thinking: str | None = None


class AssistantMessage(msgspec.Struct, frozen=True):
    role: str = "assistant"
    content: list[ContentItem] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_plan: str | None = None


class ChatResponse(msgspec.Struct, frozen=True):
    id: str
    finish_reason: str | None = None
    message: AssistantMessage | None = None
    usage: CohereUsage | None = None


class DeltaContent(msgspec.Struct, frozen=True):
    text: str | None = None
    thinking: str | None = None


class DeltaMessage(msgspec.Struct, frozen=True):
    """`content` and `tool_calls` are objects in deltas but empty lists in message-start."""

    content: DeltaContent | list[Any] | None = None
    tool_calls: ToolCall | list[Any] | None = None
    tool_plan: str | None = None


class Delta(msgspec.Struct, frozen=True):
    message: DeltaMessage | None = None
    finish_reason: str | None = None
    usage: CohereUsage | None = None
    error: str | None = None


class StreamEvent(msgspec.Struct, frozen=True):
    type: str
    id: str | None = None
    index: int | None = None
    delta: Delta | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    message: str | None = None
    id: str | None = None


class Embeddings(msgspec.Struct, frozen=True):
    floats: list[list[float]] = msgspec.field(name="float")


class BilledUnits(msgspec.Struct, frozen=True):
    input_tokens: TokenCountFloat | None = None


class EmbedMeta(msgspec.Struct, frozen=True):
    billed_units: BilledUnits | None = None


class EmbedResponse(msgspec.Struct, frozen=True):
    embeddings: Embeddings
    meta: EmbedMeta | None = None


class ModelEntry(msgspec.Struct, frozen=True):
    name: str
    endpoints: list[str] = []


class ModelList(msgspec.Struct, frozen=True):
    models: list[ModelEntry] = []


response_decoder = msgspec.json.Decoder(ChatResponse)
event_decoder = msgspec.json.Decoder(StreamEvent)
error_decoder = msgspec.json.Decoder(ErrorBody)
embed_decoder = msgspec.json.Decoder(EmbedResponse)
models_decoder = msgspec.json.Decoder(ModelList)
