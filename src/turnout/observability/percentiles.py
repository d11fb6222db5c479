"""Percentiles read from the request metrics' histograms (observability/metrics.py): the counts of
every label set summed, and a quantile found by linear interpolation within its bucket, as
Prometheus' `histogram_quantile` does. This instance's requests since it started."""

from __future__ import annotations

from collections.abc import Iterable

from turnout.observability.metrics import BUCKETS, Histogram


def merged(histograms: Iterable[Histogram]) -> Histogram:
    out = Histogram()
    for h in histograms:
        out.counts = [a + b for a, b in zip(out.counts, h.counts, strict=True)]
        out.total += h.total
    return out


def quantile(histogram: Histogram, q: float) -> float | None:
    """Seconds under which a share `q` (0-1) of the observations fell (None: none were made); in
    the open bucket above the last bound, that bound."""
    seen = sum(histogram.counts)
    if not seen:
        return None
    rank = q * seen
    running = 0
    for index, count in enumerate(histogram.counts):
        if count and running + count >= rank:
            if index == len(BUCKETS):
                return BUCKETS[-1]
            lower = 0.0 if index == 0 else BUCKETS[index - 1]
            return lower + (BUCKETS[index] - lower) * (rank - running) / count
        running += count
    return BUCKETS[-1]
