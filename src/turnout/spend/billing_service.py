"""Customer billing through the admin API: plans, each team's terms, credit top-ups, presets.

Money decisions are the organisation's: plans, a team's terms, top-ups and a preset's revenue
share are set by organisation-wide owners and admins only (a team admin cannot top up or
re-price their own team). A team's owners and admins publish presets for their team; its members
read its terms and balance. Every change is audited in the same transaction, and reaches this
instance's `Billing` and `PresetRegistry` before the call returns.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.domain.errors import InvalidRequest, PermissionDenied, ResourceNotFound
from turnout.domain.key_policy import (
    may_manage,
    may_read,
    organisation_reader,
    reads_as_admin,
    require_organisation_admin,
)
from turnout.domain.pricing import Micros
from turnout.domain.principal import Principal
from turnout.governance.audit import AuditLog
from turnout.presets.registry import PresetRegistry, preset_of
from turnout.spend.billing import Billing, month_of
from turnout.storage.database import Database
from turnout.storage.paging import FIRST, Keyset, Page, Paging
from turnout.storage.tables import credits, plans, presets, team_billing, teams
from turnout.storage.times import unix_seconds

# How /admin/plans (oldest first) and /admin/presets (by name) are paged.
PLANS_ORDER = Keyset(plans.c.created_at, plans.c.id)
PRESETS_ORDER = Keyset(presets.c.name)
CREDITS_ORDER = Keyset(credits.c.id, descending=True)  # a team's credit entries: newest first


def describe_plan(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "plan",
        "name": row.name,
        "markup": row.markup,
        "prices": None
        if row.input_price is None
        else {"input": row.input_price, "output": row.output_price or "0"},
        "included_tokens": row.included_tokens,
        "monthly_fee_micros": row.monthly_fee_micros,
        "created_at": unix_seconds(row.created_at),
    }


def public_preset(row: Any) -> dict[str, Any]:
    """A preset as other teams see it: what it is called, what it is for and what it runs on;
    never its system prompt or parameters (its team's work)."""
    return {
        "name": row.name,
        "object": "preset",
        "model": "preset/" + row.name,
        "description": row.description,
        "alias": row.alias,
    }


def describe_preset(row: Any) -> dict[str, Any]:
    """A preset in full, as its own team and the organisation's admins see it."""
    return {
        **public_preset(row),
        "team_id": row.team_id,
        "system_prompt": row.system_prompt,
        "params": orjson.loads(row.params) if row.params else {},
        "revenue_share": row.revenue_share,
        "share_cap_micros": row.share_cap_micros,
        "created_at": unix_seconds(row.created_at),
        "created_by": row.created_by,
    }


class BillingService:
    def __init__(
        self, database: Database, billing: Billing, registry: PresetRegistry, audit: AuditLog
    ) -> None:
        self.database = database
        self.billing = billing
        self.registry = registry
        self.audit = audit

    async def _team(self, conn: AsyncConnection, viewer: Principal, team_id: str) -> None:
        found = await conn.execute(
            sa.select(teams.c.id).where(teams.c.id == team_id, teams.c.deleted_at.is_(None))
        )
        if found.first() is None or not may_read(viewer, team_id):
            raise ResourceNotFound(f"No team with id '{team_id}'.", param="team_id")

    # ------------------------------------------------------------------ plans

    async def create_plan(
        self, actor: Principal, values: dict[str, Any], request_id: str | None
    ) -> dict[str, Any]:
        require_organisation_admin(actor, "create plans")
        row = {
            "id": "plan_" + secrets.token_hex(8),
            "created_at": dt.datetime.now(dt.UTC),
            "created_by": actor.key_id,
        }
        async with self.database.engine.begin() as conn:
            if (await conn.execute(sa.select(plans.c.id).where(plans.c.name == values["name"]))).first():
                raise InvalidRequest(f"A plan named '{values['name']}' already exists.", param="name")
            await conn.execute(sa.insert(plans).values(**row, **values))
            plan = describe_plan((await conn.execute(sa.select(plans).where(plans.c.id == row["id"]))).one())
            await self.audit.record(
                conn, actor, "plan.create", "plan", plan["id"], after=plan, request_id=request_id
            )
        return plan

    async def list_plans(
        self, viewer: Principal, paging: Paging = FIRST
    ) -> tuple[list[dict[str, Any]], Page]:
        """A page of the billing plans, oldest first (owners' and admins' to see)."""
        if not reads_as_admin(viewer):
            return [], Page([], None)
        async with self.database.engine.connect() as conn:
            page = PLANS_ORDER.page(
                (await conn.execute(PLANS_ORDER.select(sa.select(plans), paging))).all(), paging
            )
        return [describe_plan(r) for r in page.rows], page

    # ------------------------------------------------------------------ a team's terms and balance

    async def set_terms(
        self,
        actor: Principal,
        team_id: str,
        plan_id: str | None,
        markup: Decimal | None,
        prepaid: bool,
        request_id: str | None,
    ) -> dict[str, Any]:
        require_organisation_admin(actor, "set a team's billing")
        values = {
            "plan_id": plan_id,
            "markup": None if markup is None else str(markup),
            "prepaid": prepaid,
            "updated_at": dt.datetime.now(dt.UTC),
            "updated_by": actor.key_id,
        }
        async with self.database.engine.begin() as conn:
            await self._team(conn, actor, team_id)
            if (
                plan_id is not None
                and (await conn.execute(sa.select(plans.c.id).where(plans.c.id == plan_id))).first() is None
            ):
                raise InvalidRequest(f"No plan with id '{plan_id}'.", param="plan_id")
            before = (
                await conn.execute(sa.select(team_billing).where(team_billing.c.team_id == team_id))
            ).first()
            if before is None:
                await conn.execute(sa.insert(team_billing).values(team_id=team_id, **values))
            else:
                await conn.execute(
                    sa.update(team_billing).where(team_billing.c.team_id == team_id).values(**values)
                )
            await self.audit.record(
                conn,
                actor,
                "team.billing",
                "team",
                team_id,
                team_id=team_id,
                before=None if before is None else _terms(before._mapping),
                after=_terms(values),
                request_id=request_id,
            )
        await self.billing.refresh()
        return await self.account(actor, team_id)

    async def account(self, viewer: Principal, team_id: str) -> dict[str, Any]:
        """A team's terms, balance and this month's included tokens."""
        async with self.database.engine.connect() as conn:
            await self._team(conn, viewer, team_id)
            row = (
                await conn.execute(sa.select(team_billing).where(team_billing.c.team_id == team_id))
            ).first()
        return self._account(team_id, row)

    async def accounts(self, viewer: Principal, team_ids: list[str]) -> list[dict[str, Any]]:
        """The accounts of the listed teams `viewer` may read (the others left out), in one query:
        for a page of teams as `list_teams` gave them."""
        readable = [t for t in team_ids if may_read(viewer, t)]
        query = sa.select(team_billing).where(team_billing.c.team_id.in_(readable))
        async with self.database.engine.connect() as conn:
            rows = {r.team_id: r for r in await conn.execute(query)} if readable else {}
        return [self._account(t, rows.get(t)) for t in readable]

    def _account(self, team_id: str, row: Any) -> dict[str, Any]:
        terms = self.billing.terms.get(team_id)
        month = month_of(self.billing.clock())
        seen, used = self.billing.allowance.get(team_id, (month, 0))
        return {
            "object": "team.billing",
            "team_id": team_id,
            "plan_id": None if row is None else row.plan_id,
            "markup": None if row is None else row.markup,
            "prepaid": bool(row is not None and row.prepaid),
            "balance_micros": self.billing.balance(team_id),
            "reserved_micros": self.billing.reserved[team_id],
            "included_tokens": 0 if terms is None else terms.included_tokens,
            "included_tokens_used": used if seen == month else 0,
            "month": month,
        }

    async def top_up(
        self,
        actor: Principal,
        team_id: str,
        amount: Micros,
        kind: str,
        note: str | None,
        request_id: str | None,
    ) -> dict[str, Any]:
        require_organisation_admin(actor, "top up or adjust a team's credit")
        async with self.database.engine.begin() as conn:
            await self._team(conn, actor, team_id)
            entry = {
                "team_id": team_id,
                "at": dt.datetime.now(dt.UTC),
                "amount_micros": amount,
                "kind": kind,
                "note": note,
                "created_by": actor.key_id,
            }
            await conn.execute(sa.insert(credits).values(**entry))
            await self.audit.record(
                conn,
                actor,
                f"credit.{kind}",
                "team",
                team_id,
                team_id=team_id,
                after={"amount_micros": amount, "note": note},
                request_id=request_id,
            )
        await self.billing.refresh()
        return await self.account(actor, team_id)

    async def credit_entries(
        self, viewer: Principal, team_id: str, paging: Paging = FIRST
    ) -> tuple[list[dict[str, Any]], Page]:
        """A page of a team's credit entries, newest first."""
        query = CREDITS_ORDER.select(sa.select(credits).where(credits.c.team_id == team_id), paging)
        async with self.database.engine.connect() as conn:
            await self._team(conn, viewer, team_id)
            page = CREDITS_ORDER.page((await conn.execute(query)).all(), paging)
        entries = [
            {
                "id": r.id,
                "object": "credit",
                "at": unix_seconds(r.at),
                "amount_micros": r.amount_micros,
                "kind": r.kind,
                "period": r.period,
                "note": r.note,
                "created_by": r.created_by,
            }
            for r in page.rows
        ]
        return entries, page

    # ------------------------------------------------------------------ presets

    async def publish(
        self, actor: Principal, values: dict[str, Any], request_id: str | None
    ) -> dict[str, Any]:
        team_id = values["team_id"]
        if not may_manage(actor, team_id):
            raise PermissionDenied(
                "Only the team's owners and admins may publish its presets.", param="team_id"
            )
        if not actor.may_use(values["alias"]):
            raise PermissionDenied(
                f"The publishing key may not use the model '{values['alias']}', so it cannot publish "
                "a preset on it.",
                param="model",
            )
        if values["revenue_share"] != "0" or values["share_cap_micros"] is not None:
            require_organisation_admin(actor, "set a preset's revenue share")
        row = {**values, "created_at": dt.datetime.now(dt.UTC), "created_by": actor.key_id}
        async with self.database.engine.begin() as conn:
            await self._team(conn, actor, team_id)
            existing = (
                await conn.execute(sa.select(presets).where(presets.c.name == values["name"]))
            ).first()
            if existing is not None and existing.deleted_at is None:
                raise InvalidRequest(f"A preset named '{values['name']}' already exists.", param="name")
            if existing is not None:
                await conn.execute(sa.delete(presets).where(presets.c.name == values["name"]))
            await conn.execute(sa.insert(presets).values(**row))
            stored = (await conn.execute(sa.select(presets).where(presets.c.name == values["name"]))).one()
            preset = describe_preset(stored)
            await self.audit.record(
                conn,
                actor,
                "preset.publish",
                "preset",
                values["name"],
                team_id=team_id,
                after=preset,
                request_id=request_id,
            )
        self.registry.presets[stored.name] = preset_of(stored)
        return preset

    async def list_presets(
        self, viewer: Principal, paging: Paging = FIRST
    ) -> tuple[list[dict[str, Any]], Page]:
        """A page of the published presets, by name: in full for its own team (and the
        organisation's admins), as `public_preset` for everyone else."""
        query = sa.select(presets).where(presets.c.deleted_at.is_(None))
        async with self.database.engine.connect() as conn:
            page = PRESETS_ORDER.page((await conn.execute(PRESETS_ORDER.select(query, paging))).all(), paging)
        full = organisation_reader(viewer)
        shown = [
            describe_preset(r) if full or r.team_id == viewer.team_id else public_preset(r) for r in page.rows
        ]
        return shown, page

    async def withdraw(self, actor: Principal, name: str, request_id: str | None) -> dict[str, Any]:
        async with self.database.engine.begin() as conn:
            row = (await conn.execute(sa.select(presets).where(presets.c.name == name))).first()
            if row is None or row.deleted_at is not None:
                raise ResourceNotFound(f"No preset named '{name}'.", param="name")
            if not may_manage(actor, row.team_id):
                raise PermissionDenied("Only the team's owners and admins may withdraw its presets.")
            await conn.execute(
                sa.update(presets).where(presets.c.name == name).values(deleted_at=dt.datetime.now(dt.UTC))
            )
            await self.audit.record(
                conn,
                actor,
                "preset.withdraw",
                "preset",
                name,
                team_id=row.team_id,
                before=describe_preset(row),
                request_id=request_id,
            )
        self.registry.presets.pop(name, None)
        return {"name": name, "object": "preset.deleted", "deleted": True}


def _terms(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A team's terms as the audit log records them."""
    return {"plan_id": row["plan_id"], "markup": row["markup"], "prepaid": bool(row["prepaid"])}
