"""The few parts of OpenAI's responses turnout reads; everything else is forwarded untouched."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from turnout.domain.usage import OpenAIUsage
from turnout.providers.upstream_errors import UpstreamErrorBody


class CompletionPeek(msgspec.Struct):
    """A `chat.completion`, read only as far as turnout needs (the rest is skipped, not kept)."""

    choices: list[msgspec.Raw]
    usage: OpenAIUsage | None = None


class ChunkPeek(msgspec.Struct):
    choices: list[msgspec.Raw] = []
    usage: OpenAIUsage | None = None
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
chunk_decoder = msgspec.json.Decoder(ChunkPeek)
embeddings_decoder = msgspec.json.Decoder(EmbeddingsPeek)
models_decoder = msgspec.json.Decoder(ModelList)


def parse_error_body(raw: bytes) -> UpstreamErrorBody:
    """OpenAI's `{"error": {...}}`, and the shapes OpenAI-compatible servers use instead
    (`{"message": ...}`, FastAPI's `{"detail": ...}`, a bare string)."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return UpstreamErrorBody(message=text[:500] or None)
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, str):
            return UpstreamErrorBody(message=err)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or err.get("msg")
            if isinstance(message, list):  # FastAPI validation details
                message = "; ".join(str(m.get("msg", m)) if isinstance(m, dict) else str(m) for m in message)
            return UpstreamErrorBody(
                message=str(message) if message is not None else None,
                type=_text(err.get("type")),
                param=_text(err.get("param")),
                code=_text(err.get("code")),
            )
    return UpstreamErrorBody()


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
