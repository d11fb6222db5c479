"""Carry a request to the route's target. One attempt on the first target for now; retries,
strategies and failover build on this same interface."""

from __future__ import annotations

from dataclasses import dataclass

from turnout.domain.chat import ChatRequest
from turnout.domain.embeddings import EmbeddingRequest
from turnout.providers.base import ChatCall, ChatResult, ChatStream, EmbeddingCall, EmbeddingResult
from turnout.routing.catalog import Route, Target
from turnout.routing.first_chunk import PeekedStream, peek_first


@dataclass(slots=True)
class Served:
    """Which target answered, and how many attempts it took."""

    target: Target
    attempts: int = 1


class Router:
    async def complete(
        self, route: Route, request: ChatRequest, body: dict[str, object], *, wants_usage: bool
    ) -> tuple[ChatResult, Served]:
        target = route.targets[0]
        call = ChatCall(request, body, target.model, target.timeouts, wants_usage)
        return await target.adapter.complete(call), Served(target)

    async def stream(
        self, route: Route, request: ChatRequest, body: dict[str, object], *, wants_usage: bool
    ) -> tuple[PeekedStream, Served]:
        target = route.targets[0]
        call = ChatCall(request, body, target.model, target.timeouts, wants_usage)
        stream: ChatStream = await target.adapter.stream(call)
        return await peek_first(stream), Served(target)

    async def embed(
        self, route: Route, request: EmbeddingRequest, body: dict[str, object]
    ) -> tuple[EmbeddingResult, Served]:
        target = route.targets[0]
        call = EmbeddingCall(request, body, target.model, target.timeouts)
        return await target.adapter.embed(call), Served(target)
