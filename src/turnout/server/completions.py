"""`POST /v1/completions`: OpenAI's legacy Completions API (inbound/legacy_completions.py). A
deployment that serves it gets the request whole, and the client its answer or events as they
came; any other gets the prompt as a chat request, and the client the chat answer as a
`text_completion` (its stream as legacy chunks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from turnout.domain.completions import Chunk
from turnout.domain.errors import TurnoutError
from turnout.inbound.legacy_completions import chunk_json, to_chat, to_text_completion
from turnout.providers.base import ChatResult, NativeRequest
from turnout.providers.sse import DONE
from turnout.routing.relay import RelayStream
from turnout.routing.values import Served
from turnout.server.errors import error_event
from turnout.server.exchange import Exchange, WrappedExchange

Parts = tuple[Callable[[list[Chunk]], bytes], bytes, Callable[[TurnoutError], bytes]]


class CompletionsExchange(WrappedExchange):
    """The pipeline's Inbound and Responder for one /v1/completions request."""

    api = "completions"

    def __init__(self, x: Exchange) -> None:
        super().__init__(x)
        self.model = ""
        self._native: NativeRequest | None = None

    async def json(self) -> Any:
        body = await self.x.json()
        native_only: list[str] = []
        chat = to_chat(body, native_only)
        self.model = str(chat.get("model", ""))
        self._native = NativeRequest("completions", body, (), tuple(native_only))
        return chat

    def native(self) -> NativeRequest | None:
        return self._native

    async def answer_chat(self, result: ChatResult, served: Served) -> None:
        await self.x.answer(orjson.dumps(to_text_completion(result.typed(), self.model)), served)

    async def stream(self, stream: RelayStream, served: Served) -> None:
        framing = _Native() if stream.native else _Translated(self.model)
        await self.x.stream(stream, served, framing)


class _Native:
    """The provider's own legacy events, already framed, passed on as they came."""

    def parts(self) -> Parts:
        return (lambda batch: b"".join([c.raw for c in batch if c.raw is not None])), DONE, error_event


class _Translated:
    """Chat chunks (their typed views) written as legacy `text_completion` events."""

    def __init__(self, model: str) -> None:
        self.model = model

    def frame(self, batch: list[Chunk]) -> bytes:
        out = []
        for chunk in batch:
            if chunk.view is not None and (data := chunk_json(chunk.view, self.model)) is not None:
                out.append(b"data: " + data + b"\n\n")
        return b"".join(out)

    def parts(self) -> Parts:
        return self.frame, DONE, error_event
