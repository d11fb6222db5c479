"""A sliding window on this instance: what was counted in the last `span` seconds, kept in
`slices` slices (a minute in 60 one-second slices, a day in 1,440 one-minute slices). The window at
an instant holds the slice of that instant and the slices before it that started less than `span`
ago, so a limit of N a minute admits N from an idle start and nothing more until the first of them
is a minute old: no fixed bucket that admits N at the end of one minute and N more at the start
of the next. Redis keeps the same layout for many instances (limits/shared.py)."""

from __future__ import annotations

import math


class SlidingWindow:
    """Slices are kept in the order they were first counted in (time's order), so the oldest is
    the first: pruning and the reset look at the front only."""

    __slots__ = ("counts", "slice", "slices", "total")

    def __init__(self, span: float, slices: int) -> None:
        self.slice = span / slices
        self.slices = slices
        self.counts: dict[int, int] = {}
        self.total = 0

    def prune(self, now: float) -> int:
        """Drop the slices that left the window; the slice of `now`."""
        return self._prune(now)

    def put(self, current: int, amount: int) -> None:
        """Count `amount` in slice `current` (the one `prune` returned)."""
        counts = self.counts
        counts[current] = counts.get(current, 0) + amount
        self.total += amount

    def _prune(self, now: float) -> int:
        current = int(now // self.slice)
        cutoff = current - self.slices + 1
        counts = self.counts
        while counts:
            oldest = next(iter(counts))
            if oldest >= cutoff:
                break
            self.total -= counts.pop(oldest)
        return current

    def used(self, now: float) -> int:
        self._prune(now)
        return self.total

    def add(self, now: float, amount: int) -> int:
        """Count `amount` now; the slice it was counted in (to settle it later)."""
        current = self._prune(now)
        counts = self.counts
        counts[current] = counts.get(current, 0) + amount
        self.total += amount
        return current

    def adjust(self, slice_index: int, delta: int) -> None:
        """Change what was counted in a slice (a token reservation settled to the actual), if that
        slice is still counted."""
        counted = self.counts.get(slice_index)
        if counted is None:
            return
        delta = max(delta, -counted)
        self.counts[slice_index] = counted + delta
        self.total += delta

    def wait(self, now: float, amount: int, limit: int) -> float:
        """Seconds until `amount` more fits under `limit` (inf: it never will)."""
        if amount > limit:
            return math.inf
        self._prune(now)
        excess = self.total + amount - limit
        if excess <= 0:
            return 0.0
        for k, counted in self.counts.items():
            excess -= counted
            if excess <= 0:
                return max((k + self.slices) * self.slice - now, 0.0)
        return self.slices * self.slice

    def reset(self, now: float) -> float:
        """Seconds until the oldest slice counted leaves the window (0: nothing counted; call
        `prune` first)."""
        for k in self.counts:
            return max((k + self.slices) * self.slice - now, 0.0)
        return 0.0
