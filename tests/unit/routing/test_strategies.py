"""Strategies order an alias's deployments."""

from __future__ import annotations

import collections
import itertools
import random
from dataclasses import dataclass

from turnout.routing.strategies import order


@dataclass
class C:
    name: str
    priority: int = 0
    weight: float = 1.0
    in_flight: int = 0
    latency: float | None = None
    cost: float | None = None


def names(items: list[C]) -> list[str]:
    return [c.name for c in items]


def test_priority_is_lowest_first_then_config_order() -> None:
    cs = [C("a", 1), C("b", 0), C("c", 1), C("d", 0)]
    assert names(order("priority", cs)) == ["b", "d", "a", "c"]


def test_weighted_picks_in_proportion_and_orders_every_deployment() -> None:
    cs = [C("a", weight=6), C("b", weight=3), C("c", weight=1), C("z", weight=0)]
    rng = random.Random(7)
    firsts = collections.Counter(order("weighted", cs, rng.random)[0].name for _ in range(20000))
    assert abs(firsts["a"] / 20000 - 0.6) < 0.02
    assert abs(firsts["b"] / 20000 - 0.3) < 0.02
    assert abs(firsts["c"] / 20000 - 0.1) < 0.02
    assert firsts["z"] == 0
    for _ in range(100):
        ordered = names(order("weighted", cs, rng.random))
        assert sorted(ordered) == ["a", "b", "c", "z"]
        assert ordered[-1] == "z"  # weight 0: only as the last resort


def test_least_busy_prefers_fewer_in_flight_and_spreads_ties() -> None:
    cs = [C("a", in_flight=3), C("b", in_flight=1), C("c", in_flight=1), C("d", in_flight=0)]
    draws = itertools.cycle([0.9, 0.1, 0.5, 0.3]).__next__
    assert order("least_busy", cs, draws)[0].name == "d"
    tied = [C("a"), C("b")]
    firsts = {order("least_busy", tied, random.Random(i).random)[0].name for i in range(50)}
    assert firsts == {"a", "b"}


def test_lowest_latency_treats_the_unknown_as_typical() -> None:
    cs = [C("slow", latency=0.9), C("fast", latency=0.1), C("new", priority=1)]
    assert names(order("lowest_latency", cs)) == ["fast", "new", "slow"]
    assert names(order("lowest_latency", [C("x", 1), C("y", 0)])) == ["y", "x"]


def test_lowest_cost_puts_unknown_prices_last() -> None:
    cs = [C("dear", cost=10.0), C("unknown"), C("cheap", cost=0.5)]
    assert names(order("lowest_cost", cs)) == ["cheap", "dear", "unknown"]
