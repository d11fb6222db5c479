"""Counts over a sliding time window, in fixed slices: O(1) to record, O(slices) to read."""

from __future__ import annotations


class WindowCounter:
    __slots__ = ("_counts", "_span", "_starts")

    def __init__(self, seconds: float, slices: int = 10) -> None:
        self._span = seconds / slices
        self._starts = [float("-inf")] * slices
        self._counts = [0] * slices

    def add(self, now: float, n: int = 1) -> None:
        index = int(now / self._span) % len(self._starts)
        start = now - now % self._span
        if self._starts[index] != start:
            self._starts[index] = start
            self._counts[index] = 0
        self._counts[index] += n

    def total(self, now: float) -> int:
        horizon = now - self._span * len(self._starts)
        return sum(c for s, c in zip(self._starts, self._counts, strict=True) if s > horizon)

    def clear(self) -> None:
        self._starts = [float("-inf")] * len(self._starts)
