"""Carry a request to a deployment that can answer it, failing over until one does.

A request walks *stages*: its alias, then each alias of the alias's fallback chain. Within a
stage the deployments are ordered by the alias's strategy (and filtered by the client's pin or
tags, and by what they can serve); the walk takes the available deployment tried least so far, so
it moves to another deployment before it retries one. A deployment is unavailable while its
circuit breaker is open, while it is cooling down after a Retry-After, or when it is at its known
rpm/tpm. Each stage has its alias's `attempts`; every attempt after a client request's first is
also paid for from the gateway-wide retry budget, so an outage never becomes a retry storm.

Failures are judged by kind: a provider's 429 cools its deployment down for its Retry-After (busy
is not broken: the breaker is not told); an upstream failure (timeout, connection, 5xx, malformed
answer, bad credentials) counts against the deployment's breaker and moves on — bad credentials
never to the same deployment again in that request, and a non-streamed answer cut off mid-body
(`UpstreamAnswerCut`: generated, so billed) to no deployment at all; a caller error ends the walk
at once, except a context-window overflow (which switches to the alias's context-window fallbacks)
and, opt-in, a content-policy refusal (its own chain). Retrying the same deployment waits with
exponential backoff and full jitter. When every deployment a request could use has its breaker
open, the one whose breaker would reopen soonest is tried anyway (panic routing, within the
request's attempts and the retry budget): a breaker steers traffic, it never turns a struggling
provider into an outage. If nothing could be tried (cooling down as providers asked, at capacity,
or taken out of service) the answer is an immediate 503 with Retry-After at the soonest recovery;
if the only obstacle is a provider's short Retry-After, the walk waits for it once (up to
`max_retry_after`).

Every attempt is an `AttemptRecord` in the request's tally, so the ledger writes each one under its
own deployment: the failed, the cancelled (a hedge's loser) and the one that answered.

Streams are committed only once their first chunk has arrived, so a failure before the first byte
is just another failover. Optionally a request is hedged: when its first deployment has not
produced a first token within `hedge_after`, a second one is started and the first to answer wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, Literal, TypeVar

import msgspec

from turnout.config.settings import RoutingSettings
from turnout.domain.chat import ChatRequest, counted_usage, parse_chat_request
from turnout.domain.cut_answer import cut_answer_usage
from turnout.domain.embeddings import EmbeddingRequest
from turnout.domain.errors import (
    InvalidRequest,
    NoUpstreamAvailable,
    Refusal,
    TurnoutError,
    UnsupportedFeature,
    UpstreamAnswerCut,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
)
from turnout.domain.media import CAPABILITY, ImageRequest, MediaApi, SpeechRequest, TranscriptionRequest
from turnout.domain.moderation import ModerationRequest
from turnout.domain.rate_limits import RateLimited
from turnout.domain.rerank import RerankRequest
from turnout.observability.tracing import UPSTREAM_TRACE_HEADERS
from turnout.providers.base import (
    Capabilities,
    ChatResult,
    EmbeddingCall,
    EmbeddingResult,
    MakesMedia,
    MediaCall,
    MediaResult,
    Moderates,
    ModerationCall,
    ModerationResult,
    RerankCall,
    RerankResult,
    Reranks,
)
from turnout.routing.capabilities import first_unmet, fits_context, fits_output, needs
from turnout.routing.catalog import Catalog, Route, Target
from turnout.routing.deployments import DeploymentRegistry, DeploymentState, Lease
from turnout.routing.first_chunk import PeekedStream, peek_first
from turnout.routing.game_day import Drill
from turnout.routing.in_flight import InFlight
from turnout.routing.relay import Continuation, RelayStream
from turnout.routing.resume import Partial, continuation_body
from turnout.routing.retry import RetryBudget, backoff
from turnout.routing.strategies import order
from turnout.routing.values import Attempt, AttemptRecord, Call, Candidate, Served, Stage, Steering, Walk

log = logging.getLogger("turnout.routing")

T = TypeVar("T")
# what a request asks a deployment to do
Task = Literal["chat", "embeddings", "rerank", "moderation", "image_generation", "transcription", "speech"]


def _can(t: Target, caps: Capabilities, task: Task, request: object = None) -> bool:
    """Can the deployment do `task` (other than chat): embeddings on a chat model, rerank on a
    declared reranker whose provider has a rerank API (and takes the request's document token
    limit, if it sets one), moderation likewise, images and audio on a model declared (or listed)
    as doing it whose provider serves OpenAI's endpoints for it?"""
    if task == "embeddings":
        return caps.embeddings and caps.chat
    if task == "rerank":
        adapter = t.adapter
        if not (caps.rerank and isinstance(adapter, Reranks)):
            return False
        limited = isinstance(request, RerankRequest) and request.max_tokens_per_doc is not None
        return adapter.limits_document_tokens or not limited
    if task == "moderation":
        return caps.moderation and isinstance(t.adapter, Moderates)
    return bool(getattr(caps, task)) and isinstance(t.adapter, MakesMedia)


