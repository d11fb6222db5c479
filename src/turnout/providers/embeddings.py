"""OpenAI's embeddings list, for adapters whose upstream answers in another shape, the float32
base64 encoding OpenAI uses for `encoding_format: base64`, and the fan-out for upstreams that take
fewer texts per call than one request holds."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from turnout.domain.embeddings import EmbeddingRequest
from turnout.domain.errors import InvalidRequest

T = TypeVar("T")
R = TypeVar("R")


async def in_order(items: Sequence[T], call: Callable[[T], Awaitable[R]], limit: int) -> list[R]:
    """`call` on every item, at most `limit` at once, the results in the items' order. The first
    failure is raised and the calls still running are cancelled (their answers are not needed)."""
    if len(items) == 1:
        return [await call(items[0])]
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with gate:
            return await call(item)

    tasks = [asyncio.ensure_future(one(item)) for item in items]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


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
