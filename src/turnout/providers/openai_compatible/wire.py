"""The few parts of OpenAI's responses turnout reads; everything else is forwarded untouched."""

from __future__ import annotations

from typing import Any

import msgspec

from turnout.domain.usage import OpenAIUsage


class CompletionPeek(msgspec.Struct):
    """A `chat.completion`, read only as far as turnout needs (the rest is skipped, not kept)."""

    choices: list[msgspec.Raw]
    usage: OpenAIUsage | None = None
    service_tier: str | None = None  # the tier OpenAI served it at


class ChunkPeek(msgspec.Struct):
    """A stream chunk read only as far as turnout must (for one the typed view cannot read)."""

    choices: list[msgspec.Raw] = []
    usage: OpenAIUsage | None = None
    service_tier: str | None = None
    error: Any = None  # present only when the upstream reports a failure mid-stream


class EmbeddingIndex(msgspec.Struct):
    index: int


class EmbeddingsPeek(msgspec.Struct):
    data: list[EmbeddingIndex]
    usage: OpenAIUsage | None = None


class ModelEntry(msgspec.Struct):
    id: str


class ModelList(msgspec.Struct):
    data: list[ModelEntry]


completion_decoder = msgspec.json.Decoder(CompletionPeek)
peek_decoder = msgspec.json.Decoder(ChunkPeek)
embeddings_decoder = msgspec.json.Decoder(EmbeddingsPeek)
models_decoder = msgspec.json.Decoder(ModelList)
