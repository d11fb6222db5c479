"""Rate limits of teams and users, set through the admin API by the organisation's owners and
admins (a team's own admins cannot loosen their team's): a team's limits (all its keys together),
its defaults for new keys, a user's limits (all their keys together). A team's priority class is
set by the organisation's admins, or by the team's own admins up to their own class
(limits/priority.py). Every change is audited in the transaction that makes it and applied to this
instance's limits at once (the others read it within limits/book.py's interval)."""

from __future__ import annotations

from typing import Any, cast

import msgspec
import sqlalchemy as sa

from turnout.domain.errors import PermissionDenied, ResourceNotFound
from turnout.domain.key_policy import may_manage, may_read, require_organisation_admin
from turnout.domain.principal import Principal, Priority
from turnout.domain.rate_limits import RateLimits, stored_limits
from turnout.governance.audit import AuditLog
from turnout.limits.book import LimitBook
from turnout.limits.priority import RANK, check_grantable, grantable
from turnout.storage.database import Database
from turnout.storage.tables import teams, users

Unset = msgspec.UnsetType


def _stored(limits: RateLimits | None) -> str | None:
    return None if limits is None or limits.empty else msgspec.json.encode(limits).decode()


def shown_limits(text: str | None) -> dict[str, int] | None:
    limits = stored_limits(text)
    return None if limits is None else limits.stored()


def team_limits(row: Any) -> dict[str, Any]:
    return {
        "limits": shown_limits(row.limits),
        "key_limits": shown_limits(row.key_limits),
        "priority": team_priority(row),
    }


def team_priority(row: Any) -> Priority | None:
    return cast(Priority, row.priority) if row.priority in RANK else None


class LimitSettings:
    def __init__(self, database: Database, book: LimitBook, audit: AuditLog) -> None:
        self.database = database
        self.book = book
        self.audit = audit

    async def set_team(
        self,
        actor: Principal,
        team_id: str,
        limits: RateLimits | Unset | None,
        key_limits: RateLimits | Unset | None,
        request_id: str | None,
        priority: Priority | Unset | None = msgspec.UNSET,
    ) -> dict[str, Any]:
        """Change a team's limits, its new keys' defaults and its priority class (UNSET: unchanged;
        None: none)."""
        async with self.database.engine.begin() as conn:
            row = (await conn.execute(sa.select(teams).where(teams.c.id == team_id))).first()
            if row is None or row.deleted_at is not None or not may_read(actor, team_id):
                raise ResourceNotFound(f"No team with id '{team_id}'.", param="team_id")
            values: dict[str, Any] = {}
            if not isinstance(limits, Unset) or not isinstance(key_limits, Unset):
                require_organisation_admin(actor, "change a team's rate limits")
            if not isinstance(limits, Unset):
                values["limits"] = _stored(limits)
            if not isinstance(key_limits, Unset):
                values["key_limits"] = _stored(key_limits)
            if not isinstance(priority, Unset):
                self._check_priority(actor, team_id, priority)
                values["priority"] = priority
            if values:
                await conn.execute(sa.update(teams).where(teams.c.id == team_id).values(**values))
            stored = (await conn.execute(sa.select(teams).where(teams.c.id == team_id))).one()
            before, after = team_limits(row), team_limits(stored)
            await self.audit.record(
                conn,
                actor,
                "team.limits" if set(values) - {"priority"} else "team.priority",
                "team",
                team_id,
                team_id=team_id,
                before=before,
                after=after,
                request_id=request_id,
            )
        self.book.put_team(team_id, stored_limits(stored.limits), stored_limits(stored.key_limits))
        self.book.put_team_priority(team_id, team_priority(stored))
        return {"id": team_id, "object": "team.limits", **after}

    def _check_priority(self, actor: Principal, team_id: str, priority: Priority | None) -> None:
        """The team's own admins may set its class up to their own; others of the team may not."""
        if not may_manage(actor, team_id):
            raise PermissionDenied("Only the team's owners and admins may change its priority.")
        ceiling = grantable(actor, self.book.team_priority(actor.team_id), self.book.default_priority)
        check_grantable(priority or self.book.default_priority, ceiling, "a team", "priority")

    async def set_user(
        self, actor: Principal, user_id: str, limits: RateLimits | None, request_id: str | None
    ) -> None:
        """Change a user's limits (None: none)."""
        require_organisation_admin(actor, "change a user's rate limits")
        async with self.database.engine.begin() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
            if row is None or row.deleted_at is not None:
                raise ResourceNotFound(f"No user with id '{user_id}'.", param="user_id")
            await conn.execute(sa.update(users).where(users.c.id == user_id).values(limits=_stored(limits)))
            await self.audit.record(
                conn,
                actor,
                "user.limits",
                "user",
                user_id,
                before={"limits": shown_limits(row.limits)},
                after={"limits": shown_limits(_stored(limits))},
                request_id=request_id,
            )
        self.book.put_user(user_id, limits)
