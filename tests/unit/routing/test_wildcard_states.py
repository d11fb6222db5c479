"""The states of deployments reached through wildcard aliases are bounded (LRU and idle TTL) and the
configured ones are kept for good; no state that matters is dropped: a request in flight, an open
breaker's cool-down, a provider's Retry-After. On a fake clock."""

from __future__ import annotations

from turnout.config.settings import BreakerSettings
from turnout.routing.circuit import State
from turnout.routing.deployments import DeploymentRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _registry(clock: Clock, capacity: int = 3, idle_ttl: float = 600.0) -> DeploymentRegistry:
    return DeploymentRegistry(
        BreakerSettings(consecutive_failures=1, open_for=30.0, max_open_for=30.0),
        clock,
        configured=frozenset({("p", "configured")}),
        capacity=capacity,
        idle_ttl=idle_ttl,
    )


def _labels(registry: DeploymentRegistry) -> set[str]:
    return {s.label for s in registry.all()}


def test_the_least_recently_used_go_first_and_configured_ones_stay() -> None:
    clock = Clock()
    registry = _registry(clock)
    configured = registry.get("p", "configured", "configured")
    for name in ("a", "b", "c"):
        registry.get("p", name, name)
    registry.get("p", "a", "a")  # used again: now b is the least recent
    registry.get("p", "d", "d")
    assert _labels(registry) == {"configured", "a", "c", "d"}
    for i in range(100):
        registry.get("p", f"x{i}", f"x{i}")
    assert len(registry) == 4 and registry.get("p", "configured", "configured") is configured


def test_a_state_with_a_request_in_flight_is_never_dropped() -> None:
    clock = Clock()
    registry = _registry(clock)
    busy = registry.get("p", "busy", "busy")
    busy.started(clock.now)
    for i in range(50):
        registry.get("p", f"x{i}", f"x{i}")
    assert registry.get("p", "busy", "busy") is busy
    clock.now += 10_000  # long past the idle TTL too
    registry.get("p", "y", "y")
    assert registry.get("p", "busy", "busy") is busy
    busy.finished(clock.now)
    clock.now += 601
    registry.get("p", "z", "z")
    assert "busy" not in _labels(registry)


def test_an_open_breaker_is_kept_through_its_cool_down() -> None:
    clock = Clock()
    registry = _registry(clock)
    broken = registry.get("p", "broken", "broken")
    broken.failed(clock.now, "500", None)
    assert broken.breaker.state is State.OPEN
    for i in range(50):
        registry.get("p", f"x{i}", f"x{i}")
    assert registry.get("p", "broken", "broken") is broken
    clock.now += 31  # the cool-down is over: it may go, as any other
    for i in range(3):
        registry.get("p", f"y{i}", f"y{i}")
    fresh = registry.get("p", "broken", "broken")
    assert fresh is not broken and fresh.breaker.state is State.CLOSED


def test_a_retry_after_cool_down_is_kept() -> None:
    clock = Clock()
    registry = _registry(clock)
    asked = registry.get("p", "asked", "asked")
    asked.failed(clock.now, "429", retry_after=120.0)
    for i in range(50):
        registry.get("p", f"x{i}", f"x{i}")
    assert registry.get("p", "asked", "asked") is asked


def test_when_every_candidate_matters_the_registry_holds_one_more_for_now() -> None:
    clock = Clock()
    registry = _registry(clock, capacity=2)
    for name in ("a", "b"):
        registry.get("p", name, name).started(clock.now)
    registry.get("p", "c", "c")
    assert _labels(registry) == {"a", "b", "c"}


def test_states_unused_for_the_idle_ttl_are_dropped() -> None:
    clock = Clock()
    registry = _registry(clock, capacity=1000, idle_ttl=600.0)
    for i in range(100):
        registry.get("p", f"x{i}", f"x{i}")
    registry.get("p", "configured", "configured")
    clock.now += 300
    registry.get("p", "recent", "recent")
    clock.now += 301  # the first hundred have been idle for 601 s
    assert _labels(registry) == {"configured", "recent"}