def refusal_of(error: TurnoutError) -> Refusal | None:
    """The refusal kind a provider's error module gave its answer, if any (routing reads no
    messages)."""
    return error.refusal if isinstance(error, UpstreamRejected) else None


TIMER_SLACK = 0.005  # event-loop timers may fire a little early: wake after the cool-down, not in it


class Router:
    def __init__(
        self,
        catalog: Catalog,
        settings: RoutingSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.deployments = DeploymentRegistry(
            settings.breaker, clock, configured=catalog.configured_deployments()
        )
        self.budget = RetryBudget(settings.retries, clock)
        self.clock = clock
        self._sleep = sleep
        self._draw = draw
        self.removed: frozenset[str] = frozenset()  # providers taken out of service (admin API)
        self.drills: tuple[Drill, ...] = ()  # game days under way (governance/game_days.py)
        self.on_rollback: Callable[[Drill], None] | None = None  # told when a drill tips over
        self.in_flight = InFlight()  # the streams being relayed (a shutdown cuts them short)

    # ------------------------------------------------------------------ operations

    async def complete(self, call: Call, tally: list[AttemptRecord]) -> tuple[ChatResult, Served]:
        request = call.chat

        async def attempt(c: Candidate, record: AttemptRecord) -> ChatResult:
            t = c.target
            try:
                result = await t.adapter.complete(t.call(request, call.body, False, call.native))
            except UpstreamAnswerCut as cut:  # generated and billed: counted from what arrived
                received = cut.received
                record.estimate = lambda: cut_answer_usage(request, received)
                raise
            record.ended(200, result.usage)
            if result.usage is None:  # counted by turnout: the prompt and every answer's text
                record.estimate = lambda: counted_usage(request, result.texts())
            return result

        walk = self.plan(call, tally)
        result, served = await self._walk_drilled(call.route, walk, attempt)
        self.settle(served, result.usage.total_tokens if result.usage else 0)  # counts toward its tpm
        return result, served

    async def stream(self, call: Call, tally: list[AttemptRecord]) -> tuple[RelayStream, Served]:
        """The stream's deployment stays `in_flight` (its lease held) until the stream ends or is
        closed; a break after the first byte is continued through `continue_elsewhere`."""
        request = call.chat

        async def attempt(c: Candidate, record: AttemptRecord) -> PeekedStream:
            t = c.target
            stream = await t.adapter.stream(t.call(request, call.body, call.wants_usage, call.native))
            return await peek_first(stream)  # committed only once the first chunk is here

        walk = self.plan(call, tally)
        walk.streamed = True
        peeked, served = await self._walk_drilled(call.route, walk, attempt)
        continuation = self._continuation(call, tally)
        relay = RelayStream(call, peeked, served, tally, continuation, self.clock, self.in_flight)
        served.resumable = relay.resumable
        return relay, served

    async def embed(self, call: Call, tally: list[AttemptRecord]) -> tuple[EmbeddingResult, Served]:
        request = call.request
        assert isinstance(request, EmbeddingRequest)

        async def attempt(c: Candidate, record: AttemptRecord) -> EmbeddingResult:
            t = c.target
            result = await t.adapter.embed(EmbeddingCall(request, call.body, t.model, t.timeouts))
            record.ended(200, result.usage)
            return result

        walk = self.plan(call, tally, task="embeddings")
        result, served = await self._walk_drilled(call.route, walk, attempt)
        self.settle(served, result.usage.total_tokens if result.usage else 0)  # counts toward its tpm
        return result, served

    async def media(
        self, call: Call, tally: list[AttemptRecord], api: MediaApi
    ) -> tuple[MediaResult, Served]:
        """An image, transcription or speech request, to the deployments whose model does it."""
        request = call.request
        assert isinstance(request, ImageRequest | TranscriptionRequest | SpeechRequest)

        async def attempt(c: Candidate, record: AttemptRecord) -> MediaResult:
            t = c.target
            adapter = t.adapter
            assert isinstance(adapter, MakesMedia)  # (the plan keeps only deployments that do it)
            result = await adapter.media(MediaCall(api, request, call.body, t.model, t.timeouts))
            record.ended(200, result.usage)
            return result

        walk = self.plan(call, tally, task=CAPABILITY[api])
        result, served = await self._walk_drilled(call.route, walk, attempt)
        self.settle(served)
        return result, served

    async def rerank(
        self, call: Call, tally: list[AttemptRecord], request_id: str
    ) -> tuple[RerankResult, Served]:
        request = call.request
        assert isinstance(request, RerankRequest)

        async def attempt(c: Candidate, record: AttemptRecord) -> RerankResult:
            t = c.target
            assert isinstance(t.adapter, Reranks)  # (the plan keeps only deployments that rerank)
            result = await t.adapter.rerank(RerankCall(request, t.model, t.timeouts, request_id))
            record.ended(200, result.usage)
            return result

        walk = self.plan(call, tally, task="rerank")
        if not walk.stages and request.max_tokens_per_doc is not None:
            # a 400 naming the limit only when it is what left no deployment (not one taken out)
            unlimited = replace(call, request=msgspec.structs.replace(request, max_tokens_per_doc=None))
            if self.plan(unlimited, [], task="rerank").stages:
                raise UnsupportedFeature(
                    f"'max_tokens_per_doc' is Cohere's: none of the rerankers of '{call.route.requested}' "
                    "can be given it.",
                    param="max_tokens_per_doc",
                )
        result, served = await self._walk_drilled(call.route, walk, attempt)
        self.settle(served, result.usage.total_tokens)
        return result, served

    async def moderate(self, call: Call, tally: list[AttemptRecord]) -> tuple[ModerationResult, Served]:
        request = call.request
        assert isinstance(request, ModerationRequest)

        async def attempt(c: Candidate, record: AttemptRecord) -> ModerationResult:
            t = c.target
            assert isinstance(t.adapter, Moderates)  # (the plan keeps only deployments that moderate)
            result = await t.adapter.moderate(ModerationCall(request, call.body, t.model, t.timeouts))
            record.ended(200)
            return result

        walk = self.plan(call, tally, task="moderation")
        result, served = await self._walk_drilled(call.route, walk, attempt)
        self.settle(served)
        return result, served

    def settle(self, served: Served, tokens: int = 0) -> None:
        """The answer is complete: the deployment's request is no longer in flight."""
        if served.lease is not None:
            served.lease.release(tokens)
            served.lease = None

    def _continuation(self, call: Call, tally: list[AttemptRecord]) -> Continuation:
        """How the relay continues a stream that broke after its first byte: a walk over the
        deployments this request has attempts left on (the one that failed last), retrying."""

        async def continue_elsewhere(
            partial: Partial, failed: DeploymentState | None, used: int
        ) -> tuple[PeekedStream, Served]:
            bodies: dict[str, tuple[ChatRequest, dict[str, Any]]] = {}

            async def attempt(c: Candidate, record: AttemptRecord) -> PeekedStream:
                t = c.target
                style = t.capabilities.continuation
                if style not in bodies:
                    body = continuation_body(call.body, partial.text, style)
                    bodies[style] = (parse_chat_request(body), body)
                request, body = bodies[style]
                return await peek_first(await t.adapter.stream(t.call(request, body, call.wants_usage)))

            walk = self.plan(call, tally, avoid=failed)
            walk.streamed = True
            if walk.stages:  # the attempts this request has left, continuations included
                first = walk.stages[0]
                first.limit = max(0, first.limit - used)
            return await self.walk(call.route, walk, attempt, retry=True)

        return continue_elsewhere

    # ------------------------------------------------------------------ planning

    def plan(
        self,
        call: Call,
        tally: list[AttemptRecord],
        *,
        chain: str = "errors",
        avoid: DeploymentState | None = None,
        task: Task = "chat",
    ) -> Walk:
        """The stages for the call's route: its own deployments (unless `chain` names a refusal
        chain, which replaces them), then the fallback aliases of `chain` the caller may use —
        all of them when the alias says its fallbacks are part of it (`fallbacks_included`)."""
        route, steering, access = call.route, call.steering, call.access
        request = call.request if isinstance(call.request, ChatRequest) else None
        stages: list[Stage] = []
        out, drills = self.removed, self._drilled(call) if self.drills else ()
        if drills:  # a game day takes its provider out for this request
            out = out | {d.provider for d in drills}
        if chain == "errors":
            stage = self._stage(route, call, avoid, task, out)
            if not stage.candidates:
                _refuse_steering(route, steering)
            stages.append(stage)
        if steering.deployment is None:  # a pinned request goes to its deployment or nowhere
            for alias in route.policy.chain(chain):
                if access is not None and not route.policy.fallbacks_included and not access(alias):
                    log.info(
                        "%s: fallback '%s' skipped: the caller's key may not use it", route.requested, alias
                    )
                    continue
                fallback = self.catalog.resolve(alias)
                if fallback is not None:
                    stages.append(self._stage(fallback, call, avoid, task, out))
        return Walk(
            [s for s in stages if s.candidates],
            request,
            access=access,
            tally=tally,
            trace=call.trace,
            drills=drills,
        )

    def _drilled(self, call: Call) -> tuple[Drill, ...]:
        """The game days that apply to this request: its team or its share, and its alias has a
        deployment of their provider."""
        now = time.time()
        targets = call.route.targets
        return tuple(
            d
            for d in self.drills
            if d.applies(call.team, call.request_id, now) and any(t.provider == d.provider for t in targets)
        )

    async def _walk_drilled(self, route: Route, walk: Walk, attempt: Attempt[T]) -> tuple[T, Served]:
        """`walk`, its outcome counted by the game days that affected it: an upstream failure is an
        error (a caller's error is not counted); a drill whose error rate tips over is rolled back."""
        if not walk.drills:
            return await self.walk(route, walk, attempt)
        try:
            outcome = await self.walk(route, walk, attempt)
        except TurnoutError as error:
            if error.status >= 500 or error.status == 429:
                self._drills_saw(walk.drills, failed=True)
            raise
        self._drills_saw(walk.drills, failed=False)
        return outcome

    def _drills_saw(self, drills: tuple[Drill, ...], *, failed: bool) -> None:
        for drill in drills:
            if drill.ended(failed) and self.on_rollback is not None:
                log.warning(
                    "game day %s rolled back: %.0f%% of %d affected requests failed (threshold %.0f%%)",
                    drill.id,
                    drill.observed_rate * 100,
                    drill.requests,
                    drill.error_rate * 100,
                )
                self.on_rollback(drill)

    def _stage(
        self,
        route: Route,
        call: Call,
        avoid: DeploymentState | None,
        task: Task,
        out: frozenset[str],
    ) -> Stage:
        candidates = [
            Candidate(t, self.deployments.get(t.provider, t.model, t.label, t.rpm, t.tpm))
            for t in route.targets
            if self._may_serve(t, call, task, out)
        ]
        ordered = order(route.policy.strategy, candidates, self._draw)
        if avoid is not None:  # the deployment that just failed goes last
            ordered.sort(key=lambda c: c.state is avoid)
        return Stage(route.alias, ordered, route.policy.attempts)

    def _may_serve(self, t: Target, call: Call, task: Task, out: frozenset[str]) -> bool:
        """Can this deployment take the call: in service (`out`: the providers out of service for
        it), of the wire format the request needs, the one the client pinned or carrying its tags,
        able to carry what the request holds?"""
        native, steering = call.native, call.steering
        if out and t.provider in out:
            return False  # taken out of service through the admin API (or for a game day)
        if native is not None and native.requires and not t.capabilities.takes(native.wire):
            return False  # the request holds what only its own format can carry
        if steering.deployment is not None and steering.deployment not in (t.label, t.provider):
            return False
        if not steering.tags <= t.tags:
            return False
        caps = t.capabilities
        if task != "chat":
            return _can(t, caps, task, call.request)
        if not caps.chat:
            return False  # a reranker, a moderation model, an image or audio model
        request = call.request
        if not isinstance(request, ChatRequest):
            return True
        if not caps.full_chat and first_unmet(caps, needs(request)) is not None:
            return False
        if t.context_window is not None and not fits_context(t.context_window, request):
            return False
        return fits_output(t.max_output_tokens, request)  # its model can give an answer that long

    # ------------------------------------------------------------------ the walk

    async def walk(
        self, route: Route, walk: Walk, attempt: Attempt[T], *, retry: bool = False
    ) -> tuple[T, Served]:
        """Try the walk's deployments until one answers (the winner's lease stays held, in
        `Served`, until `settle`). `retry`: this walk continues a request that has already been
        attempted (every attempt is a retry). When every deployment it could use has its breaker
        open, the likeliest to have recovered is tried anyway (panic routing)."""
        if not retry:
            self.budget.record_request()
        for panic in (False, True):
            for stage in walk.stages:
                while stage.attempts < stage.limit:
                    candidate = _pick(stage, self.clock(), panic=panic)
                    if candidate is None:
                        break
                    if not await self._claimed(candidate):
                        continue
                    if panic:
                        log.warning(
                            "%s: every deployment's breaker is open; trying %s, the likeliest to recover",
                            route.requested,
                            candidate.target.label,
                        )
                    if (walk.attempts or retry) and not self.budget.try_spend():
                        log.warning(
                            "retry budget spent: not retrying %s (%d attempts)",
                            route.requested,
                            walk.attempts,
                        )
                        raise self._give_up(route, walk)
                    if candidate.tries:
                        await self._sleep(backoff(candidate.tries, self.settings.retries, self._draw))
                        # what was left of its grant may have been given back meanwhile (and be
                        # another instance's now): the capacity is claimed again
                        if not await self._claimed(candidate):
                            continue
                    outcome = await self._try(route, walk, stage, candidate, attempt, panic)
                    if outcome is not None:
                        return outcome
                    if walk.over:  # a failure that must not be tried again anywhere
                        raise self._give_up(route, walk)
        wait = self._short_wait(walk)
        if wait is not None:
            walk.waited = True
            log.info("%s: every deployment is cooling down; waiting %.2f s as asked", route.requested, wait)
            await self._sleep(wait + TIMER_SLACK)
            return await self.walk(route, walk, attempt, retry=True)
        raise self._give_up(route, walk)

    async def _claimed(self, c: Candidate) -> bool:
        """May a request be sent on `c` now, capacity-wise (within this instance's grant, or once
        Redis granted more)? If not, it is marked held: the next pick passes it by."""
        if not c.state.out_of_grant() or await self.deployments.claim(c.state):
            return True
        c.held = True
        return False

    def _begin(self, walk: Walk, stage: Stage, c: Candidate) -> tuple[Lease, AttemptRecord]:
        """An attempt starts: counted in the stage, the walk and the tally; its deployment leased."""
        stage.attempts += 1
        walk.attempts += 1
        c.tries += 1
        record = AttemptRecord(len(walk.tally) + 1, c.target)
        walk.tally.append(record)
        if walk.trace is not None:
            t = c.target
            record.span = walk.trace.attempt(t.provider, t.model, t.label, record.number)
        return c.state.lease(self.clock), record

    async def _try(
        self, route: Route, walk: Walk, stage: Stage, c: Candidate, attempt: Attempt[T], panic: bool
    ) -> tuple[T, Served] | None:
        state = c.state
        if panic:
            state.breaker.panic_probe()
        elif not state.breaker.allow():
            c.tries += 1  # lost the half-open probe slot to another request: count it as tried
            return None
        hedge_after = route.policy.hedge_after
        if hedge_after is not None and not panic:
            partner = _pick(stage, self.clock(), exclude=c)
            if partner is not None:
                return await self._hedged(route, walk, stage, c, partner, attempt, hedge_after)
        lease, record = self._begin(walk, stage, c)
        started = self.clock()
        try:
            result = await (attempt(c, record) if record.span is None else _traced(attempt, c, record))
        except TurnoutError as error:
            lease.release()
            record.ended(error.status, reason=error.reason)
            self._failed(route, walk, stage, c, error)
            return None
        except BaseException:
            lease.release()
            self._abandoned(walk, record)
            state.breaker.release_probe()
            raise
        return self._won(walk, c, started, result, lease, record)

    def _abandoned(self, walk: Walk, record: AttemptRecord) -> None:
        """An attempt cancelled before it answered (the client left, or a hedge lost: 499, as nginx
        logs a client that left; the gateway's shutdown cut it short: 503): the provider had the
        prompt, so it is counted."""
        status, reason = self.in_flight.cancelled()
        record.ended(status, reason=reason)
        request = walk.request
        if request is not None and record.usage is None:
            record.estimate = lambda: counted_usage(request)

    def _won(
        self,
        walk: Walk,
        c: Candidate,
        started: float,
        result: T,
        lease: Lease,
        record: AttemptRecord,
        hedged: bool = False,
    ) -> tuple[T, Served]:
        now = self.clock()
        record.status = 200  # answered; a stream's record is ended when the stream ends
        served = Served(c.target, walk.attempts, walk.failures, lease, started, hedged, record=record)
        if walk.streamed:  # judged when the stream ends (RelayStream)
            c.state.answered(now - started)
            served.verdict_pending = True
        else:
            c.state.succeeded(now - started)
        if walk.failures:
            log.info("served %s on %s after %d attempts", c.target.model, c.target.label, walk.attempts)
        return result, served

    def _failed(self, route: Route, walk: Walk, stage: Stage, c: Candidate, error: TurnoutError) -> None:
        """Judge a failed attempt: the deployment busy (cool down, move on), its fault (breaker,
        move on; never the same deployment again for bad credentials), a refusal with its own
        chain (switch chains), or the caller's (raise)."""
        state = c.state
        if isinstance(error, UpstreamRateLimited):
            state.rate_limited(self.clock(), error.message, error.retry_after_s)
            self._note(route, walk, c, error)
            return
        if isinstance(error, UpstreamError) or (isinstance(error, UpstreamRejected) and error.retryable):
            state.failed(self.clock(), error.message, _retry_after(error))
            if isinstance(error, UpstreamAuthError):
                c.spent = True  # its credentials will not be better on the next try
            self._note(route, walk, c, error)
            if not error.retryable:  # an answer cut after it was generated: billed, not asked again
                walk.over = True
            return
        state.breaker.release_probe()  # it answered, so it is up; the request is at fault
        if not self._switch_chain(route, walk, stage, c, error):
            error.attempts = walk.attempts
            raise error

    def _note(self, route: Route, walk: Walk, c: Candidate, error: TurnoutError) -> None:
        walk.failures.append(f"{c.target.label}: {error.message}")
        walk.last_error = error
        log.warning(
            "%s failed on %s (attempt %d): %s", route.requested, c.target.label, walk.attempts, error.message
        )

    def _switch_chain(
        self, route: Route, walk: Walk, stage: Stage, c: Candidate, error: TurnoutError
    ) -> bool:
        """A refusal with its own fallback chain (context window; content policy, opt-in) moves
        the walk onto that chain; False when there is none to move to."""
        chain = refusal_of(error)
        if chain == "content_policy" and not route.policy.content_policy_fallbacks:
            return False
        if chain is None or walk.chain != "errors" or walk.request is None:
            return False
        call = Call(route, walk.request, {}, access=walk.access)
        fallback = self.plan(call, walk.tally, chain=chain)
        if not fallback.stages:
            return False
        log.info(
            "%s refused by %s (%s); trying its %s fallbacks",
            route.requested,
            c.target.label,
            error.code,
            chain,
        )
        walk.failures.append(f"{c.target.label}: {error.message}")
        walk.last_error = error
        walk.chain = chain
        stage.limit = stage.attempts  # this alias cannot serve it: on to the chain
        walk.stages[walk.stages.index(stage) + 1 :] = fallback.stages
        return True

    async def _hedged(
        self,
        route: Route,
        walk: Walk,
        stage: Stage,
        first: Candidate,
        second: Candidate,
        attempt: Attempt[T],
        delay: float,
    ) -> tuple[T, Served] | None:
        """Start `first`; if it has not answered within `delay`, start `second` as well. The first
        to answer wins and the other is cancelled (its attempt recorded); if one fails, the other
        may still win."""
        loop = asyncio.get_running_loop()
        running: dict[asyncio.Task[T], tuple[Candidate, float, Lease, AttemptRecord]] = {}

        def launch(c: Candidate) -> None:
            lease, record = self._begin(walk, stage, c)
            call = attempt(c, record) if record.span is None else _traced(attempt, c, record)
            running[loop.create_task(call)] = (c, self.clock(), lease, record)

        launch(first)
        hedged = False
        try:
            done, _ = await asyncio.wait(running, timeout=delay)
            if (
                not done
                and second.state.available(self.clock())
                and await self._may_hedge_on(second, running)
                and self.budget.try_spend()
                and second.state.breaker.allow()
            ):
                log.info(
                    "%s: no answer from %s in %.0f ms; hedging on %s",
                    route.requested,
                    first.target.label,
                    delay * 1000,
                    second.target.label,
                )
                launch(second)
                hedged = True
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    c, started, lease, record = running.pop(task)
                    error = task.exception()
                    if error is None:
                        return self._won(walk, c, started, task.result(), lease, record, hedged)
                    lease.release()
                    if not isinstance(error, TurnoutError):
                        raise error
                    record.ended(error.status, reason=error.reason)
                    self._failed(route, walk, stage, c, error)
            return None
        finally:
            for task, (c, _, lease, record) in running.items():
                task.cancel()
                lease.release()
                self._abandoned(walk, record)
                c.state.breaker.release_probe()
            for task in running:
                with contextlib.suppress(BaseException):
                    result = await task
                    closer = getattr(result, "aclose", None)
                    if closer is not None:
                        await closer()

    async def _may_hedge_on(self, second: Candidate, running: Mapping[asyncio.Task[Any], object]) -> bool:
        """May the hedge start on `second` (the first attempt still running)? Within its deployment's
        grant, or once Redis granted more: a hedge is a request to that deployment like any other."""
        return await self.deployments.claim(second.state) and not any(task.done() for task in running)

    # ------------------------------------------------------------------ giving up

    def _short_wait(self, walk: Walk) -> float | None:
        """If the only obstacle is a provider's Retry-After within `max_retry_after` (told to this
        request or an earlier one), how long to wait (once per request) before trying again."""
        if walk.waited:
            return None
        now = self.clock()
        waits = [
            c.state.cooldown_until - now
            for s in walk.stages
            if s.attempts < s.limit
            for c in s.candidates
            if not c.spent and c.state.breaker.available() and c.state.has_capacity(now)
        ]
        if not waits:
            return None
        wait = min(waits)
        if wait <= 0 or wait > self.settings.retries.max_retry_after:
            return None
        return wait

    def _give_up(self, route: Route, walk: Walk) -> TurnoutError:
        """The error to answer with: the last upstream failure, or 503 if nothing could be tried."""
        if walk.last_error is not None:
            walk.last_error.attempts = walk.attempts
            return walk.last_error
        return self.at_capacity(route, walk) or self.unavailable(route, walk)

    def at_capacity(self, route: Route, walk: Walk) -> RateLimited | None:
        """With every deployment held back by its own rpm/tpm (not a breaker or a cool-down), the
        request is refused like any other rate limit: 429 naming the deployment's limit."""
        now = self.clock()
        candidates = [c for s in walk.stages for c in s.candidates]
        # one found held back is at capacity, though its hold may have lapsed since (a moment ago)
        if not candidates or not all(c.held or not c.state.has_capacity(now) for c in candidates):
            return None
        state = min((c.state for c in candidates), key=lambda s: s.available_at(now))
        measure, limit = state.limiting(now)
        return RateLimited("deployment", measure, limit, max(1.0, state.available_at(now) - now))

    def unavailable(self, route: Route, walk: Walk) -> NoUpstreamAvailable:
        now = self.clock()
        states = [c.state for s in walk.stages for c in s.candidates]
        soonest = min((s.available_at(now) for s in states), default=now + 1.0)
        wait = max(1.0, soonest - now)
        error = NoUpstreamAvailable(
            f"No deployment of the model '{route.requested}' can take requests right now "
            f"({len(states)} considered: cooling down as its provider asked, or at capacity); "
            f"retry in {wait:.0f} s.",
            retry_after=wait,
        )
        error.attempts = walk.attempts
        return error


async def _traced(attempt: Attempt[T], c: Candidate, record: AttemptRecord) -> T:
    """The attempt, with its span's trace context sent upstream (the providers' link reads it)."""
    assert record.span is not None
    token = UPSTREAM_TRACE_HEADERS.set(record.span.headers)
    try:
        return await attempt(c, record)
    finally:
        UPSTREAM_TRACE_HEADERS.reset(token)


def _refuse_steering(route: Route, steering: Steering) -> None:
    """A pin or tags that no deployment of the model matches is the caller's mistake (400)."""
    if steering.deployment is not None:
        raise InvalidRequest(
            f"The model '{route.requested}' has no deployment named '{steering.deployment}'"
            + (f" with the tags {sorted(steering.tags)}" if steering.tags else "")
            + f" (its deployments: {', '.join(t.label for t in route.targets)}).",
            param="x-turnout-deployment",
            code="unknown_deployment",
        )
    if steering.tags:
        raise InvalidRequest(
            f"No deployment of the model '{route.requested}' carries the tags {sorted(steering.tags)}.",
            param="x-turnout-tags",
            code="no_matching_deployment",
        )


def _pick(
    stage: Stage, now: float, exclude: Candidate | None = None, panic: bool = False
) -> Candidate | None:
    """The available candidate tried least so far (strategy order breaks ties). In `panic`, the
    candidates held back only by their breaker: the one whose breaker would let a probe through
    soonest (the likeliest to have recovered)."""
    best: Candidate | None = None
    for c in stage.candidates:
        if c is exclude or c.spent:
            continue
        state = c.state
        if panic:
            if state.breaker.available() or now < state.cooldown_until or not state.has_capacity(now):
                continue
            if best is None or state.breaker.retry_at < best.state.breaker.retry_at:
                best = c
            continue
        if not state.available(now):
            if not state.has_capacity(now):
                c.held = True
            continue
        if best is None or c.tries < best.tries:
            best = c
    return best


def _retry_after(error: TurnoutError) -> float | None:
    if isinstance(error, UpstreamError):
        return error.retry_after
    if isinstance(error, UpstreamRejected) and error.retry_after:
        try:
            return max(0.0, float(error.retry_after))
        except ValueError:
            return None
    return None
