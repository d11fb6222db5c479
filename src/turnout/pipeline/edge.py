"""What the web edge hands the pipeline, per kind of endpoint: the request (an inbound) and how to
answer it (a responder), so nothing in the pipeline knows about HTTP frameworks."""

from __future__ import annotations

from typing import Any, Protocol

from turnout.domain.media import ImageRequest, SpeechRequest, TranscriptionRequest
from turnout.domain.rate_limits import Quota
from turnout.providers.base import ChatResult, MediaResult, NativeRequest
from turnout.routing.relay import RelayStream
from turnout.routing.values import Served, Steering


class TracedInbound(Protocol):
    """What serving any model request asks of its inbound: its id, the client's trace context, and
    where to show the rate limits it was admitted under."""

    @property
    def request_id(self) -> str: ...

    def trace_context(self) -> tuple[str | None, str | None]: ...

    def rate_limited(self, quota: Quota) -> None: ...


class Inbound(Protocol):
    @property
    def request_id(self) -> str:
        """turnout's id for the request: the ledger's key, the x-request-id header."""
        ...

    @property
    def api(self) -> str:
        """The API it came in through: chat, messages or responses (for the ledger)."""
        ...

    def credential(self) -> str | None: ...

    def steering(self) -> Steering: ...

    def trace_context(self) -> tuple[str | None, str | None]:
        """The client's `traceparent` and `tracestate` (W3C trace context), if it sent them."""
        ...

    async def json(self) -> Any: ...

    def native(self) -> NativeRequest | None:
        """The request in the client's own wire format, for deployments that speak it."""
        ...

    def rate_limited(self, quota: Quota) -> None:
        """The rate limits the request was admitted under, for its answer's headers."""
        ...


class Answerer(Protocol):
    """Where an answer in one JSON body goes (embeddings, rerank, moderations)."""

    async def answer(self, body: bytes, served: Served) -> None: ...


class Responder(Answerer, Protocol):
    async def answer_chat(self, result: ChatResult, served: Served) -> None:
        """A chat answer, written in the client's API (its typed form read, or its bytes sent)."""
        ...

    async def answer_native(self, body: bytes, served: Served) -> None:
        """The upstream's own answer to the native request, passed on as it is."""
        ...

    async def stream(self, stream: RelayStream, served: Served) -> None:
        """Relay the stream, framed for the client's API (the stream accounts for itself before
        its end reaches the client)."""
        ...


class MediaInbound(Protocol):
    """An image, transcription or speech request as the edge reads it (JSON, or a form)."""

    @property
    def request_id(self) -> str: ...

    def credential(self) -> str | None: ...

    def steering(self) -> Steering: ...

    def trace_context(self) -> tuple[str | None, str | None]: ...

    async def media_request(
        self,
    ) -> tuple[ImageRequest | TranscriptionRequest | SpeechRequest, dict[str, Any]]:
        """The typed request and the body it came in (a form's: {})."""
        ...

    def rate_limited(self, quota: Quota) -> None: ...


class MediaResponder(Protocol):
    async def answer_media(self, result: MediaResult, served: Served) -> None:
        """The answer as the provider gave it: its bytes, or its audio streamed through."""
        ...


class PassthroughInbound(Protocol):
    """A pass-through request as the edge reads it: the path (as sent) and query under the
    provider's base URL, the client's headers a pass-through carries on, its body (any type)."""

    @property
    def request_id(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def query(self) -> str: ...

    def credential(self) -> str | None: ...

    def headers(self) -> list[tuple[str, str]]: ...

    async def body(self) -> bytes: ...

    def rate_limited(self, quota: Quota) -> None:
        """The rate limits the request was admitted under, for its answer's headers."""
        ...


class RateLimitedInbound(Protocol):
    def rate_limited(self, quota: Quota) -> None: ...


class PassthroughResponder(Protocol):
    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The answer's status and headers (the upstream's, those a pass-through passes back)."""
        ...

    async def write(self, chunk: bytes, more: bool) -> None: ...
