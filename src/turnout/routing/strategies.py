"""In which order to try an alias's deployments. Each strategy is O(deployments), without I/O."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Protocol, TypeVar

from turnout.config.settings import Strategy


class Candidate(Protocol):
    @property
    def priority(self) -> int: ...

    @property
    def weight(self) -> float: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def latency(self) -> float | None: ...

    @property
    def cost(self) -> Decimal | None: ...


C = TypeVar("C", bound=Candidate)


def order(strategy: Strategy, candidates: Sequence[C], draw: Callable[[], float] = random.random) -> list[C]:
    """The candidates in the order to try them (the first is the choice, the rest the failover)."""
    if len(candidates) < 2:
        return list(candidates)
    if strategy == "priority":
        return sorted(candidates, key=lambda c: c.priority)  # stable: config order breaks ties
    if strategy == "weighted":
        return _weighted(candidates, draw)
    if strategy == "least_busy":
        jitter = {id(c): draw() for c in candidates}  # equals are spread, not piled on the first
        return sorted(candidates, key=lambda c: (c.in_flight, c.priority, jitter[id(c)]))
    if strategy == "lowest_latency":
        known = [c.latency for c in candidates if c.latency is not None]
        typical = sum(known) / len(known) if known else 0.0  # the unknown are assumed typical
        return sorted(candidates, key=lambda c: (typical if c.latency is None else c.latency, c.priority))
    # lowest_cost: cheapest first; an unknown cost sorts last, priority breaks ties
    return sorted(candidates, key=lambda c: (math.inf if c.cost is None else c.cost, c.priority))


def _weighted(candidates: Sequence[C], draw: Callable[[], float]) -> list[C]:
    """A weighted random order: the first is picked with probability weight / total, and so on
    (Efraimidis-Spirakis keys). Zero-weight deployments only serve as the last resort."""

    def key(c: C) -> float:
        if c.weight <= 0:
            return -math.inf
        return math.log(max(draw(), 1e-300)) / c.weight

    return sorted(candidates, key=key, reverse=True)
