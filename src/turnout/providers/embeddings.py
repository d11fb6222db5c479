"""OpenAI's embeddings list, for adapters whose upstream answers in another shape, and the
float32 base64 encoding OpenAI uses for `encoding_format: base64`."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Any

from turnout.domain.embeddings import EmbeddingRequest
from turnout.domain.errors import InvalidRequest


def float32_base64(vector: Sequence[float]) -> str:
    """A vector as little-endian float32 bytes in base64, as OpenAI returns it."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embeddings_list(
    vectors: Sequence[Sequence[float]], *, model: str, tokens: int, as_base64: bool
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": float32_base64(v) if as_base64 else list(v)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def texts_of(request: EmbeddingRequest, provider: str) -> list[str]:
    """The strings to embed, for providers that embed text only (not token ids)."""
    texts = [request.input] if isinstance(request.input, str) else request.input
    if not all(isinstance(t, str) for t in texts):
        raise InvalidRequest(
            f"{provider} embeds text only: send 'input' as strings, not token ids.", param="input"
        )
    return texts
