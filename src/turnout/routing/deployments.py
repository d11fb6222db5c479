"""What the router knows about each deployment (a provider + upstream model) from live traffic:
its circuit breaker, a cool-down the provider asked for (Retry-After), requests in flight, recent
latency, and use of its known capacity. All in memory, O(1) to update, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from turnout.config.settings import BreakerSettings
from turnout.routing.circuit import CircuitBreaker, State
from turnout.routing.window import WindowCounter

LATENCY_SMOOTHING = 0.2  # weight of the newest observation in the moving average
MINUTE = 60.0


@dataclass(slots=True)
class DeploymentState:
    key: tuple[str, str]  # (provider, upstream model): one state however many aliases share it
    label: str
    breaker: CircuitBreaker
    rpm: int | None = None
    tpm: int | None = None
    in_flight: int = 0
    latency: float | None = None  # seconds to the first token (streams) or the answer; moving average
    cooldown_until: float = 0.0  # the provider asked us (Retry-After) to stay away until then
    successes: int = 0
    failures: int = 0
    last_failure: str | None = None
    _requests: WindowCounter = field(default_factory=lambda: WindowCounter(MINUTE, 12))
    _tokens: WindowCounter = field(default_factory=lambda: WindowCounter(MINUTE, 12))

    def available(self, now: float) -> bool:
        """Could a request be sent here now (breaker, cool-down and capacity allowing)?"""
        return self.breaker.available() and now >= self.cooldown_until and self.has_capacity(now)

    def has_capacity(self, now: float) -> bool:
        if self.rpm is not None and self._requests.total(now) >= self.rpm:
            return False
        return self.tpm is None or self._tokens.total(now) < self.tpm

    def available_at(self, now: float) -> float:
        """The soonest time this deployment may take a request again (`now` if it can)."""
        when = max(self.cooldown_until, self.breaker.retry_at)
        if not self.has_capacity(now):
            when = max(when, now + MINUTE / 12)  # the capacity window moves on in slices
        return max(now, when)

    def started(self, now: float) -> None:
        self.in_flight += 1
        if self.rpm is not None:
            self._requests.add(now)

    def finished(self, now: float, tokens: int = 0) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if tokens and self.tpm is not None:
            self._tokens.add(now, tokens)

    def succeeded(self, latency: float) -> None:
        self.successes += 1
        self.breaker.record_success()
        self.latency = (
            latency if self.latency is None else self.latency + LATENCY_SMOOTHING * (latency - self.latency)
        )

    def failed(self, now: float, cause: str, retry_after: float | None) -> None:
        self.failures += 1
        self.last_failure = cause
        self.breaker.record_failure()
        if retry_after:
            self.cooldown_until = max(self.cooldown_until, now + retry_after)

    def describe(self, now: float) -> dict[str, object]:
        """For `/health/ready` detail and `turnout status`."""
        state = self.breaker.state
        shown = "cooling_down" if state is State.CLOSED and now < self.cooldown_until else state.value
        detail: dict[str, object] = {
            "deployment": self.label,
            "provider": self.key[0],
            "model": self.key[1],
            "state": shown,
            "in_flight": self.in_flight,
            "successes": self.successes,
            "failures": self.failures,
            "opened": self.breaker.opened_count,
        }
        if self.latency is not None:
            detail["latency_ms"] = round(self.latency * 1000, 1)
        if shown != "closed":
            detail["retry_in_s"] = round(max(0.0, self.available_at(now) - now), 1)
        if self.last_failure is not None:
            detail["last_failure"] = self.last_failure
        return detail


class DeploymentRegistry:
    """One state per deployment, created on first use (wildcard routes have unbounded members)."""

    def __init__(self, breaker: BreakerSettings, clock: Callable[[], float]) -> None:
        self._breaker = breaker
        self._clock = clock
        self._states: dict[tuple[str, str], DeploymentState] = {}

    def get(
        self, provider: str, model: str, label: str, rpm: int | None = None, tpm: int | None = None
    ) -> DeploymentState:
        key = (provider, model)
        state = self._states.get(key)
        if state is None:
            state = DeploymentState(key, label, CircuitBreaker(self._breaker, self._clock), rpm, tpm)
            self._states[key] = state
        return state

    def all(self) -> list[DeploymentState]:
        return list(self._states.values())
