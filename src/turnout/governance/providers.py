"""Taking a configured provider out of service, and back, through the admin API: the vendor in
crisis is removed from every alias on every instance at once, without a configuration change or
a restart. Removal is under the two-person rule by default (`remove_provider`); restoring is not.

The removed set lives in the database; each instance reads it every `REFRESH_SECONDS` (and the one
that changed it applies it before answering), and its router skips the providers in it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from turnout.domain.errors import ResourceNotFound
from turnout.domain.key_policy import require_organisation_admin, require_organisation_reader
from turnout.domain.principal import Principal
from turnout.governance.approvals import Approvals
from turnout.governance.audit import AuditLog
from turnout.periodic import Periodic
from turnout.routing.router import Router
from turnout.storage.database import Database
from turnout.storage.tables import removed_providers
from turnout.storage.times import unix_seconds

REFRESH_SECONDS = 1.0


class ProviderControl:
    def __init__(
        self,
        database: Database,
        router: Router,
        audit: AuditLog,
        approvals: Approvals,
        providers: dict[str, str],  # configured: name → kind
        *,
        gated: bool,
    ) -> None:
        self.database = database
        self.router = router
        self.audit = audit
        self.approvals = approvals
        self.providers = providers
        self.gated = gated
        self.refresher = Periodic(self.refresh, REFRESH_SECONDS, "reading removed providers")
        approvals.register("remove_provider", self._remove, "take a provider out of service")

    async def refresh(self) -> None:
        async with self.database.engine.connect() as conn:
            names = {row.name for row in await conn.execute(sa.select(removed_providers.c.name))}
        self.router.removed = frozenset(names & set(self.providers))

    def switch(self, router: Router, providers: dict[str, str]) -> None:
        """A reloaded configuration's router and providers (the removed set is read into it)."""
        self.router = router
        self.providers = providers

    def start(self) -> None:
        self.refresher.start()

    async def aclose(self) -> None:
        await self.refresher.aclose()

    def _check(self, actor: Principal, name: str) -> None:
        require_organisation_admin(actor, "manage providers")
        if name not in self.providers:
            raise ResourceNotFound(f"No provider named '{name}' is configured.", param="name")

    async def list(self, viewer: Principal) -> list[dict[str, Any]]:
        require_organisation_reader(viewer, "read the providers' state")
        async with self.database.engine.connect() as conn:
            removed = {r.name: r for r in await conn.execute(sa.select(removed_providers))}
        return [
            {
                "name": name,
                "object": "provider",
                "type": kind,
                "in_service": name not in removed,
                "removed_at": unix_seconds(removed[name].removed_at) if name in removed else None,
                "removed_by": removed[name].removed_by if name in removed else None,
            }
            for name, kind in sorted(self.providers.items())
        ]

    async def remove(self, actor: Principal, name: str, request_id: str | None) -> dict[str, Any]:
        self._check(actor, name)
        params = {"name": name}
        if self.gated:
            return await self.approvals.propose(
                actor, "remove_provider", "provider", name, team_id=None, params=params, request_id=request_id
            )
        return await self._remove(actor, params, request_id)

    async def _remove(
        self, actor: Principal, params: dict[str, Any], request_id: str | None = None
    ) -> dict[str, Any]:
        name = str(params["name"])
        self._check(actor, name)
        async with self.database.engine.begin() as conn:
            present = (
                await conn.execute(
                    sa.select(removed_providers.c.name).where(removed_providers.c.name == name)
                )
            ).first()
            if present is None:
                await conn.execute(
                    sa.insert(removed_providers).values(
                        name=name, removed_at=dt.datetime.now(dt.UTC), removed_by=actor.key_id
                    )
                )
                await self.audit.record(
                    conn,
                    actor,
                    "provider.remove",
                    "provider",
                    name,
                    before={"in_service": True},
                    after={"in_service": False},
                    request_id=request_id,
                )
        await self.refresh()
        return next(p for p in await self.list(actor) if p["name"] == name)

    async def restore(self, actor: Principal, name: str, request_id: str | None) -> dict[str, Any]:
        self._check(actor, name)
        async with self.database.engine.begin() as conn:
            gone = await conn.execute(sa.delete(removed_providers).where(removed_providers.c.name == name))
            if gone.rowcount:
                await self.audit.record(
                    conn,
                    actor,
                    "provider.restore",
                    "provider",
                    name,
                    before={"in_service": False},
                    after={"in_service": True},
                    request_id=request_id,
                )
        await self.refresh()
        return next(p for p in await self.list(actor) if p["name"] == name)
