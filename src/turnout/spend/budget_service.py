"""Budgets managed through the admin API: set (one per key, team or user and period; setting it
again changes it), listed with their current window, removed. Changes reach this instance's
`Budgets` before the call returns, and other instances within `REFRESH_SECONDS`.

Who may set one: a key's budget, whoever manages the key (a team admin, for their team's keys); a
team's or a user's, organisation-wide owners and admins only — a team admin cannot raise their
own team's budget. A budget records the level it was set at (`set_level`): one the organisation
set is changed or removed by the organisation only, so a team admin cannot lift it from below.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import sqlalchemy as sa

from turnout.domain.errors import PermissionDenied, ResourceNotFound
from turnout.domain.key_policy import (
    budget_level,
    check_budget_level,
    in_team,
    may_manage,
    may_read,
    require_organisation_admin,
)
from turnout.domain.periods import Period
from turnout.domain.pricing import Micros
from turnout.domain.principal import Principal
from turnout.governance.audit import AuditLog
from turnout.spend.budget_values import BudgetRule, Scope
from turnout.spend.budgets import Budgets, rule_of
from turnout.storage.database import Database
from turnout.storage.tables import api_keys, budgets, team_members, teams, users
from turnout.storage.times import unix_seconds


def describe(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "budget",
        "scope": row.scope,
        "subject_id": row.subject_id,
        "period": row.period,
        "timezone": row.timezone,
        "limit_micros": row.limit_micros,
        "soft_limit_micros": row.soft_limit_micros,
        "created_at": unix_seconds(row.created_at),
        "created_by": row.created_by,
        "set_level": row.set_level,
    }


class BudgetService:
    def __init__(self, database: Database, budgets: Budgets, audit: AuditLog) -> None:
        self.database = database
        self.budgets = budgets
        self.audit = audit

    async def _team_of(self, scope: Scope, subject_id: str) -> tuple[bool, str | None]:
        """Does the subject exist, and which team is it of (None: organisation-wide)?"""
        async with self.database.engine.connect() as conn:
            if scope == "key":
                row = (
                    await conn.execute(
                        sa.select(api_keys.c.team_id).where(
                            api_keys.c.id == subject_id, api_keys.c.kind == "virtual"
                        )
                    )
                ).first()
                return row is not None, None if row is None else row.team_id
            if scope == "team":
                found = await conn.execute(
                    sa.select(teams.c.id).where(teams.c.id == subject_id, teams.c.deleted_at.is_(None))
                )
                return found.first() is not None, subject_id
            found = await conn.execute(
                sa.select(users.c.id).where(users.c.id == subject_id, users.c.deleted_at.is_(None))
            )
            return found.first() is not None, None

    async def _visible(self, viewer: Principal, scope: Scope, subject_id: str) -> bool:
        exists, team = await self._team_of(scope, subject_id)
        if not exists:
            return False
        if scope == "user" and in_team(viewer):
            async with self.database.engine.connect() as conn:
                member = await conn.execute(
                    sa.select(team_members.c.role).where(
                        team_members.c.team_id == viewer.team_id, team_members.c.user_id == subject_id
                    )
                )
                return member.first() is not None
        return may_read(viewer, team)

    async def set(
        self,
        actor: Principal,
        scope: Scope,
        subject_id: str,
        period: Period,
        timezone: str,
        limit: Micros,
        soft_limit: Micros | None,
        request_id: str | None,
    ) -> dict[str, Any]:
        exists, team = await self._team_of(scope, subject_id)
        if not exists or not may_read(actor, team):
            raise ResourceNotFound(f"No {scope} with id '{subject_id}'.", param="subject_id")
        if scope == "key":
            if not may_manage(actor, team):
                raise PermissionDenied("Only owners and admins who manage this key may set its budget.")
        else:
            require_organisation_admin(actor, f"set a {scope}'s budget")
        where = (budgets.c.scope == scope, budgets.c.subject_id == subject_id, budgets.c.period == period)
        values = {
            "timezone": timezone,
            "limit_micros": limit,
            "soft_limit_micros": soft_limit,
            "set_level": budget_level(actor),
        }
        async with self.database.engine.begin() as conn:
            before = (await conn.execute(sa.select(budgets).where(*where))).first()
            if before is not None:
                check_budget_level(actor, before.set_level, "change")
            if before is None:
                budget_id = "budget_" + secrets.token_hex(8)
                await conn.execute(
                    sa.insert(budgets).values(
                        id=budget_id,
                        scope=scope,
                        subject_id=subject_id,
                        period=period,
                        created_at=dt.datetime.now(dt.UTC),
                        created_by=actor.key_id,
                        **values,
                    )
                )
            else:
                budget_id = before.id
                await conn.execute(sa.update(budgets).where(budgets.c.id == budget_id).values(**values))
            row = (await conn.execute(sa.select(budgets).where(budgets.c.id == budget_id))).one()
            await self.audit.record(
                conn,
                actor,
                "budget.set",
                "budget",
                budget_id,
                team_id=team,
                before=None if before is None else describe(before),
                after=describe(row),
                request_id=request_id,
            )
        rule = rule_of(row)
        await self.budgets.put(rule)
        return await self._with_status(row, rule)

    async def _with_status(self, row: Any, rule: BudgetRule) -> dict[str, Any]:
        return {**describe(row), **await self.budgets.status(rule)}

    async def _row(self, viewer: Principal, budget_id: str) -> Any:
        async with self.database.engine.connect() as conn:
            row = (await conn.execute(sa.select(budgets).where(budgets.c.id == budget_id))).first()
        if row is None or not await self._visible(viewer, row.scope, row.subject_id):
            raise ResourceNotFound(f"No budget with id '{budget_id}'.", param="budget_id")
        return row

    async def get(self, viewer: Principal, budget_id: str) -> dict[str, Any]:
        row = await self._row(viewer, budget_id)
        return await self._with_status(row, rule_of(row))

    async def list(
        self, viewer: Principal, scope: str | None, subject_id: str | None
    ) -> list[dict[str, Any]]:
        query = sa.select(budgets).order_by(budgets.c.created_at)
        if scope is not None:
            query = query.where(budgets.c.scope == scope)
        if subject_id is not None:
            query = query.where(budgets.c.subject_id == subject_id)
        async with self.database.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            await self._with_status(r, rule_of(r))
            for r in rows
            if await self._visible(viewer, r.scope, r.subject_id)
        ]

    async def delete(self, actor: Principal, budget_id: str, request_id: str | None) -> dict[str, Any]:
        row = await self._row(actor, budget_id)
        _, team = await self._team_of(row.scope, row.subject_id)
        if row.scope == "key":
            if not may_manage(actor, team):
                raise PermissionDenied("Only owners and admins who manage this key may remove its budget.")
        else:
            require_organisation_admin(actor, f"remove a {row.scope}'s budget")
        check_budget_level(actor, row.set_level, "remove")
        async with self.database.engine.begin() as conn:
            await conn.execute(sa.delete(budgets).where(budgets.c.id == budget_id))
            await self.audit.record(
                conn,
                actor,
                "budget.delete",
                "budget",
                budget_id,
                team_id=team,
                before=describe(row),
                request_id=request_id,
            )
        self.budgets.drop(budget_id)
        return {"id": budget_id, "object": "budget.deleted", "deleted": True}
