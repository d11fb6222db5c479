"""A circuit breaker per deployment: stop sending to a deployment that is failing, probe it, and
take it back when it recovers.

    closed ──(N failures in a row, or error rate over the window)──▶ open
    open ──(cool-down elapsed)──▶ half-open: a few probe requests go through
    half-open ──(probes succeed)──▶ closed        half-open ──(a probe fails)──▶ open, longer

Health comes from real traffic. Time is an injected clock, so the state machine is tested without
sleeping.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable

from turnout.config.settings import BreakerSettings
from turnout.routing.window import WindowCounter


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


CHANGES_KEPT = 20  # a breaker's latest transitions, for the console's provider health


class CircuitBreaker:
    def __init__(self, settings: BreakerSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._requests = WindowCounter(settings.window)
        self._failures = WindowCounter(settings.window)
        self.state = State.CLOSED
        self._streak = 0  # consecutive failures while closed
        self._open_until = 0.0
        self._open_for = settings.open_for
        self._probes = 0  # probes in flight while half-open
        self._probe_successes = 0
        self.opened_count = 0
        # (wall-clock unix seconds, the state entered): shown, never decided on (that is `_clock`'s)
        self.changes: deque[tuple[float, str]] = deque(maxlen=CHANGES_KEPT)

    # ------------------------------------------------------------------ asking

    def allow(self) -> bool:
        """May a request go to this deployment now? (A `True` in half-open takes a probe slot:
        the caller must then `record_*`.)"""
        if self.state is State.CLOSED:
            return True
        now = self._clock()
        if self.state is State.OPEN:
            if now < self._open_until:
                return False
            self._enter(State.HALF_OPEN)
            self._probes = self._probe_successes = 0
        if self._probes >= self.settings.half_open_probes:
            return False
        self._probes += 1
        return True

    def available(self) -> bool:
        """Would `allow()` say yes? (Without taking a probe slot.)"""
        if self.state is State.CLOSED:
            return True
        if self.state is State.OPEN:
            return self._clock() >= self._open_until
        return self._probes < self.settings.half_open_probes

    @property
    def retry_at(self) -> float:
        """When an open breaker will let a probe through (the loop clock); now if it is not open."""
        return self._open_until if self.state is State.OPEN else self._clock()

    # ------------------------------------------------------------------ telling

    def record_success(self) -> None:
        self._requests.add(self._clock())
        if self.state is State.HALF_OPEN:
            self._probes = max(0, self._probes - 1)
            self._probe_successes += 1
            if self._probe_successes >= self.settings.close_after:
                self._close()
        else:
            self._streak = 0

    def record_failure(self) -> None:
        """A failure of the deployment itself (not of the caller's request)."""
        now = self._clock()
        self._requests.add(now)
        self._failures.add(now)
        if self.state is State.HALF_OPEN:
            self._probes = max(0, self._probes - 1)
            self._open_for = min(self._open_for * 2, self.settings.max_open_for)
            self._open(now, self._open_for)
            return
        if self.state is State.OPEN:
            return
        self._streak += 1
        requests, failures = self._requests.total(now), self._failures.total(now)
        s = self.settings
        if self._streak >= s.consecutive_failures or (
            requests >= s.min_requests and failures / requests >= s.error_rate
        ):
            self._open(now, self._open_for)

    def panic_probe(self) -> None:
        """Every deployment a request could use is open: this one (the likeliest to have
        recovered) is tried anyway, as a probe whose verdict counts like any other (Envoy's panic
        threshold: ejection never takes away the last hosts)."""
        if self.state is State.OPEN:
            self._enter(State.HALF_OPEN)
            self._probes = self._probe_successes = 0
        if self.state is State.HALF_OPEN:
            self._probes += 1

    def probe_now(self) -> None:
        """An active check found the deployment answering: let probes through without waiting out
        the cool-down (they still decide whether it closes)."""
        if self.state is State.OPEN:
            self._open_until = self._clock()

    def release_probe(self) -> None:
        """A probe that ended without a verdict (the client went away, a caller error)."""
        if self.state is State.HALF_OPEN:
            self._probes = max(0, self._probes - 1)

    # ------------------------------------------------------------------ transitions

    def _enter(self, state: State) -> None:
        self.state = state
        self.changes.append((time.time(), state.value))

    def _open(self, now: float, cool_down: float) -> None:
        self._enter(State.OPEN)
        self._open_until = now + cool_down
        self._streak = 0
        self.opened_count += 1

    def _close(self) -> None:
        self._enter(State.CLOSED)
        self._streak = 0
        self._open_for = self.settings.open_for
        self._requests.clear()
        self._failures.clear()
