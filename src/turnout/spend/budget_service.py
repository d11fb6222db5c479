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

from turnout.domain.errors import InvalidRequest, PermissionDenied, ResourceNotFound
from turnout.domain.key_policy import (
    budget_level,
    check_budget_level,
    in_team,
    may_manage,
    may_read,
    require_organisation_admin,
)
from turnout.domain.periods import Period, time_zone
from turnout.domain.pricing import Micros
from turnout.domain.principal import Principal
from turnout.governance.audit import AuditLog
from turnout.spend.budget_values import BudgetRule, Scope
from turnout.spend.budgets import Budgets, rule_of
from turnout.storage.database import Database
from turnout.storage.paging import FIRST, Keyset, Page, Paging
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


BUDGETS_ORDER = Keyset(budgets.c.created_at, budgets.c.id)  # how /admin/budgets is paged: oldest first


def _listing(viewer: Principal) -> sa.Select[Any]:
    """Budgets with what `_listed` reads of their subjects, narrowed to those `viewer` may see."""
    key_found, team_found, user_found = api_keys.c.id, teams.c.id, users.c.id
    scope = budgets.c.scope
    joined = (
        budgets.outerjoin(
            api_keys,
            sa.and_(scope == "key", api_keys.c.id == budgets.c.subject_id, api_keys.c.kind == "virtual"),
        )
        .outerjoin(
            teams, sa.and_(scope == "team", teams.c.id == budgets.c.subject_id, teams.c.deleted_at.is_(None))
        )
        .outerjoin(
            users, sa.and_(scope == "user", users.c.id == budgets.c.subject_id, users.c.deleted_at.is_(None))
        )
    )
    member: sa.ColumnElement[Any] = sa.null()
    if in_team(viewer):
        joined = joined.outerjoin(
            team_members,
            sa.and_(
                scope == "user",
                team_members.c.user_id == budgets.c.subject_id,
                team_members.c.team_id == viewer.team_id,
            ),
        )
        member = team_members.c.user_id
    query = sa.select(
        budgets,
        key_found.label("key_found"),
        api_keys.c.team_id.label("key_team"),
        team_found.label("team_found"),
        user_found.label("user_found"),
        member.label("member"),
    ).select_from(joined)
    if may_read(viewer, None):  # the organisation's: every budget whose subject exists
        return query.where(sa.or_(key_found.is_not(None), team_found.is_not(None), user_found.is_not(None)))
    if not in_team(viewer):
        return query.where(sa.false())
    return query.where(
        sa.or_(
            sa.and_(key_found.is_not(None), api_keys.c.team_id == viewer.team_id),
            sa.and_(team_found.is_not(None), budgets.c.subject_id == viewer.team_id),
            sa.and_(user_found.is_not(None), team_members.c.user_id.is_not(None)),
        )
    )


def _listed(viewer: Principal, row: Any) -> bool:
    """`BudgetService._visible`, from the columns `_listing` joined (no query per budget)."""
    found = {"key": row.key_found, "team": row.team_found, "user": row.user_found}.get(row.scope)
    if found is None:
        return False
    if row.scope == "user" and in_team(viewer):
        return row.member is not None
    team = row.key_team if row.scope == "key" else row.subject_id if row.scope == "team" else None
    return may_read(viewer, team)


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
        try:
            time_zone(timezone)
        except ValueError as error:
            raise InvalidRequest(str(error) + ".", param="timezone") from None
        if soft_limit is not None and soft_limit > limit:
            raise InvalidRequest("'soft_limit' cannot be above 'limit'.", param="soft_limit")
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
        self, viewer: Principal, scope: str | None, subject_id: str | None, paging: Paging = FIRST
    ) -> tuple[list[dict[str, Any]], Page]:
        """A page of the budgets `viewer` may see, oldest first, each with its current window: one
        query (each budget's subject joined: whether it exists, its team, whether it is a member
        of the viewer's team), whatever the number of budgets."""
        query = _listing(viewer)
        if scope is not None:
            query = query.where(budgets.c.scope == scope)
        if subject_id is not None:
            query = query.where(budgets.c.subject_id == subject_id)
        async with self.database.engine.connect() as conn:
            page = BUDGETS_ORDER.page((await conn.execute(BUDGETS_ORDER.select(query, paging))).all(), paging)
        rows = [r for r in page.rows if _listed(viewer, r)]
        statuses = await self.budgets.statuses([rule_of(r) for r in rows])
        return [{**describe(r), **status} for r, status in zip(rows, statuses, strict=True)], page

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
