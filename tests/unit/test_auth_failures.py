"""The failed-authentication counter on a fake clock: its window, and its bounded memory."""

from __future__ import annotations

import pytest

from turnout.domain.errors import TooManyFailedAuthentications
from turnout.limits.auth_failures import AuthFailures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_holds_for_the_window_from_the_first_failure() -> None:
    clock = Clock()
    failures = AuthFailures(3, 60.0, clock=clock)
    for _ in range(3):
        failures.check("a")
        failures.failed("a")
        clock.now += 10
    with pytest.raises(TooManyFailedAuthentications) as refused:
        failures.check("a")
    assert refused.value.retry_after == 30  # the window began 30 s ago
    assert refused.value.headers() == [(b"retry-after", b"30")]
    failures.check("b")  # another address
    clock.now += 29.5
    with pytest.raises(TooManyFailedAuthentications) as refused:
        failures.check("a")
    assert refused.value.retry_after == 1  # never 0
    clock.now += 0.5
    failures.check("a")  # the window is over
    failures.failed("a")
    failures.check("a")  # counted from one again


def test_failures_spread_over_windows_never_reach_the_limit() -> None:
    clock = Clock()
    failures = AuthFailures(3, 60.0, clock=clock)
    for _ in range(10):
        failures.failed("a")
        failures.failed("a")
        clock.now += 61
        failures.check("a")


def test_memory_is_bounded_and_keeps_the_most_recent_addresses() -> None:
    clock = Clock()
    failures = AuthFailures(2, 60.0, clock=clock, capacity=100)
    failures.failed("guesser")
    failures.failed("guesser")
    for i in range(5000):
        failures.failed(f"10.0.{i // 256}.{i % 256}")
        assert len(failures) <= 100
        if i % 50 == 0:  # the guesser keeps trying: it stays remembered, and refused
            with pytest.raises(TooManyFailedAuthentications):
                failures.check("guesser")
    assert len(failures) == 100
    with pytest.raises(TooManyFailedAuthentications):
        failures.check("guesser")


def test_addresses_idle_for_a_window_are_forgotten() -> None:
    clock = Clock()
    failures = AuthFailures(2, 60.0, clock=clock)
    for i in range(50):
        failures.failed(f"a{i}")
    assert failures and len(failures) == 50
    clock.now += 61
    failures.failed("late")
    assert len(failures) == 1  # a request now costs nothing for the 50 that went quiet
