"""`POST /v1/messages`: Anthropic's Messages API in front of every provider. The request is
translated to the canonical chat request and goes through the same pipeline as a chat completion;
the answer, its stream and its errors are written in Anthropic's format."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from turnout.domain.errors import TurnoutError
from turnout.domain.usage import Usage
from turnout.inbound.anthropic_messages import EventWriter, error_json, to_message, to_openai
from turnout.routing.relay import RelayStream
from turnout.routing.router import Served, Steering
from turnout.server.exchange import Exchange


class MessagesExchange:
    """The pipeline's Inbound and Responder for one /v1/messages request."""

    def __init__(self, x: Exchange) -> None:
        self.x = x
        x.render_error = lambda error: error_json(error, x.request_id)
        self.model = ""

    def credential(self) -> str | None:
        return self.x.credential()

    def steering(self) -> Steering:
        return self.x.steering()

    async def json(self) -> Any:
        body = await self.x.json()
        translated = to_openai(body)
        self.model = translated["model"]
        return translated

    async def answer(self, body: bytes, served: Served) -> None:
        await self.x.answer(orjson.dumps(to_message(orjson.loads(body), self.model)), served)

    async def stream(self, stream: RelayStream, served: Served) -> Usage | None:
        return await self.x.stream(stream, served, _EventFraming(self.model, self.x.request_id))


class _EventFraming:
    def __init__(self, model: str, request_id: str) -> None:
        self.writer = EventWriter(model, request_id)

    def parts(
        self,
    ) -> tuple[Callable[[list[bytes]], bytes], Callable[[], bytes], Callable[[TurnoutError], bytes]]:
        writer = self.writer
        return (lambda batch: b"".join(writer.chunk(c) for c in batch)), writer.finish, writer.error
