"""The adapter contract every wire format implements, and the values that cross it.

A call is canonical (OpenAI-shaped): the typed request plus the raw body it was parsed from, so a
same-format upstream gets every field faithfully and a translating one gets typed access.
Results are canonical too: a typed OpenAI completion (or chunks) built by a translating adapter and
encoded only at the edge, or, when the upstream already spoke OpenAI, its own bytes (forwarded
without re-serialising) with the usage read from them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from turnout.config.settings import Timeouts
from turnout.domain.accumulator import StreamAccumulator
from turnout.domain.chat import ChatRequest
from turnout.domain.completions import ChatCompletion, Chunk, answer_texts, completion_decoder, encoder
from turnout.domain.embeddings import EmbeddingRequest
from turnout.domain.errors import UpstreamProtocolError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.domain.media import ImageRequest, MediaApi, SpeechRequest, TranscriptionRequest
from turnout.domain.moderation import ModerationRequest
from turnout.domain.rerank import RerankRequest
from turnout.domain.usage import Usage


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter (for a model) can carry. A request needing more gets a 400 naming it."""

    streaming: bool = True
    tools: bool = True
    parallel_tool_calls: bool = True
    images: bool = True
    json_schema: bool = True
    usage_in_stream: bool = True
    embeddings: bool = True
    # How a stream cut after its first byte is continued here (see turnout.routing.resume).
    continuation: Literal["prefix", "continue_final_message", "instruction"] = "instruction"
    # The inbound wire format it can take whole (a NativeRequest of that format), if any.
    native_wire: str | None = None
    # It also takes a legacy /v1/completions request whole (OpenAI's `POST /completions`).
    legacy_completions: bool = False
    # The model ranks documents (/v1/rerank) or classifies content (/v1/moderations), as its
    # target declares (`supports:`): it then serves that and nothing else.
    rerank: bool = False
    moderation: bool = False
    # What its model does besides chat (declared per model: `supports:` or the price table).
    image_generation: bool = False
    transcription: bool = False
    speech: bool = False
    media_apis: bool = False  # its provider serves those endpoints (OpenAI's format)
    # Does it serve chat (and embeddings) at all: not a reranker, not a moderation model, not an
    # image or audio model (`supports: {chat: false}`, implied for the price table's)? (Set once
    # here, as the router reads it for every deployment of every chat request.)
    chat: bool = True

    def __post_init__(self) -> None:
        if self.chat and (self.rerank or self.moderation):
            object.__setattr__(self, "chat", False)

    def takes(self, wire: str) -> bool:
        """Can it take a native request of `wire` whole?"""
        return self.native_wire == wire or (wire == "completions" and self.legacy_completions)

    @property
    def full_chat(self) -> bool:
        """Can it serve any chat request (so no request needs checking against it)?"""
        return self.streaming and self.tools and self.images and self.json_schema and self.chat


@dataclass(frozen=True, slots=True)
class NativeRequest:
    """The client's request in its own wire format (e.g. Anthropic's, on /v1/messages). A
    deployment speaking that format sends it on whole and answers in it, so nothing the
    canonical form cannot carry is lost; any other deployment uses the canonical request."""

    wire: str
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()  # the client's format-specific headers to pass on
    # What only a deployment of this wire format can carry (the fields' names, for the 400 when
    # the model has no such deployment); deployments of other formats are skipped for it.
    requires: tuple[str, ...] = ()
    beta: bool = False  # the client asked for the format's beta endpoint (Anthropic's `?beta=true`)


@runtime_checkable
class CountsTokens(Protocol):
    """An adapter whose provider counts a native request's prompt tokens itself (Anthropic's
    `POST /v1/messages/count_tokens`): the provider's answer, as it came."""

    async def count_tokens(self, native: NativeRequest, model: str, timeouts: Timeouts) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ChatCall:
    request: ChatRequest
    body: dict[str, Any]
    model: str
    timeouts: Timeouts
    client_wants_usage: bool = False
    native: NativeRequest | None = None
    # the deployment's own policy for parameters its provider lacks (None: the provider's)
    unsupported_params: Literal["reject", "drop"] | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingCall:
    request: EmbeddingRequest
    body: dict[str, Any]
    model: str
    timeouts: Timeouts


@dataclass(frozen=True, slots=True)
class RerankCall:
    request: RerankRequest
    model: str
    timeouts: Timeouts
    request_id: str  # turnout's id for the request: the answer's `id` where the provider gives none


@dataclass(frozen=True, slots=True)
class ModerationCall:
    request: ModerationRequest
    body: dict[str, Any]
    model: str
    timeouts: Timeouts


