"""How many requests this instance may have in progress, following their measured latency: the
gradient algorithm of Netflix's concurrency-limits (Gradient2Limit).

Answers are averaged over a window (`window` seconds and at least `MIN_SAMPLES` answers): the
short-run latency. A long-run exponential average of those is the latency without queueing. While
the short-run latency stays within `tolerance` times the long-run one, the limit grows by about
√limit per window (a queue's worth); beyond it the limit shrinks in proportion (at most by 10% a
window, so one slow outlier cannot halve it). A limit that is not being used (fewer than half of it
in flight) does not move: idle time proves nothing about capacity.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MIN_SAMPLES = 10  # answers a window needs before the limit is recomputed
LONG_WINDOWS = 600  # windows the long-run average spans (Gradient2's default)
WARMUP_WINDOWS = 10  # windows averaged plainly before the long-run average turns exponential
SMOOTHING = 0.2  # how far the limit moves toward its new value in one window
MIN_GRADIENT = 0.5  # the most one window can scale the new value down by


class GradientLimit:
    __slots__ = (
        "_clock",
        "_count",
        "_long",
        "_peak",
        "_since",
        "_sum",
        "_windows",
        "high",
        "low",
        "tolerance",
        "value",
        "window",
    )

    def __init__(
        self,
        initial: int,
        low: int,
        high: int,
        *,
        tolerance: float = 1.2,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.value = float(initial)
        self.low = low
        self.high = high
        self.tolerance = tolerance
        self.window = window
        self._clock = clock
        self._long = 0.0  # the long-run latency (0: none measured yet)
        self._windows = 0
        self._since = clock()
        self._sum = 0.0
        self._count = 0
        self._peak = 0

    @property
    def limit(self) -> int:
        return int(self.value)

    @property
    def long_latency(self) -> float:
        """The long-run latency, seconds (0 until a window completed)."""
        return self._long

    def sample(self, latency: float, in_flight: int) -> None:
        """An answer took `latency` seconds while `in_flight` requests (this one included) were in
        progress."""
        self._sum += latency
        self._count += 1
        if in_flight > self._peak:
            self._peak = in_flight
        if self._count < MIN_SAMPLES:
            return
        now = self._clock()
        if now - self._since < self.window:
            return
        short, peak = self._sum / self._count, self._peak
        self._since, self._sum, self._count, self._peak = now, 0.0, 0, 0
        self._update(short, peak)

    def _update(self, short: float, in_flight: int) -> None:
        self._windows += 1
        if self._windows <= WARMUP_WINDOWS:
            self._long += (short - self._long) / self._windows
        else:
            self._long += (short - self._long) * 2 / (LONG_WINDOWS + 1)
        if short <= 0:
            return
        if self._long / short > 2:
            # latency is back to normal after a long overload: let the long run catch up faster
            self._long *= 0.95
        if in_flight < self.value / 2:
            return
        gradient = max(MIN_GRADIENT, min(1.0, self.tolerance * self._long / short))
        target = self.value * gradient + max(4.0, math.sqrt(self.value))
        value = self.value * (1 - SMOOTHING) + target * SMOOTHING
        self.value = max(float(self.low), min(float(self.high), value))
