"""The canonical answer, typed: OpenAI's `chat.completion` and `chat.completion.chunk` as msgspec
structs. Translating adapters build them and they are encoded once, at the edge that writes OpenAI
JSON; an OpenAI-format upstream's answer is decoded into them once (the fields turnout reads) and
its own bytes are what the client gets (`Chunk.raw`).

A field the spec makes optional is `UNSET` until set, so an encoded struct holds exactly the
fields that were set (a translated chunk writes `logprobs` and `finish_reason` as null, as OpenAI
does, and no `usage` but on the usage chunk). Decoding is lenient where OpenAI-compatible servers
differ (null for absent, a missing index or delta); what turnout never reads is kept raw.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, Raw, UnsetType

from turnout.domain.usage import OpenAIUsage

NULL = Raw(b"null")


def present(value: Raw | UnsetType) -> bool:
    """Is a raw field there, and not null?"""
    return value is not UNSET and bytes(value) != b"null"


# ----------------------------------------------------------------------------- stream chunks


class ChunkFunction(msgspec.Struct, gc=False):
    name: str | UnsetType | None = UNSET
    arguments: str | UnsetType | None = UNSET


class ChunkToolCall(msgspec.Struct, gc=False):
    """A tool call's piece: the first carries its id, type and name; the rest argument fragments."""

    index: int = 0
    id: str | UnsetType | None = UNSET
    type: str | UnsetType | None = UNSET
    function: ChunkFunction | UnsetType | None = UNSET


class ChunkDelta(msgspec.Struct, gc=False):
    role: str | UnsetType | None = UNSET
    # a string; some servers send a list of parts (Mistral's reasoning models), read as text parts
    content: str | list[Any] | UnsetType | None = UNSET
    reasoning_content: str | UnsetType | None = UNSET
    refusal: str | UnsetType | None = UNSET
    tool_calls: list[ChunkToolCall] | UnsetType | None = UNSET
    function_call: Raw | UnsetType = UNSET  # the legacy form of a tool call
    audio: Raw | UnsetType = UNSET


class ChunkChoice(msgspec.Struct, gc=False):
    index: int = 0
    delta: ChunkDelta | None = None
    logprobs: Raw = NULL
    finish_reason: str | None = None


class ChatCompletionChunk(msgspec.Struct, gc=False):
    id: str | None = None
    object: str = "chat.completion.chunk"
    created: int | None = None
    model: str | None = None
    choices: list[ChunkChoice] = []
    usage: OpenAIUsage | UnsetType | None = UNSET
    service_tier: str | UnsetType | None = UNSET  # the tier OpenAI served it at
    error: Raw | UnsetType = UNSET  # an upstream's failure, mid-stream (never written by turnout)
    x_turnout: dict[str, Any] | UnsetType = UNSET  # turnout's note on a resumed stream


class Chunk(msgspec.Struct, gc=False, frozen=True):
    """One chunk of a stream as it travels: its typed view, and the bytes to send when they are
    not the view's encoding — an OpenAI upstream's own JSON, or an event of the client's own wire
    format (a native stream). `view` is None for an event that is not an OpenAI chunk, or for an
    upstream chunk of a shape turnout could not read (passed on, not interpreted)."""

    view: ChatCompletionChunk | None
    raw: bytes | None = None


# ----------------------------------------------------------------------------- whole answers


class CompletionFunction(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class CompletionToolCall(msgspec.Struct, gc=False):
    id: str | None = None
    type: str = "function"
    function: CompletionFunction | None = None


class CompletionMessage(msgspec.Struct, gc=False):
    role: str = "assistant"
    content: str | list[Any] | None = None
    refusal: str | None = None
    tool_calls: list[CompletionToolCall] | UnsetType | None = UNSET
    reasoning_content: str | UnsetType | None = UNSET
    function_call: Raw | UnsetType = UNSET
    audio: Raw | UnsetType = UNSET


class CompletionChoice(msgspec.Struct, gc=False):
    index: int = 0
    message: CompletionMessage | None = None
    logprobs: Raw = NULL
    finish_reason: str | None = None


class ChatCompletion(msgspec.Struct, gc=False):
    id: str | None = None
    object: str = "chat.completion"
    created: int | None = None
    model: str | None = None
    choices: list[CompletionChoice] = []
    usage: OpenAIUsage | UnsetType | None = UNSET


def text_of(content: str | list[Any] | UnsetType | None) -> str:
    """A message's or delta's content as text: a list of parts gives its parts' `text`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def answer_texts(completion: ChatCompletion) -> list[str]:
    """What every choice of a completion produced: content, refusal, reasoning and tool calls
    (names and arguments), as the pieces to count."""
    texts: list[str] = []
    for choice in completion.choices:
        message = choice.message
        if message is None:
            continue
        texts.append(text_of(message.content))
        for piece in (message.refusal, message.reasoning_content):
            if isinstance(piece, str):
                texts.append(piece)
        for call in message.tool_calls or ():
            if call.function is not None:
                texts.append(call.function.name or "")
                texts.append(call.function.arguments or "")
    return texts


encoder = msgspec.json.Encoder()
chunk_decoder = msgspec.json.Decoder(ChatCompletionChunk)
completion_decoder = msgspec.json.Decoder(ChatCompletion)


def chunk_json(chunk: Chunk) -> bytes:
    """The chunk's JSON as the client gets it: the upstream's own bytes, or the view encoded."""
    raw = chunk.raw
    return raw if raw is not None else encoder.encode(chunk.view)