@dataclass(slots=True)
class ChatResult:
    """A complete chat answer: the typed `completion` a translating adapter built, or the `raw`
    `chat.completion` bytes of an OpenAI-format upstream (read typed only if asked: `typed`);
    `native` is the upstream's own answer, when it answered the call's native request."""

    usage: Usage | None
    completion: ChatCompletion | None = None
    raw: bytes | None = None
    native: bytes | None = None

    @property
    def body(self) -> bytes:
        """The answer as OpenAI JSON: the upstream's bytes, or the completion encoded (here, at
        the edge, once)."""
        if self.raw is None:
            self.raw = encoder.encode(self.completion)
        return self.raw

    def typed(self) -> ChatCompletion:
        """The answer as a typed completion (an OpenAI upstream's bytes decoded, once)."""
        if self.completion is None:
            try:
                self.completion = completion_decoder.decode(self.raw or b"")
            except DECODE_ERRORS:
                raise UpstreamProtocolError(
                    "The provider answered with a chat completion turnout cannot read."
                ) from None
        return self.completion

    def texts(self) -> list[str]:
        """What the answer's choices produced, to count (nothing when it cannot be read)."""
        try:
            return answer_texts(self.typed())
        except UpstreamProtocolError:
            return []


@dataclass(slots=True)
class EmbeddingResult:
    body: bytes
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class MediaCall:
    """An image, transcription or speech request (`api`) for one deployment's `model`."""

    api: MediaApi
    request: ImageRequest | TranscriptionRequest | SpeechRequest
    body: dict[str, Any]
    model: str
    timeouts: Timeouts


@dataclass(slots=True)
class MediaResult:
    """An image, transcription or speech answer: its content type, and its bytes (`body`) or, for
    speech, the audio as it arrives (`chunks`); what it is billed for."""

    usage: Usage | None
    content_type: str
    body: bytes = b""
    chunks: AsyncIterator[bytes] | None = None
    release: Callable[[], None] | None = None  # lets go of the upstream connection (speech)

    async def aclose(self) -> None:
        """The answer is read, or nobody will read it (a client that left, a hedge's loser): its
        connection goes back to its pool if it was read to its end, and is dropped otherwise."""
        if self.release is not None:
            self.release()


@runtime_checkable
class MakesMedia(Protocol):
    """An adapter whose provider serves OpenAI's image generation, transcription and speech."""

    async def media(self, call: MediaCall) -> MediaResult: ...


@dataclass(slots=True)
class RerankResult:
    """The answer in turnout's rerank shape (domain/rerank.py), and what it used: the search units
    the provider billed (or turnout counted), and tokens where the provider counts them."""

    body: bytes
    usage: Usage


@dataclass(slots=True)
class ModerationResult:
    """OpenAI's moderation answer, as the provider gave it (moderation reports no usage)."""

    body: bytes


@runtime_checkable
class Reranks(Protocol):
    """An adapter whose provider ranks documents against a query (Cohere's `/v2/rerank`, Bedrock's
    Agent Runtime `Rerank`, an OpenAI-compatible server's `/rerank`)."""

    # whether its rerank API takes `max_tokens_per_doc` (Cohere's does): a request carrying it
    # skips the deployments whose API does not
    limits_document_tokens: bool

    async def rerank(self, call: RerankCall) -> RerankResult: ...


@runtime_checkable
class Moderates(Protocol):
    """An adapter whose provider answers OpenAI's `POST /moderations`."""

    async def moderate(self, call: ModerationCall) -> ModerationResult: ...


class ChatStream(Protocol):
    """An answer arriving chunk by chunk. Each item is a batch: every chunk that became available
    together (what one upstream read carried), so the edge writes them in one go. A batch is
    yielded as soon as it is complete; none waits for more. Each chunk is typed (`Chunk.view`),
    with the upstream's own bytes when it spoke OpenAI (`Chunk.raw`, passed on as they came).

    Iteration raises an `UpstreamError` if the upstream fails mid-way or ends without finishing.
    `answer` folds every chunk as it is read (its usage is set once the upstream has reported it,
    normally with the last chunk); `usage` is the same as `answer.usage`.

    A `native` stream answers the call's native request: its chunks' `raw` are the upstream's own
    events, already framed for the client (SSE bytes); their views, when they have one, are what
    the event means in OpenAI's terms (folded into `answer` like any other).
    """

    answer: StreamAccumulator
    native: bool

    @property
    def usage(self) -> Usage | None: ...

    def __aiter__(self) -> AsyncIterator[list[Chunk]]: ...

    async def aclose(self) -> None: ...


class Adapter(Protocol):
    """One configured provider. Built once from settings; safe for concurrent calls."""

    name: str
    capabilities: Capabilities

    async def complete(self, call: ChatCall) -> ChatResult: ...

    async def stream(self, call: ChatCall) -> ChatStream: ...

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult: ...

    async def list_models(self) -> list[str]: ...

    async def aclose(self) -> None: ...
