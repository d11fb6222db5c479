"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

from turnout.config.settings import BreakerSettings
from turnout.routing.circuit import CircuitBreaker, State


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SETTINGS = BreakerSettings(
    consecutive_failures=3,
    error_rate=0.5,
    min_requests=10,
    window=30,
    open_for=10,
    max_open_for=40,
    half_open_probes=1,
    close_after=2,
)


def test_opens_after_consecutive_failures_and_refuses_until_the_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(SETTINGS, clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is State.CLOSED and breaker.allow()
    breaker.record_failure()
    assert breaker.state is State.OPEN
    assert not breaker.allow()
    assert breaker.retry_at == 1010.0
    clock.now = 1009.9
    assert not breaker.available()


def test_a_success_resets_the_streak() -> None:
    breaker = CircuitBreaker(SETTINGS, Clock())
    for _ in range(5):  # 2 in a row at most, and a fifth of the window: below both thresholds
        breaker.record_failure()
        breaker.record_failure()
        for _ in range(8):
            breaker.record_success()
    assert breaker.state is State.CLOSED


def test_opens_on_the_error_rate_over_the_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(SETTINGS, clock)
    for _ in range(5):  # alternating: never 3 in a row, but half of the window fails
        breaker.record_success()
        clock.now += 1
        breaker.record_failure()
        clock.now += 1
    assert breaker.state is State.OPEN


def test_old_failures_leave_the_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(SETTINGS, clock)
    for _ in range(4):
        breaker.record_failure()
        breaker.record_success()
    clock.now += 60  # the window has moved on
    for _ in range(6):
        breaker.record_success()
    breaker.record_failure()
    assert breaker.state is State.CLOSED


def test_half_open_probes_then_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(SETTINGS, clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10
    assert breaker.allow()  # the probe
    assert breaker.state is State.HALF_OPEN
    assert not breaker.allow()  # only one probe at a time
    breaker.record_success()
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is State.CLOSED
    assert breaker.allow() and breaker.allow()


def test_a_failed_probe_reopens_for_longer_up_to_the_maximum() -> None:
    clock = Clock()
    breaker = CircuitBreaker(SETTINGS, clock)
    for _ in range(3):
        breaker.record_failure()
    cool_downs = []
    for _ in range(4):
        clock.now = breaker.retry_at
        assert breaker.allow()
        opened = clock.now
        breaker.record_failure()
        cool_downs.append(breaker.retry_at - opened)
    assert cool_downs == [20, 40, 40, 40]
    clock.now = breaker.retry_at
    assert breaker.allow()
    breaker.record_success()
    breaker.record_success()
    assert breaker.state is State.CLOSED
    for _ in range(3):
        breaker.record_failure()
    assert breaker.retry_at - clock.now == 10  # closing resets the cool-down


def test_a_probe_released_without_verdict_frees_its_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(SETTINGS, clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.release_probe()
    assert breaker.allow()


def test_its_latest_transitions_are_kept_in_order_for_the_console() -> None:
    clock = Clock()
    breaker = CircuitBreaker(SETTINGS, clock)
    assert not breaker.changes
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10
    assert breaker.allow()  # half-open: a probe
    breaker.record_success()
    assert breaker.allow()
    breaker.record_success()
    assert [state for _, state in breaker.changes] == ["open", "half_open", "closed"]
    times = [at for at, _ in breaker.changes]
    assert times == sorted(times)
    for _ in range(30):  # open and close over and over: only the latest are kept
        for _ in range(3):
            breaker.record_failure()
        clock.now += 40
        breaker.allow()
        breaker.record_success()
        breaker.allow()
        breaker.record_success()
    assert len(breaker.changes) == 20 and breaker.changes[-1][1] == "closed"
