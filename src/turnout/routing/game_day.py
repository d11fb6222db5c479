"""A game day as the router applies it: a provider out of service for some requests — a share of
them, or those of chosen teams, or a share of those — until its window ends, rolled back at once
when the error rate of the requests it affects passes its threshold.

Which requests a share takes is decided from the request id, so every plan of one request (its
continuations too) decides alike. Only requests whose alias has a deployment of the provider are
affected, and only their outcome counts: an upstream failure (5xx, 429, nothing available) is an
error, an answer is not, a caller's error is neither. All in memory, no I/O: the state every
instance shares is governance/game_days.py's."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

LOTS = float(1 << 32)


def lot(request_id: str) -> float:
    """Where in [0, 1) a request falls for shares: the same for every plan of the request."""
    return zlib.crc32(request_id.encode()) / LOTS


@dataclass(slots=True, eq=False)
class Drill:
    id: str
    provider: str
    ends_at: float  # unix seconds
    error_rate: float  # above this share of failed affected requests, it is rolled back
    min_requests: int  # ... once this many have ended
    share: float | None = None  # of the requests (None: all of the teams')
    teams: frozenset[str] = frozenset()  # (empty: every team's)
    requests: int = 0  # affected requests that ended (on this instance)
    failures: int = 0
    over: bool = False  # rolled back (or ended) on this instance: affects nothing more

    def applies(self, team: str | None, request_id: str, now: float) -> bool:
        if self.over or now >= self.ends_at:
            return False
        if self.teams and team not in self.teams:
            return False
        return self.share is None or lot(request_id) < self.share

    def ended(self, failed: bool) -> bool:
        """Count an affected request's outcome; True when it tips the drill over its threshold
        (once: it is over from then on)."""
        self.requests += 1
        if failed:
            self.failures += 1
        if self.over or self.requests < self.min_requests:
            return False
        if self.failures / self.requests > self.error_rate:
            self.over = True
            return True
        return False

    @property
    def observed_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0
