"""Anthropic Messages API wire types: what turnout reads from Anthropic (responses, stream events,
errors, the model list), decoded with msgspec. Requests are built as plain dicts in translate.py."""

from __future__ import annotations

from typing import Any

import msgspec

from turnout.domain.usage import TokenCount, Usage

API_VERSION = "2023-06-01"  # the `anthropic-version` header


class CacheCreation(msgspec.Struct, frozen=True):
    """The cache writes by how long they are kept (priced apart: an hour costs more)."""

    ephemeral_5m_input_tokens: TokenCount | None = None
    ephemeral_1h_input_tokens: TokenCount | None = None


class AnthropicUsage(msgspec.Struct, frozen=True):
    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    cache_creation_input_tokens: TokenCount | None = None
    cache_read_input_tokens: TokenCount | None = None
    cache_creation: CacheCreation | None = None
    service_tier: str | None = None  # standard, priority or batch

    def canonical(self) -> Usage:
        """OpenAI counts every prompt token in `input`; Anthropic splits out cache reads and writes."""
        cached = self.cache_read_input_tokens or 0
        written = self.cache_creation_input_tokens or 0
        hour = (self.cache_creation.ephemeral_1h_input_tokens or 0) if self.cache_creation else 0
        return Usage(
            input_tokens=(self.input_tokens or 0) + cached + written,
            output_tokens=self.output_tokens or 0,
            cached_input_tokens=cached,
            cache_write_tokens=written,
            cache_write_1h_tokens=min(hour, written),
            service_tier=self.service_tier,
        )


class ContentBlock(msgspec.Struct, frozen=True):
    """One block of an answer: `text`, `tool_use`, `thinking`, `redacted_thinking` (others kept raw)."""

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class Message(msgspec.Struct, frozen=True):
    id: str
    model: str
    content: list[ContentBlock]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: AnthropicUsage | None = None
    type: str = "message"
    role: str = "assistant"


class Delta(msgspec.Struct, frozen=True):
    """`content_block_delta.delta` (text / input_json / thinking / signature) or `message_delta.delta`."""

    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class ErrorDetail(msgspec.Struct, frozen=True):
    type: str | None = None
    message: str | None = None


class Event(msgspec.Struct, frozen=True):
    """Any streamed event, by its `type`: message_start, content_block_start, content_block_delta,
    content_block_stop, message_delta, message_stop, ping, error."""

    type: str
    message: Message | None = None
    index: int | None = None
    content_block: ContentBlock | None = None
    delta: Delta | None = None
    usage: AnthropicUsage | None = None
    error: ErrorDetail | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail | None = None
    type: str | None = None


class ModelEntry(msgspec.Struct, frozen=True):
    id: str


class ModelList(msgspec.Struct, frozen=True):
    data: list[ModelEntry]


class InputTokens(msgspec.Struct, frozen=True):
    """`POST /v1/messages/count_tokens`'s answer."""

    input_tokens: TokenCount


message_decoder = msgspec.json.Decoder(Message)
count_decoder = msgspec.json.Decoder(InputTokens)
event_decoder = msgspec.json.Decoder(Event)
error_decoder = msgspec.json.Decoder(ErrorBody)
models_decoder = msgspec.json.Decoder(ModelList)
