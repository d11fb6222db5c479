"""The values a request's trip is made of, apart from the router that moves them.

A `Call` is what the pipeline asks routing to carry, built once per client request. A `Walk` is
its way through `Stage`s of `Candidate` deployments; each upstream attempt it makes is an
`AttemptRecord` in the walk's `tally` (what the ledger writes one row for); `Served` names the
deployment whose answer the client got.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from turnout.domain.chat import ChatRequest
from turnout.domain.embeddings import EmbeddingRequest
from turnout.domain.errors import TurnoutError
from turnout.domain.media import ImageRequest, SpeechRequest, TranscriptionRequest
from turnout.domain.moderation import ModerationRequest
from turnout.domain.rerank import RerankRequest
from turnout.domain.usage import Usage
from turnout.observability.tracing import AttemptSpan, RequestTrace
from turnout.providers.base import NativeRequest
from turnout.routing.catalog import Route, Target
from turnout.routing.deployments import DeploymentState, Lease
from turnout.routing.game_day import Drill

T = TypeVar("T")

Access = Callable[[str], bool]  # may the caller use this alias (its key's model allow-list)?


@dataclass(frozen=True, slots=True)
class Steering:
    """What the client asked of routing: one deployment by name, or tags a deployment must carry."""

    deployment: str | None = None
    tags: frozenset[str] = frozenset()


NO_STEERING = Steering()


@dataclass(frozen=True, slots=True)
class Call:
    """One client request as routing carries it: its route, the typed request and the raw body it
    was parsed from, the client's steering, whether the client wants usage in its stream, the
    request in its own wire format (for deployments that speak it) and the aliases it may use."""

    route: Route
    request: (
        ChatRequest
        | EmbeddingRequest
        | RerankRequest
        | ModerationRequest
        | ImageRequest
        | TranscriptionRequest
        | SpeechRequest
    )
    body: dict[str, Any]
    steering: Steering = NO_STEERING
    wants_usage: bool = False
    native: NativeRequest | None = None
    access: Access | None = None
    trace: RequestTrace | None = None  # the request's trace (None: tracing off)
    team: str | None = None  # the caller's team (game days may take a provider out for it)
    request_id: str = ""  # turnout's id for the request (game days' shares are drawn from it)

    @property
    def chat(self) -> ChatRequest:
        assert isinstance(self.request, ChatRequest)
        return self.request


@dataclass(slots=True)
class AttemptRecord:
    """One upstream attempt: where it went, how it ended (the HTTP status it stands for: 200 for
    the answer the client got, the error's for a failed one, 499 for one abandoned, 503 for one the
    gateway's shutdown cut short) and why (`reason`: the error's code, `client_closed`...), and
    what it used — reported by the provider, or counted by turnout (`estimate`) when it reported
    none."""

    number: int
    target: Target
    status: int = 0  # 0 while it runs; 200 once it answers (a stream: until it ends otherwise)
    usage: Usage | None = None
    estimate: Callable[[], Usage] | None = None
    done: bool = False
    reason: str | None = None  # why it failed (None: it answered)
    span: AttemptSpan | None = None  # its trace span (None: tracing off)

    def ended(self, status: int, usage: Usage | None = None, reason: str | None = None) -> None:
        """The attempt is over (once: later calls change nothing)."""
        if self.done:
            return
        self.done = True
        if self.span is not None:
            self.span.ended()
        self.status = status
        self.reason = reason
        if usage is not None:
            self.usage = usage

    def used(self) -> tuple[Usage | None, bool]:
        """Its usage, and whether turnout counted it (the provider reported none)."""
        if self.usage is not None:
            return self.usage, False
        if self.estimate is not None:
            return self.estimate(), True
        return None, False


@dataclass(slots=True)
class Served:
    """Which deployment answered, after how many upstream attempts, and what failed on the way.
    `lease` keeps the deployment's request in flight until the answer is complete."""

    target: Target
    attempts: int = 1
    failures: list[str] = field(default_factory=list)
    lease: Lease | None = None
    started: float = 0.0  # when the winning attempt began (the loop clock)
    hedged: bool = False
    resumable: bool = False  # a stream that will be continued elsewhere if it breaks
    record: AttemptRecord | None = None  # the winning attempt's
    # a stream's breaker verdict waits for its end: one that breaks after its first chunk is a
    # failure, not a success and then a failure (which would never make a streak)
    verdict_pending: bool = False

    @property
    def state(self) -> DeploymentState | None:
        return None if self.lease is None else self.lease.state


@dataclass(slots=True)
class Candidate:
    """A deployment in a stage of the walk: its target (configuration) and state (live traffic)."""

    target: Target
    state: DeploymentState
    tries: int = 0
    spent: bool = False  # not to be tried again in this request (its credentials were refused)
    held: bool = False  # found without capacity (its rpm/tpm) in this request: a refusal is a 429

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
    tally: list[AttemptRecord] = field(default_factory=list)  # every attempt, in order
    over: bool = False  # a failure no other attempt may follow (an answer generated, then cut)
    streamed: bool = False  # the winner's verdict is given when its stream ends (Served.verdict_pending)
    trace: RequestTrace | None = None  # the request's trace: each attempt gets a span in it
    drills: tuple[Drill, ...] = ()  # the game days that took a provider out for it


Attempt = Callable[[Candidate, AttemptRecord], Coroutine[Any, Any, T]]  # one upstream call
