"""/admin/budgets: budgets per key, team or user and period, with their current window."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs

import msgspec
import orjson

from turnout.domain.errors import InvalidRequest
from turnout.domain.principal import Principal
from turnout.server.admin_body import decode_body, usd
from turnout.server.admin_query import paging, query_params, send_page
from turnout.server.exchange import Exchange
from turnout.spend.budget_service import BudgetService
from turnout.teams.names import Names


class NewBudget(msgspec.Struct, forbid_unknown_fields=True):
    scope: Literal["key", "team", "user"]
    subject_id: str  # a key's id; a team's id or name; a user's id or email
    limit: str  # USD, e.g. "100.00"
    period: Literal["daily", "weekly", "monthly", "never"] = "monthly"
    timezone: str = "UTC"
    soft_limit: str | None = None  # USD: an alert when reached


class AdminBudgets:
    def __init__(self, service: BudgetService, names: Names) -> None:
        self.service = service
        self.names = names

    async def _subject(self, scope: str | None, subject: str | None) -> str | None:
        """A team's budget may name the team, a user's the user's email."""
        if scope == "team":
            return await self.names.team(subject)
        return await self.names.user(subject) if scope == "user" else subject

    async def create(self, x: Exchange, caller: Principal) -> None:
        body: NewBudget = decode_body(await x.body(), NewBudget)
        limit = usd(body.limit, "limit")
        soft = None if body.soft_limit is None else usd(body.soft_limit, "soft_limit")
        budget = await self.service.set(
            caller,
            body.scope,
            await self._subject(body.scope, body.subject_id) or "",
            body.period,
            body.timezone,
            limit,
            soft,
            x.request_id,
        )
        await x.send_json(200, orjson.dumps(budget))

    async def list(self, x: Exchange, caller: Principal) -> None:
        # blank values kept: `?scope=` is a scope that is none of the three, not an absent one
        query = parse_qs(bytes(x.scope.get("query_string") or b"").decode("latin-1"), keep_blank_values=True)
        scope = query.get("scope", [None])[-1]
        if scope not in (None, "key", "team", "user"):
            raise InvalidRequest("'scope' must be key, team or user.", param="scope")
        subject = await self._subject(scope, query.get("subject_id", [None])[-1])
        await send_page(x, *await self.service.list(caller, scope, subject, paging(query_params(x))))

    async def one(self, x: Exchange, caller: Principal, budget_id: str) -> None:
        if x.scope["method"] == "DELETE":
            await x.send_json(200, orjson.dumps(await self.service.delete(caller, budget_id, x.request_id)))
        else:
            await x.send_json(200, orjson.dumps(await self.service.get(caller, budget_id)))
