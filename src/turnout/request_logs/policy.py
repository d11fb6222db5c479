"""Who is logged: each key's and team's own setting (a key's wins over its team's, a team's over
the configured default), held in memory for the request path (two dictionary reads a request) and
read again from the database every few seconds, so a change made on one instance reaches every
other. Changing a setting takes an admin who manages the key or team, and is audited."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

import sqlalchemy as sa

from turnout.domain.errors import PermissionDenied, ResourceNotFound
from turnout.domain.key_policy import check_act_on, may_manage, may_oversee, may_read
from turnout.domain.principal import Principal
from turnout.governance.audit import AuditLog
from turnout.periodic import Periodic
from turnout.storage.database import Database
from turnout.storage.tables import api_keys, request_log_settings, teams

log = logging.getLogger("turnout.request_logs")

Scope = Literal["key", "team"]
REFRESH_INTERVAL = 2.0


class LoggingPolicy:
    def __init__(self, database: Database, audit: AuditLog, default: bool = False) -> None:
        self.database = database
        self.audit = audit
        self.default = default
        self.keys: dict[str, bool] = {}
        self.teams: dict[str, bool] = {}
        self._changes = 0  # settings changed here: a refresh read before one is not applied
        self._failing = False
        self._periodic = Periodic(self._tick, REFRESH_INTERVAL, "reading the request log settings")

    def wanted(self, principal: Principal) -> bool:
        """Is this caller's traffic logged? (On the request path: dictionary reads only.)"""
        own = self.keys.get(principal.key_id)
        if own is not None:
            return own
        team = principal.team_id
        return self.default if team is None else self.teams.get(team, self.default)

    async def start(self) -> None:
        await self._tick()
        self._periodic.start()

    async def _tick(self) -> None:
        """Read the settings again; while the database is away, keep what is held (said once)."""
        try:
            await self.refresh()
        except Exception as error:
            if not self._failing:
                log.warning("request log: settings cannot be read now (%s); the last ones read apply", error)
            self._failing = True
        else:
            self._failing = False

    async def refresh(self) -> None:
        changes = self._changes
        async with self.database.engine.connect() as conn:
            rows = (await conn.execute(sa.select(request_log_settings))).all()
        if changes != self._changes:
            return  # changed here meanwhile: the next round reads it
        self.keys = {r.subject_id: r.enabled for r in rows if r.scope == "key"}
        self.teams = {r.subject_id: r.enabled for r in rows if r.scope == "team"}

    async def aclose(self) -> None:
        await self._periodic.aclose()

    # ------------------------------------------------------------------ the admin API

    async def get(self, viewer: Principal, scope: Scope, subject_id: str) -> dict[str, Any]:
        async with self.database.engine.connect() as conn:
            team_id = await self._subject(conn, viewer, scope, subject_id, change=False)
            own = await self._own(conn, scope, subject_id)
        return self._describe(scope, subject_id, team_id, own)

    async def set(
        self, actor: Principal, scope: Scope, subject_id: str, enabled: bool | None, request_id: str | None
    ) -> dict[str, Any]:
        """Set (or with None, clear) the subject's own setting; audited in the same transaction."""
        settings = request_log_settings.c
        where = sa.and_(settings.scope == scope, settings.subject_id == subject_id)
        self._changes += 1
        async with self.database.engine.begin() as conn:
            team_id = await self._subject(conn, actor, scope, subject_id)
            before = await self._own(conn, scope, subject_id)
            await conn.execute(sa.delete(request_log_settings).where(where))
            if enabled is not None:
                await conn.execute(
                    sa.insert(request_log_settings).values(
                        scope=scope,
                        subject_id=subject_id,
                        enabled=enabled,
                        updated_at=dt.datetime.now(dt.UTC),
                        updated_by=actor.key_id,
                    )
                )
            await self.audit.record(
                conn,
                actor,
                "request_log.set",
                scope,
                subject_id,
                team_id=team_id,
                before={"enabled": before},
                after={"enabled": enabled},
                request_id=request_id,
            )
        held = self.keys if scope == "key" else self.teams
        held = dict(held)
        if enabled is None:
            held.pop(subject_id, None)
        else:
            held[subject_id] = enabled
        if scope == "key":
            self.keys = held
        else:
            self.teams = held
        self._changes += 1
        return self._describe(scope, subject_id, team_id, enabled)

    async def _own(self, conn: Any, scope: Scope, subject_id: str) -> bool | None:
        settings = request_log_settings.c
        query = sa.select(settings.enabled).where(settings.scope == scope, settings.subject_id == subject_id)
        value = (await conn.execute(query)).scalar()
        return None if value is None else bool(value)

    async def _subject(
        self, conn: Any, caller: Principal, scope: Scope, subject_id: str, *, change: bool = True
    ) -> str | None:
        """The subject's team, if `caller` manages the key or team (or, not to `change` it, may
        oversee it); 404 when they may not see it."""
        if scope == "key":
            query = sa.select(api_keys.c.team_id, api_keys.c.role).where(
                api_keys.c.id == subject_id, api_keys.c.kind == "virtual"
            )
            key = (await conn.execute(query)).first()
            if key is None or not (may_manage if change else may_oversee)(caller, key.team_id):
                raise ResourceNotFound(f"No key with id '{subject_id}'.", param="key_id")
            if change:
                check_act_on(caller, key.role)
            return str(key.team_id) if key.team_id is not None else None
        query = sa.select(teams.c.id).where(teams.c.id == subject_id, teams.c.deleted_at.is_(None))
        if (await conn.execute(query)).first() is None or not may_read(caller, subject_id):
            raise ResourceNotFound(f"No team with id '{subject_id}'.", param="team_id")
        if change and not may_manage(caller, subject_id):
            raise PermissionDenied("Only the team's owners and admins may change its request log.")
        if not may_oversee(caller, subject_id):
            raise PermissionDenied("Only the team's owners, admins and viewers may read this setting.")
        return subject_id

    def _describe(
        self, scope: Scope, subject_id: str, team_id: str | None, own: bool | None
    ) -> dict[str, Any]:
        inherited = (
            self.default if team_id is None or scope == "team" else self.teams.get(team_id, self.default)
        )
        return {
            "object": "request_log_setting",
            "scope": scope,
            "subject_id": subject_id,
            "team_id": team_id,
            "enabled": own,  # the subject's own setting (null: none, it inherits)
            "effective": inherited if own is None else own,
        }
