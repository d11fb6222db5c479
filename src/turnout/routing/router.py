"""Carry a request to a deployment that can answer it, failing over until one does.

A request walks *stages*: its alias, then each alias of the alias's fallback chain. Within a
stage the deployments are ordered by the alias's strategy (and filtered by the client's pin or
tags, and by what they can serve); the walk takes the available deployment tried least so far, so
it moves to another deployment before it retries one. A deployment is unavailable while its
circuit breaker is open, while it is cooling down after a Retry-After, or when it is at its known
rpm/tpm. Each stage has its alias's `attempts`; every attempt after a client request's first is
also paid for from the gateway-wide retry budget, so an outage never becomes a retry storm.

Failures are judged by kind: an upstream failure (timeout, connection, 5xx, 429, malformed answer,
bad credentials) counts against the deployment's breaker and moves on; a caller error ends the walk
at once, except a context-window overflow (which switches to the alias's context-window fallbacks)
and, opt-in, a content-policy refusal (its own chain). Retrying the same deployment waits with
exponential backoff and full jitter. If no deployment could even be tried the answer is an
immediate 503 with Retry-After at the soonest recovery; if the only obstacle is a provider's short
Retry-After, the walk waits for it once (up to `max_retry_after`).

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
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from turnout.config.settings import RoutingSettings
from turnout.domain.chat import ChatRequest
from turnout.domain.embeddings import EmbeddingRequest
from turnout.domain.errors import (
    InvalidRequest,
    NoUpstreamAvailable,
    TurnoutError,
    UpstreamError,
    UpstreamRejected,
)
from turnout.providers.base import ChatResult, EmbeddingCall, EmbeddingResult, NativeRequest
from turnout.routing.capabilities import first_unmet, fits_context, fits_output, needs
from turnout.routing.catalog import Catalog, Route, Target
from turnout.routing.deployments import DeploymentRegistry, DeploymentState
from turnout.routing.first_chunk import PeekedStream, peek_first
from turnout.routing.relay import RelayStream
from turnout.routing.retry import RetryBudget, backoff
from turnout.routing.strategies import order

log = logging.getLogger("turnout.routing")

T = TypeVar("T")

TIMER_SLACK = 0.005  # event-loop timers may fire a little early: wake after the cool-down, not in it


@dataclass(slots=True)
class Served:
    """Which deployment answered, after how many upstream attempts, and what failed on the way."""

    target: Target
    attempts: int = 1
    failures: list[str] = field(default_factory=list)
    state: DeploymentState | None = None
    started: float = 0.0  # when the winning attempt began (the loop clock)
    hedged: bool = False
    resumable: bool = False  # a stream that will be continued elsewhere if it breaks


@dataclass(frozen=True, slots=True)
class Steering:
    """What the client asked of routing: one deployment by name, or tags a deployment must carry."""

    deployment: str | None = None
    tags: frozenset[str] = frozenset()


NO_STEERING = Steering()


@dataclass(slots=True)
class Candidate:
    """A deployment in a stage of the walk: its target (configuration) and state (live traffic)."""

    target: Target
    state: DeploymentState
    tries: int = 0

    @property
    def priority(self) -> int:
        return self.target.priority

    @property
    def weight(self) -> float:
        return self.target.weight

    @property
    def cost(self) -> Decimal | None:
        return self.target.cost

    @property
    def in_flight(self) -> int:
        return self.state.in_flight

    @property
    def latency(self) -> float | None:
        return self.state.latency


@dataclass(slots=True)
class Stage:
    alias: str
    candidates: list[Candidate]
    limit: int
    attempts: int = 0


@dataclass(slots=True)
class Walk:
    """One client request's way through the stages."""

    stages: list[Stage]
    request: ChatRequest | None = None
    attempts: int = 0
    failures: list[str] = field(default_factory=list)
    last_error: TurnoutError | None = None
    waited: bool = False
    chain: str = "errors"  # which chain the walk is on: errors, or a refusal's (context_window...)
    access: Access | None = None  # the aliases the caller may use (None: any)


