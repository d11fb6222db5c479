"""The adapter contract every wire format implements, and the values that cross it.

A call is canonical (OpenAI-shaped): the typed request plus the raw body it was parsed from, so a
same-format upstream gets every field faithfully and a translating one gets typed access.
Results are canonical too: an OpenAI-format body, kept as bytes when the upstream already spoke
OpenAI (forwarded without re-serialising), and the usage read from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from turnout.config.settings import Timeouts
from turnout.domain.chat import ChatRequest
from turnout.domain.embeddings import EmbeddingRequest
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

    @property
    def full_chat(self) -> bool:
        """Can it serve any chat request (so no request needs checking against it)?"""
        return self.streaming and self.tools and self.images and self.json_schema


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


@dataclass(slots=True)
class ChatResult:
    """A complete chat answer as an OpenAI `chat.completion` JSON body; `native` is the
    upstream's own answer, when it answered the call's native request."""

    body: bytes
    usage: Usage | None
    _data: dict[str, Any] | None = field(default=None, repr=False)
    native: bytes | None = None

    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = orjson.loads(self.body)
        return self._data


@dataclass(slots=True)
class EmbeddingResult:
    body: bytes
    usage: Usage | None


class ChatStream(Protocol):
    """An answer arriving chunk by chunk. Each item is a batch: every OpenAI
    `chat.completion.chunk` JSON that became available together (what one upstream read carried),
    so the edge writes them in one go. A batch is yielded as soon as it is complete; none waits
    for more.

    Iteration raises an `UpstreamError` if the upstream fails mid-way or ends without finishing.
    `usage` is set once the upstream has reported it (normally with the last chunk).

    A `native` stream answers the call's native request: its batches are the upstream's own
    events, already framed for the client (SSE bytes), not OpenAI chunks.
    """

    usage: Usage | None
    native: bool

    def __aiter__(self) -> AsyncIterator[list[bytes]]: ...

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
