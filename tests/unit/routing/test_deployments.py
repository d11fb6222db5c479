"""A deployment's live state: Retry-After cool-downs, capacity and when it is available again."""

from __future__ import annotations

from turnout.config.settings import BreakerSettings
from turnout.routing.deployments import DeploymentRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_retry_after_cools_a_deployment_down_without_opening_its_breaker() -> None:
    clock = Clock()
    state = DeploymentRegistry(BreakerSettings(), clock).get("p", "m", "p/m")
    state.failed(clock.now, "429", retry_after=2.5)
    assert not state.available(clock.now)
    assert state.available_at(clock.now) == 102.5
    assert state.describe(clock.now)["state"] == "cooling_down"
    clock.now = 102.5
    assert state.available(clock.now)
    assert state.describe(clock.now)["state"] == "closed"


def test_rpm_capacity_is_counted_per_minute() -> None:
    clock = Clock()
    state = DeploymentRegistry(BreakerSettings(), clock).get("p", "m", "p/m", rpm=3)
    for _ in range(3):
        assert state.available(clock.now)
        state.started(clock.now)
        state.finished(clock.now)
    assert not state.available(clock.now)
    assert state.available_at(clock.now) > clock.now
    clock.now += 61
    assert state.available(clock.now)


def test_tpm_capacity_counts_the_tokens_reported_when_requests_finish() -> None:
    clock = Clock()
    state = DeploymentRegistry(BreakerSettings(), clock).get("p", "m", "p/m", tpm=1000)
    state.started(clock.now)
    state.finished(clock.now, tokens=1200)
    assert not state.available(clock.now)
    assert state.in_flight == 0


def test_one_state_per_provider_and_model_whatever_the_alias() -> None:
    registry = DeploymentRegistry(BreakerSettings(), Clock())
    assert registry.get("p", "m", "a") is registry.get("p", "m", "b")
    assert registry.get("p", "m", "a") is not registry.get("p", "n", "a")