Attempt = Callable[[Candidate], Coroutine[Any, Any, T]]
Access = Callable[[str], bool]  # may the caller use this alias (its key's model allow-list)?


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

    # ------------------------------------------------------------------ operations

    async def complete(
        self,
        route: Route,
        request: ChatRequest,
        body: dict[str, Any],
        *,
        wants_usage: bool,
        steering: Steering = NO_STEERING,
        native: NativeRequest | None = None,
        access: Access | None = None,
    ) -> tuple[ChatResult, Served]:
        async def attempt(c: Candidate) -> ChatResult:
            t = c.target
            return await t.adapter.complete(t.call(request, body, wants_usage, native))

        walk = self.plan(route, request, steering, native=native, access=access)
        result, served = await self.walk(route, walk, attempt, holds=True)
        self.settle(served, result.usage.total_tokens if result.usage else 0)  # counts toward its tpm
        return result, served

    async def stream(
        self,
        route: Route,
        request: ChatRequest,
        body: dict[str, Any],
        *,
        wants_usage: bool,
        steering: Steering = NO_STEERING,
        native: NativeRequest | None = None,
        access: Access | None = None,
    ) -> tuple[RelayStream, Served]:
        """The stream's deployment stays `in_flight` until the stream ends or is closed."""

        async def attempt(c: Candidate) -> PeekedStream:
            t = c.target
            stream = await t.adapter.stream(t.call(request, body, wants_usage, native))
            return await peek_first(stream)  # committed only once the first chunk is here

        walk = self.plan(route, request, steering, native=native, access=access)
        peeked, served = await self.walk(route, walk, attempt, holds=True)
        relay = RelayStream(self, route, request, body, steering, wants_usage, peeked, served, access)
        served.resumable = relay.resumable
        return relay, served

    async def embed(
        self,
        route: Route,
        request: EmbeddingRequest,
        body: dict[str, Any],
        steering: Steering = NO_STEERING,
        access: Access | None = None,
    ) -> tuple[EmbeddingResult, Served]:
        async def attempt(c: Candidate) -> EmbeddingResult:
            t = c.target
            return await t.adapter.embed(EmbeddingCall(request, body, t.model, t.timeouts))

        walk = self.plan(route, None, steering, embeddings=True, access=access)
        result, served = await self.walk(route, walk, attempt, holds=True)
        self.settle(served, result.usage.total_tokens if result.usage else 0)  # counts toward its tpm
        return result, served

    def settle(self, served: Served, tokens: int = 0) -> None:
        """The answer is complete: the deployment's request is no longer in flight."""
        if served.state is not None:
            served.state.finished(self.clock(), tokens)
            served.state = None

    # ------------------------------------------------------------------ planning

    def plan(
        self,
        route: Route,
        request: ChatRequest | None,
        steering: Steering,
        *,
        chain: str = "errors",
        avoid: DeploymentState | None = None,
        embeddings: bool = False,
        native: NativeRequest | None = None,
        access: Access | None = None,
    ) -> Walk:
        """The stages for `route`: its own deployments (unless `chain` names a refusal chain, which
        replaces them), then the fallback aliases of `chain` the caller may use (`access`) — all
        of them when the alias says its fallbacks are part of it (`fallbacks_included`)."""
        stages: list[Stage] = []
        if chain == "errors":
            stage = self._stage(route, request, steering, avoid, embeddings, native)
            if steering.deployment is not None and not stage.candidates:
                raise InvalidRequest(
                    f"The model '{route.requested}' has no deployment named '{steering.deployment}'"
                    + (f" with the tags {sorted(steering.tags)}" if steering.tags else "")
                    + f" (its deployments: {', '.join(t.label for t in route.targets)}).",
                    param="x-turnout-deployment",
                    code="unknown_deployment",
                )
            if steering.tags and not stage.candidates:
                raise InvalidRequest(
                    f"No deployment of the model '{route.requested}' carries the tags "
                    f"{sorted(steering.tags)}.",
                    param="x-turnout-tags",
                    code="no_matching_deployment",
                )
            stages.append(stage)
        if steering.deployment is None:  # a pinned request goes to its deployment or nowhere
            for alias in route.policy.chain(chain):
                if access is not None and not route.policy.fallbacks_included and not access(alias):
                    log.info(
                        "%s: fallback '%s' skipped: the caller's key may not use it",
                        route.requested,
                        alias,
                    )
                    continue
                fallback = self.catalog.resolve(alias)
                if fallback is not None:
                    stages.append(self._stage(fallback, request, steering, avoid, embeddings, native))
        return Walk([s for s in stages if s.candidates], request, access=access)

    def _stage(
        self,
        route: Route,
        request: ChatRequest | None,
        steering: Steering,
        avoid: DeploymentState | None,
        embeddings: bool = False,
        native: NativeRequest | None = None,
    ) -> Stage:
        wanted = None
        candidates = []
        native_only = native.wire if native is not None and native.requires else None
        removed = self.removed
        for t in route.targets:
            if removed and t.provider in removed:
                continue  # taken out of service through the admin API
            if native_only is not None and t.capabilities.native_wire != native_only:
                continue  # the request holds what only its own format can carry
            if steering.deployment is not None and steering.deployment not in (t.label, t.provider):
                continue
            if not steering.tags <= t.tags:
                continue
            if embeddings and not t.capabilities.embeddings:
                continue
            if request is not None:
                caps = t.capabilities
                if not caps.full_chat:
                    wanted = needs(request) if wanted is None else wanted
                    if first_unmet(caps, wanted) is not None:
                        continue
                if t.context_window is not None and not fits_context(t.context_window, request):
                    continue
                if not fits_output(t.max_output_tokens, request):
                    continue  # its model cannot give an answer that long
            candidates.append(Candidate(t, self.deployments.get(t.provider, t.model, t.label, t.rpm, t.tpm)))
        ordered = order(route.policy.strategy, candidates, self._draw)
        if avoid is not None:  # the deployment that just failed goes last
            ordered.sort(key=lambda c: c.state is avoid)
        return Stage(route.alias, ordered, route.policy.attempts)

    # ------------------------------------------------------------------ the walk

    async def walk(
        self, route: Route, walk: Walk, attempt: Attempt[T], *, holds: bool = False, retry: bool = False
    ) -> tuple[T, Served]:
        """Try the walk's deployments until one answers. `retry`: this walk continues a request that
        has already been attempted (every attempt is a retry). `holds`: the winner stays in flight
        until `settle`."""
        if not retry:
            self.budget.record_request()
        for stage in walk.stages:
            while stage.attempts < stage.limit:
                now = self.clock()
                candidate = _pick(stage, now)
                if candidate is None:
                    break
                if (walk.attempts or retry) and not self.budget.try_spend():
                    log.warning(
                        "retry budget spent: not retrying %s (%d attempts)", route.requested, walk.attempts
                    )
                    raise self._give_up(route, walk)
                if candidate.tries:
                    await self._sleep(backoff(candidate.tries, self.settings.retries, self._draw))
                outcome = await self._try(route, walk, stage, candidate, attempt, holds)
                if outcome is not None:
                    return outcome
        wait = self._short_wait(walk)
        if wait is not None:
            walk.waited = True
            log.info("%s: every deployment is cooling down; waiting %.2f s as asked", route.requested, wait)
            await self._sleep(wait + TIMER_SLACK)
            return await self.walk(route, walk, attempt, holds=holds, retry=True)
        raise self._give_up(route, walk)

    async def _try(
        self, route: Route, walk: Walk, stage: Stage, c: Candidate, attempt: Attempt[T], holds: bool
    ) -> tuple[T, Served] | None:
        state = c.state
        if not state.breaker.allow():
            c.tries += 1  # lost the half-open probe slot to another request: count it as tried
            return None
        hedge_after = route.policy.hedge_after
        if hedge_after is not None:
            partner = _pick(stage, self.clock(), exclude=c)
            if partner is not None:
                return await self._hedged(route, walk, stage, c, partner, attempt, hedge_after, holds)
        stage.attempts += 1
        walk.attempts += 1
        c.tries += 1
        started = self.clock()
        state.started(started)
        try:
            result = await attempt(c)
        except TurnoutError as error:
            state.finished(self.clock())
            self._failed(route, walk, stage, c, error)
            return None
        except BaseException:
            state.finished(self.clock())
            state.breaker.release_probe()
            raise
        return self._won(walk, c, started, result, holds)

    def _won(
        self, walk: Walk, c: Candidate, started: float, result: T, holds: bool, hedged: bool = False
    ) -> tuple[T, Served]:
        now = self.clock()
        c.state.succeeded(now - started)
        served = Served(c.target, walk.attempts, walk.failures, c.state, started, hedged)
        if not holds:
            c.state.finished(now)
            served.state = None
        if walk.failures:
            log.info("served %s on %s after %d attempts", c.target.model, c.target.label, walk.attempts)
        return result, served

    def _failed(self, route: Route, walk: Walk, stage: Stage, c: Candidate, error: TurnoutError) -> None:
        """Judge a failed attempt: the deployment's fault (failover), a refusal with its own chain
        (switch chains), or the caller's (raise)."""
        state = c.state
        if isinstance(error, UpstreamError) or (isinstance(error, UpstreamRejected) and error.retryable):
            now = self.clock()
            state.failed(now, error.message, _retry_after(error))
            walk.failures.append(f"{c.target.label}: {error.message}")
            walk.last_error = error
            log.warning(
                "%s failed on %s (attempt %d): %s",
                route.requested,
                c.target.label,
                walk.attempts,
                error.message,
            )
            return
        state.breaker.release_probe()  # it answered, so it is up; the request is at fault
        chain = _refusal_chain(error)
        if chain == "content_policy" and not route.policy.content_policy_fallbacks:
            chain = None
        if chain is not None and walk.chain == "errors":
            fallback = self.plan(route, walk.request, NO_STEERING, chain=chain, access=walk.access)
            if fallback.stages:
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
                return
        error.attempts = walk.attempts
        raise error

    async def _hedged(
        self,
        route: Route,
        walk: Walk,
        stage: Stage,
        first: Candidate,
        second: Candidate,
        attempt: Attempt[T],
        delay: float,
        holds: bool,
    ) -> tuple[T, Served] | None:
        """Start `first`; if it has not answered within `delay`, start `second` as well. The first
        to answer wins and the other is cancelled; if one fails, the other may still win."""
        loop = asyncio.get_running_loop()
        running: dict[asyncio.Task[T], tuple[Candidate, float]] = {}

        def launch(c: Candidate) -> None:
            stage.attempts += 1
            walk.attempts += 1
            c.tries += 1
            started = self.clock()
            c.state.started(started)
            running[loop.create_task(attempt(c))] = (c, started)

        launch(first)
        hedged = False
        try:
            done, _ = await asyncio.wait(running, timeout=delay)
            if (
                not done
                and second.state.available(self.clock())
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
                    c, started = running.pop(task)
                    error = task.exception()
                    if error is None:
                        return self._won(walk, c, started, task.result(), holds, hedged)
                    c.state.finished(self.clock())
                    if not isinstance(error, TurnoutError):
                        raise error
                    self._failed(route, walk, stage, c, error)
            return None
        finally:
            for task, (c, _) in running.items():
                task.cancel()
                c.state.finished(self.clock())
                c.state.breaker.release_probe()
            for task in running:
                with contextlib.suppress(BaseException):
                    result = await task
                    closer = getattr(result, "aclose", None)
                    if closer is not None:
                        await closer()

    # ------------------------------------------------------------------ giving up

    def _short_wait(self, walk: Walk) -> float | None:
        """If the only obstacle is a provider's Retry-After within `max_retry_after`, how long to
        wait (once per request) before trying again."""
        if walk.waited or walk.last_error is None:
            return None
        now = self.clock()
        waits = [
            c.state.cooldown_until - now
            for s in walk.stages
            if s.attempts < s.limit
            for c in s.candidates
            if c.state.breaker.available() and c.state.has_capacity(now)
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
        return self.unavailable(route, walk)

    def unavailable(self, route: Route, walk: Walk) -> NoUpstreamAvailable:
        now = self.clock()
        states = [c.state for s in walk.stages for c in s.candidates]
        soonest = min((s.available_at(now) for s in states), default=now + 1.0)
        wait = max(1.0, soonest - now)
        error = NoUpstreamAvailable(
            f"No deployment of the model '{route.requested}' can take requests right now "
            f"({len(states)} considered: failing, cooling down or at capacity); retry in {wait:.0f} s.",
            retry_after=wait,
        )
        error.attempts = walk.attempts
        return error


def _pick(stage: Stage, now: float, exclude: Candidate | None = None) -> Candidate | None:
    """The available candidate tried least so far (strategy order breaks ties)."""
    best: Candidate | None = None
    for c in stage.candidates:
        if c is exclude or not c.state.available(now):
            continue
        if best is None or c.tries < best.tries:
            best = c
    return best


def _refusal_chain(error: TurnoutError) -> str | None:
    """The refusal chain for `error`: the kind its provider's error module gave it, if any."""
    return error.refusal if isinstance(error, UpstreamRejected) else None


def _retry_after(error: TurnoutError) -> float | None:
    if isinstance(error, UpstreamError):
        return error.retry_after
    if isinstance(error, UpstreamRejected) and error.retry_after:
        try:
            return max(0.0, float(error.retry_after))
        except ValueError:
            return None
    return None
