"""The admission gate at the edge (`server.overload`): the model endpoints (token counting and the
pass-through to a provider's own API too) take a slot of the instance's concurrency limit before
anything of the request is read, and give it back when the answer is over; a request that finds no
slot and no room in the queue gets 503 with Retry-After in its API's own error format. Health,
admin and model listings are never gated.

A request's latency, for the limit, is the time from its admission to its response's head: the whole
answer for a JSON one, the first token for a stream (whose length says nothing about load). Only
answered requests (200) of the model endpoints count; a refusal or an error says nothing about
capacity."""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from typing import Any

from turnout.config.settings import OverloadSettings
from turnout.domain.errors import Overloaded, TurnoutError
from turnout.domain.principal import Priority
from turnout.inbound.anthropic_messages import error_json
from turnout.keys.index import KeyIndex
from turnout.limits.book import LimitBook
from turnout.limits.concurrency import ConcurrencyGate
from turnout.limits.priority import PRIORITIES, class_of
from turnout.server.exchange import Exchange, Send
from turnout.server.routes import Handler

LOWEST = len(PRIORITIES) - 1  # the rank of `batch`


def concurrency_gate(settings: OverloadSettings) -> ConcurrencyGate | None:
    return ConcurrencyGate(settings) if settings.enabled else None


class _TimedSend:
    """The exchange's `send`, noting when and with which status the response's head went out."""

    __slots__ = ("at", "send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0
        self.at = 0.0

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if not self.status and message["type"] == "http.response.start":
            self.status = message["status"]
            self.at = time.perf_counter()
        await self.send(message)


class Classes:
    """A caller's priority class, read from memory only: the key index and the teams' classes."""

    __slots__ = ("book", "keys")

    def __init__(self, keys: KeyIndex, book: LimitBook) -> None:
        self.keys = keys
        self.book = book

    def __call__(self, x: Exchange) -> Priority | None:
        """The caller's class: its key's, else its team's (a key the index does not know yet: the
        default; the pipeline authenticates the request properly)."""
        try:
            principal = self.keys.authenticate(x.credential())
        except TurnoutError:
            return None
        return class_of(principal.priority, self.book.team_priority(principal.team_id))


def anthropic_errors(x: Exchange) -> None:
    """Errors of this exchange in Anthropic's shape (as /v1/messages answers them)."""
    x.render_error = lambda error: error_json(error, x.request_id)


def gated(
    gate: ConcurrencyGate | None,
    classes: Classes,
    handler: Handler,
    *,
    anthropic: bool = False,
    errors: Callable[[Exchange], None] | None = None,
    measured: bool = True,
) -> Handler:
    """`handler`, run only once `gate` admits the request (unchanged without a gate). The latency of
    a request not `measured` (counting tokens, a provider's own API: neither is a model's answer)
    does not move the limit; it holds a slot all the same."""
    if gate is None:
        return handler

    async def admitted(x: Exchange) -> None:
        # with room even for the lowest class, who calls does not matter (no key lookup)
        if not gate.try_enter(LOWEST):
            rank = gate.rank(classes(x))
            try:
                await gate.enter(rank)
            except Overloaded:
                if anthropic:
                    anthropic_errors(x)
                if errors is not None:
                    errors(x)  # the API's own error shape
                raise
        if not measured:
            try:
                await handler(x)
            finally:
                gate.leave(None)
            return
        timed = _TimedSend(x.send)
        x.send = timed
        began = time.perf_counter()
        try:
            await handler(x)
        finally:
            gate.leave(timed.at - began if timed.status == 200 else None)

    return admitted
