"""Bedrock Runtime Converse wire types: what turnout reads from Bedrock (the Converse answer, the
ConverseStream event payloads, error bodies), decoded with msgspec. Field names are those of
botocore's `bedrock-runtime` service model (camelCase on the wire, snake_case here). Requests are
built as plain dicts in translate.py."""

from __future__ import annotations

from typing import Any

import msgspec

from turnout.domain.usage import TokenCount, Usage


class TokenUsage(msgspec.Struct, frozen=True, rename="camel"):
    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    total_tokens: TokenCount | None = None
    cache_read_input_tokens: TokenCount | None = None
    cache_write_input_tokens: TokenCount | None = None

    def canonical(self) -> Usage:
        """OpenAI counts every prompt token in `input`; Bedrock's `inputTokens` leaves out the
        tokens read from and written to the prompt cache, which it reports on their own."""
        cached = self.cache_read_input_tokens or 0
        written = self.cache_write_input_tokens or 0
        return Usage(
            input_tokens=(self.input_tokens or 0) + cached + written,
            output_tokens=self.output_tokens or 0,
            cached_input_tokens=cached,
            cache_write_tokens=written,
        )


class ToolUse(msgspec.Struct, frozen=True, rename="camel"):
    tool_use_id: str | None = None
    name: str | None = None
    input: Any = None


class ReasoningText(msgspec.Struct, frozen=True, rename="camel"):
    text: str | None = None
    signature: str | None = None


class ReasoningContent(msgspec.Struct, frozen=True, rename="camel"):
    """A union: `reasoningText` (readable) or `redactedContent` (encrypted, base64)."""

    reasoning_text: ReasoningText | None = None
    redacted_content: str | None = None


class ContentBlock(msgspec.Struct, frozen=True, rename="camel"):
    """A union of one member: `text`, `toolUse`, `reasoningContent` (others are skipped)."""

    text: str | None = None
    tool_use: ToolUse | None = None
    reasoning_content: ReasoningContent | None = None


class Message(msgspec.Struct, frozen=True, rename="camel"):
    role: str = "assistant"
    content: list[ContentBlock] = []


class Output(msgspec.Struct, frozen=True, rename="camel"):
    message: Message | None = None


class ConverseResponse(msgspec.Struct, frozen=True, rename="camel"):
    output: Output
    stop_reason: str | None = None
    usage: TokenUsage | None = None


# ----------------------------------------------------------------------------- stream payloads


class BlockStart(msgspec.Struct, frozen=True, rename="camel"):
    """`contentBlockStart.start`: a union whose `toolUse` member opens a tool call."""

    tool_use: ToolUse | None = None


class ToolUseDelta(msgspec.Struct, frozen=True, rename="camel"):
    input: str | None = None  # a fragment of the arguments' JSON text


class ReasoningDelta(msgspec.Struct, frozen=True, rename="camel"):
    text: str | None = None
    signature: str | None = None
    redacted_content: str | None = None


class BlockDelta(msgspec.Struct, frozen=True, rename="camel"):
    """`contentBlockDelta.delta`: a union of `text`, `toolUse`, `reasoningContent` (and others)."""

    text: str | None = None
    tool_use: ToolUseDelta | None = None
    reasoning_content: ReasoningDelta | None = None


class StreamPayload(msgspec.Struct, frozen=True, rename="camel"):
    """The JSON payload of any ConverseStream message; which fields it holds depends on the
    message's `:event-type` (messageStart, contentBlockStart, contentBlockDelta, contentBlockStop,
    messageStop, metadata) or `:exception-type` (`message`, `originalMessage`). Bedrock also pads
    payloads with a random `p` field, which is ignored."""

    role: str | None = None
    content_block_index: int | None = None
    start: BlockStart | None = None
    delta: BlockDelta | None = None
    stop_reason: str | None = None
    usage: TokenUsage | None = None
    message: str | None = None
    original_status_code: int | None = None
    original_message: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    """`{"message": ...}` (some AWS front ends write `Message`)."""

    message: str | None = None
    capitalised: str | None = msgspec.field(default=None, name="Message")


response_decoder = msgspec.json.Decoder(ConverseResponse)
payload_decoder = msgspec.json.Decoder(StreamPayload)
error_decoder = msgspec.json.Decoder(ErrorBody)
