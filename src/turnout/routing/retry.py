"""When to try again: exponential backoff with full jitter, and a retry budget that keeps retries
to a share of recent traffic so that an outage never turns into a retry storm."""

from __future__ import annotations

import random
from collections.abc import Callable

from turnout.config.settings import RetrySettings
from turnout.routing.window import WindowCounter


def backoff(attempt: int, settings: RetrySettings, draw: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry): full jitter."""
    bound = min(settings.backoff_max, settings.backoff_base * 2.0 ** (attempt - 1))
    return draw() * bound


class RetryBudget:
    """Retries allowed over the window = per_second * window + ratio * requests in the window."""

    def __init__(self, settings: RetrySettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._requests = WindowCounter(settings.budget_window)
        self._retries = WindowCounter(settings.budget_window)

    def record_request(self) -> None:
        self._requests.add(self._clock())

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        now = self._clock()
        s = self.settings
        allowed = s.budget_per_second * s.budget_window + s.budget_ratio * self._requests.total(now)
        if self._retries.total(now) >= allowed:
            return False
        self._retries.add(now)
        return True
