"""Optional active health checks: every `interval`, ask the provider of each deployment whose
breaker is open for its model list — a free call, never a billed completion. An answer lets the
breaker's probes through at once instead of after its cool-down; real requests still decide
whether it closes. Off unless `routing.health_check_interval` is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from turnout.domain.errors import TurnoutError
from turnout.providers.registry import ProviderRegistry
from turnout.routing.circuit import State
from turnout.routing.deployments import DeploymentRegistry

log = logging.getLogger("turnout.routing")


class ActiveHealthChecks:
    def __init__(self, deployments: DeploymentRegistry, providers: ProviderRegistry, interval: float) -> None:
        self.deployments = deployments
        self.providers = providers
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="turnout-health-checks")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check_once()

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
