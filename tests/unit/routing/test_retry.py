"""Backoff with full jitter and the retry budget, on a fake clock."""

from __future__ import annotations

import pytest

from turnout.config.settings import RetrySettings
from turnout.routing.retry import RetryBudget, backoff


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("attempt", "bound"), [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.6), (6, 2.0), (20, 2.0)])
def test_backoff_is_a_uniform_draw_below_a_doubling_capped_bound(attempt: int, bound: float) -> None:
    settings = RetrySettings(backoff_base=0.1, backoff_max=2.0)
    assert backoff(attempt, settings, draw=lambda: 0.999999) == pytest.approx(bound, rel=1e-5)
    assert backoff(attempt, settings, draw=lambda: 0.0) == 0.0
    assert backoff(attempt, settings, draw=lambda: 0.5) == pytest.approx(bound / 2)


def test_the_budget_allows_a_share_of_recent_traffic_plus_a_floor() -> None:
    clock = Clock()
    budget = RetryBudget(RetrySettings(budget_ratio=0.2, budget_per_second=0.5, budget_window=10), clock)
    for _ in range(100):
        budget.record_request()
    spent = 0
    while budget.try_spend():
        spent += 1
    assert spent == 25  # 0.5/s * 10 s + 20% of 100 requests


def test_the_budget_refills_as_the_window_moves() -> None:
    clock = Clock()
    budget = RetryBudget(RetrySettings(budget_ratio=0.0, budget_per_second=0.3, budget_window=10), clock)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
    clock.now += 11
    assert budget.try_spend()
