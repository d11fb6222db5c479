"""The gradient limit on a fake clock: it grows while latency stays at its long-run level and the
limit is used, holds still while it is not used, shrinks when latency rises, and recovers."""

from __future__ import annotations

from turnout.limits.gradient import GradientLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def windows(
    limit: GradientLimit, clock: Clock, count: int, latency: float, in_flight: int | None = None
) -> None:
    """`count` windows of ten answers taking `latency` each, with `in_flight` requests (default:
    the whole limit) in progress."""
    for _ in range(count):
        clock.now += limit.window
        for _ in range(10):
            limit.sample(latency, limit.limit if in_flight is None else in_flight)


def test_grows_while_latency_holds_and_the_limit_is_used() -> None:
    clock = Clock()
    limit = GradientLimit(20, 5, 500, clock=clock)
    windows(limit, clock, 30, 0.1)
    assert limit.limit > 40


def test_does_not_grow_while_the_limit_is_not_used() -> None:
    clock = Clock()
    limit = GradientLimit(20, 5, 500, clock=clock)
    windows(limit, clock, 30, 0.1, in_flight=3)
    assert limit.limit == 20


def test_shrinks_when_latency_rises_then_grows_again() -> None:
    clock = Clock()
    limit = GradientLimit(100, 5, 500, clock=clock)
    windows(limit, clock, 20, 0.1)  # the long-run latency learns 100 ms
    before = limit.limit
    windows(limit, clock, 10, 0.5)
    shrunk = limit.limit
    assert shrunk < before * 0.5
    windows(limit, clock, 30, 0.1)
    assert limit.limit > shrunk * 1.5


def test_stays_within_its_bounds() -> None:
    clock = Clock()
    limit = GradientLimit(10, 8, 12, clock=clock)
    windows(limit, clock, 50, 0.1)
    assert limit.limit == 12
    windows(limit, clock, 50, 5.0)
    assert limit.limit == 8
