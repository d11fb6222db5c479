"""Reload: read the configuration again (on SIGHUP or `POST /admin/reload`) and switch providers,
models, routing and prices over without dropping a request. Requests in flight finish on the
configuration they began with; new ones use the new one. A configuration that does not load
changes nothing: the running one is kept and every problem is logged and answered, with its dotted
path (NGINX's semantics). Sections that only take effect at start (server, auth, storage,
governance, request_logs, metrics, tracing, console) are reported as changed and left as they are until the
next restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from turnout.app import Services
from turnout.config.loader import ConfigError
from turnout.config.settings import Settings
from turnout.domain.errors import ConfigurationRejected
from turnout.domain.key_policy import require_organisation_owner
from turnout.domain.principal import Principal

log = logging.getLogger("turnout.reload")

APPLIED = ("providers", "models", "routing", "spend")
AT_RESTART = ("server", "auth", "storage", "governance", "request_logs", "metrics", "tracing", "console")

Load = Callable[[], Settings]


@dataclass(frozen=True, slots=True)
class Reloaded:
    source: str
    changed: tuple[str, ...]  # applied: new requests use them
    at_restart: tuple[str, ...]  # changed in the file, applied at the next restart

    def describe(self) -> dict[str, Any]:
        return {
            "object": "reload",
            "source": self.source,
            "changed": list(self.changed),
            "restart_needed": list(self.at_restart),
        }


class Reloader:
    """One reload at a time; `load` reads the configuration as the process was started with it
    (the same file and environment)."""

    def __init__(self, services: Services, load: Load) -> None:
        self.services = services
        self.load = load
        self._lock = asyncio.Lock()

    async def reload(self) -> Reloaded:
        """Apply the configuration as it is now; ConfigurationRejected (and nothing changed) if it
        does not load or cannot be applied."""
        async with self._lock:
            settings = await self._read()
            running = self.services.settings
            changed = tuple(s for s in APPLIED if getattr(settings, s) != getattr(running, s))
            at_restart = tuple(s for s in AT_RESTART if getattr(settings, s) != getattr(running, s))
            if changed:
                try:
                    await self.services.apply(settings)
                except Exception as error:
                    log.exception(
                        "reload: %s could not be applied; the running configuration is kept", settings.source
                    )
                    raise ConfigurationRejected(
                        f"The configuration {settings.source} could not be applied ({error}); the running "
                        "configuration is kept.",
                        [str(error)],
                    ) from None
            log.warning(
                "reload: %s read; %s",
                settings.source,
                ", ".join(changed) + " applied" if changed else "no change",
            )
            for section in at_restart:
                log.warning("reload: '%s' changed; it takes effect at the next restart", section)
            return Reloaded(settings.source, changed, at_restart)

    async def _read(self) -> Settings:
        try:
            return await asyncio.to_thread(self.load)  # a file read: off the event loop
        except ConfigError as error:
            log.error("reload refused, the running configuration is kept: %s", error.render())
            raise ConfigurationRejected(
                f"The configuration {error.source} has {len(error.problems)} problem(s); the running "
                "configuration is kept: " + "; ".join(error.problems),
                error.problems,
            ) from None

    async def requested_by(self, caller: Principal, request_id: str | None = None) -> Reloaded:
        """`POST /admin/reload`: the master key's and organisation-wide owners' (audited)."""
        require_organisation_owner(caller, "reload the configuration")
        reloaded = await self.reload()
        try:
            async with self.services.database.engine.begin() as conn:
                await self.services.audit.record(
                    conn,
                    caller,
                    "config.reload",
                    "configuration",
                    reloaded.source,
                    after=reloaded.describe(),
                    request_id=request_id,
                )
        except Exception as error:  # the reload stands; the database may be away
            log.error("reload by %s could not be audited: %s", caller.key_id, error)
        return reloaded

    def on_signal(self) -> asyncio.Task[None]:
        """SIGHUP: reload in the background (what went wrong is logged)."""
        return asyncio.get_running_loop().create_task(self._signalled())

    async def _signalled(self) -> None:
        try:
            await self.reload()
        except ConfigurationRejected:
            pass  # logged with every problem
        except Exception:
            log.exception("reload on SIGHUP failed; the running configuration is kept")
