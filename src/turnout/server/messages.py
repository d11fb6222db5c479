"""`POST /v1/messages`: Anthropic's Messages API in front of every provider. The request is
translated to the canonical chat request and goes through the same pipeline as a chat completion;
the answer, its stream and its errors are written in Anthropic's format. An Anthropic-format
deployment gets the request whole (the native request) and its answer is passed on as it came,
so nothing the translation could not carry is lost on the way through."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson

from turnout.domain.completions import Chunk
from turnout.domain.errors import TurnoutError
from turnout.domain.rate_limits import Quota
from turnout.inbound.anthropic_messages import EventWriter, error_event, error_json, to_message, to_openai
from turnout.providers.base import ChatResult, NativeRequest
from turnout.routing.relay import RelayStream
from turnout.routing.values import Served
from turnout.server.exchange import Exchange, WrappedExchange

PASSED_HEADERS = (b"anthropic-beta",)  # the client's Anthropic headers a native request carries
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


class MessagesExchange(WrappedExchange):
    """The pipeline's Inbound and Responder for one /v1/messages request."""

    api = "messages"

    def __init__(self, x: Exchange) -> None:
        super().__init__(x)
        x.render_error = lambda error: error_json(error, x.request_id)
        x.quota_headers = Quota.anthropic_headers
        self.model = ""
        self._native: NativeRequest | None = None

    async def json(self) -> Any:
        body = await self.x.json()
        native_only: list[str] = []
        translated = to_openai(body, native_only)
        self.model = translated["model"]
        self._native = NativeRequest(
            "anthropic", body, passed_headers(self.x), tuple(native_only), beta=asks_beta(self.x)
        )
        return translated

    def native(self) -> NativeRequest | None:
        return self._native

    async def answer_chat(self, result: ChatResult, served: Served) -> None:
        await self.x.answer(orjson.dumps(to_message(result.typed(), self.model)), served)

    async def stream(self, stream: RelayStream, served: Served) -> None:
        if stream.native:
            await self.x.stream(stream, served, _NativeFraming(self.x.request_id))
        else:
            await self.x.stream(stream, served, _EventFraming(self.model, self.x.request_id))


def asks_beta(x: Exchange) -> bool:
    """Did the client call Anthropic's beta endpoint (`?beta=true`, as the SDK's beta methods and
    Claude Code do)? A native request then goes to the provider's beta endpoint too."""
    query = bytes(x.scope.get("query_string") or b"")
    return b"beta=true" in query.split(b"&")


def passed_headers(x: Exchange) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name.decode(), value.decode("latin-1"))
        for name in PASSED_HEADERS
        if (value := x.header(name)) is not None
    )


class _EventFraming:
    """OpenAI chunks (their typed views: nothing encoded or decoded) written as Anthropic's events."""

    def __init__(self, model: str, request_id: str) -> None:
        self.writer = EventWriter(model, request_id)

    def parts(
        self,
    ) -> tuple[Callable[[list[Chunk]], bytes], Callable[[], bytes], Callable[[TurnoutError], bytes]]:
        writer = self.writer
        return (lambda batch: b"".join(writer.chunk(c.view) for c in batch)), writer.finish, writer.error


class _NativeFraming:
    """Anthropic's own events, already framed: passed on as they are, but for message_stop, which
    the stream holds back so that the client sees the message end only once it is accounted for."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id

    def parts(self) -> tuple[Callable[[list[Chunk]], bytes], bytes, Callable[[TurnoutError], bytes]]:
        return _raw_events, MESSAGE_STOP, functools.partial(error_event, request_id=self.request_id)


def _raw_events(batch: list[Chunk]) -> bytes:
    return b"".join([c.raw for c in batch if c.raw is not None])
