"""The stream a client receives: one upstream's chunks, kept accounted to its deployment until
the end, and continued on another deployment if that upstream fails after the first byte."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from turnout.domain.chat import ChatRequest, parse_chat_request
from turnout.domain.errors import NoUpstreamAvailable, TurnoutError, UpstreamError
from turnout.domain.usage import Usage
from turnout.routing.catalog import Route
from turnout.routing.deployments import DeploymentState
from turnout.routing.first_chunk import PeekedStream, peek_first
from turnout.routing.resume import Partial, Rewriter, continuation_body, read_partial

if TYPE_CHECKING:
    from turnout.routing.router import Access, Candidate, Router, Served, Steering

log = logging.getLogger("turnout.routing")

FOLD_EVERY = 256


class RelayStream:
    """`first` is the first batch of chunks; iterate `rest` for the others. `served` names the
    deployment the stream started on (and counts every attempt, continuations included)."""

    def __init__(
        self,
        router: Router,
        route: Route,
        request: ChatRequest,
        body: dict[str, Any],
        steering: Steering,
        wants_usage: bool,
        peeked: PeekedStream,
        served: Served,
        access: Access | None = None,
    ) -> None:
        self._access = access
        self._router = router
        self._route = route
        self._request = request
        self._body = body
        self._steering = steering
        self._wants_usage = wants_usage
        self._stream = peeked
        self._serving = served  # whose deployment is in flight now
        self.served = served
        self.first = peeked.first
        # a native stream (the upstream's own events) cannot be continued in another format
        self.native = peeked.native
        self.resumable = route.policy.stream_resume and not (request.n or 1) > 1 and not self.native
        # what the client was sent, while the stream can be resumed: raw chunks, folded into
        # `_partial` (text only) every FOLD_EVERY chunks so a long answer does not pile up bytes
        self._sent: list[bytes] | None = list(peeked.first) if self.resumable else None
        self._partial = Partial()
        self._rewriter: Rewriter | None = None
        self._failed_state: DeploymentState | None = None
        self.resumed: list[dict[str, Any]] = []
        self.rest: AsyncIterator[list[bytes]] = self._relay()

    @property
    def usage(self) -> Usage | None:
        return self._stream.usage

    def sent_text(self) -> str | None:
        """The answer text the client has been sent, where that is tracked (resumable streams keep
        it to continue from): what billing counts tokens from when no usage was reported."""
        if self._sent is None:
            return None
        read_partial(self._sent, self._partial)
        self._sent.clear()
        return self._partial.text

    async def aclose(self) -> None:
        await self._stream.aclose()
        self._router.settle(self._serving)

    async def _relay(self) -> AsyncIterator[list[bytes]]:
        while True:
            sent = self._sent
            rewriter = self._rewriter
            try:
                async for batch in self._stream.rest:
                    if rewriter is not None:
                        batch = rewriter.batch(batch)
                        if not batch:
                            continue
                    if sent is not None:
                        sent.extend(batch)
                        if len(sent) >= FOLD_EVERY:
                            read_partial(sent, self._partial)
                            sent.clear()
                    yield batch
            except TurnoutError as error:
                first = await self._continue(error)
                if first:
                    if sent is not None:
                        sent.extend(first)
                    yield first
                continue
            usage = self._stream.usage
            self._router.settle(self._serving, usage.total_tokens if usage else 0)
            return

    async def _continue(self, error: TurnoutError) -> list[bytes]:
        """Fail over mid-stream: returns the continuation's first batch (rewritten); raises when the
        stream cannot be continued."""
        router, served = self._router, self._serving
        state = served.state
        self._failed_state = state
        await self._stream.aclose()
        if state is not None:
            now = router.clock()
            state.finished(now)
            if isinstance(error, UpstreamError):
                state.failed(now, error.message, error.retry_after)
            served.state = None
        partial = read_partial(self._sent, self._partial) if self._sent is not None else None
        if self._sent is not None:
            self._sent.clear()
        if not self.resumable or partial is None or not isinstance(error, UpstreamError):
            raise error
        if partial.finished:  # the answer was complete but its end (usage, [DONE]) was lost
            raise error
        if self.served.attempts >= self._route.policy.attempts:
            log.warning("stream of %s broke; no attempts left to continue it", self._route.requested)
            raise error
        if partial.obstacle is not None:
            log.warning(
                "stream of %s broke and cannot be continued (%s in progress)",
                self._route.requested,
                partial.obstacle,
            )
            raise error
        log.warning(
            "stream of %s broke on %s after %d characters (%s); continuing it elsewhere",
            self._route.requested,
            served.target.label,
            len(partial.text),
            error.message,
        )
        try:
            peeked, continued = await self._resume(partial)
        except NoUpstreamAvailable:
            raise error from None
        mark = {
            "from": served.target.label,
            "to": continued.target.label,
            "after_characters": len(partial.text),
            "cause": error.message,
        }
        self.resumed.append(mark)
        echoed = partial.text if continued.target.capabilities.continuation == "prefix" else ""
        self._rewriter = Rewriter(partial, echoed, {"resumed": self.resumed})
        self._stream = peeked
        self._serving = continued
        self.served.attempts += continued.attempts
        return self._rewriter.batch(peeked.first)

    async def _resume(self, partial: Partial) -> tuple[PeekedStream, Served]:
        router, route = self._router, self._route
        bodies: dict[str, tuple[ChatRequest, dict[str, Any]]] = {}

        async def attempt(c: Candidate) -> PeekedStream:
            t = c.target
            style = t.capabilities.continuation
            if style not in bodies:
                body = continuation_body(self._body, partial.text, style)
                bodies[style] = (parse_chat_request(body), body)
            request, body = bodies[style]
            call = t.call(request, body, self._wants_usage)
            return await peek_first(await t.adapter.stream(call))

        walk = router.plan(
            route, self._request, self._steering, avoid=self._failed_state, access=self._access
        )
        if walk.stages:  # the attempts this request has left, continuations included
            first = walk.stages[0]
            first.limit = max(0, first.limit - self.served.attempts)
        return await router.walk(route, walk, attempt, holds=True, retry=True)
