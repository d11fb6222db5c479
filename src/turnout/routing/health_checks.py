"""Optional active health checks: every `interval`, ask the provider of each deployment whose
breaker is open for its model list — a free call, never a billed completion. An answer lets the
breaker's probes through at once instead of after its cool-down; real requests still decide
whether it closes. Off unless `routing.health_check_interval` is set."""

from __future__ import annotations

import logging

from turnout.domain.errors import TurnoutError
from turnout.periodic import Periodic
from turnout.providers.registry import ProviderRegistry
from turnout.routing.circuit import State
from turnout.routing.deployments import DeploymentRegistry

log = logging.getLogger("turnout.routing")


class ActiveHealthChecks:
    def __init__(self, deployments: DeploymentRegistry, providers: ProviderRegistry, interval: float) -> None:
        self.deployments = deployments
        self.providers = providers
        self.interval = interval
        self._periodic = Periodic(self.check_once, interval, "active health checks")

    def start(self) -> None:
        self._periodic.start()

    async def aclose(self) -> None:
        await self._periodic.aclose()

    async def check_once(self) -> int:
        """Check every open deployment once (one call per provider); returns how many recovered."""
        open_states = [s for s in self.deployments.all() if s.breaker.state is State.OPEN]
        answered: dict[str, bool] = {}
        recovered = 0
        for state in open_states:
            provider = state.key[0]
            if provider not in answered:
                answered[provider] = await self._answers(provider)
            if answered[provider]:
                state.breaker.probe_now()
                recovered += 1
                log.info("active check: %s answers again; letting probes through", state.label)
        return recovered

    async def _answers(self, provider: str) -> bool:
        try:
            await self.providers[provider].list_models()
        except TurnoutError:
            return False
        return True
