"""The console's billing and presets: plans, each team's terms, prepaid credit and top-ups, and the
published presets with what each earned its team — read and changed through `BillingService` with
the admin API's rules (spend/billing_terms.py checks the forms as it checks the API's bodies), so
only the organisation's owners and admins create plans, set terms and top up, a team's admin
publishes and withdraws their team's presets, and a team's admin or viewer reads their team's."""

from __future__ import annotations

import datetime as dt
from typing import Any

from turnout.app import Services
from turnout.console.pages import PAGE_SIZE, Visit
from turnout.console.rendering import Renderer
from turnout.console.web import Request, Response, redirect
from turnout.domain.errors import InvalidRequest
from turnout.domain.key_policy import organisation_reader
from turnout.spend.billing_terms import credit_amount, markup, plan_values, preset_values
from turnout.spend.preset_earnings import preset_earnings
from turnout.storage.paging import Paging
from turnout.teams.names import Names

MAX_TOKENS = 10**15


def _tokens(value: str | None, param: str) -> int:
    if value is None:
        return 0
    if not value.isdigit() or int(value) > MAX_TOKENS:
        raise InvalidRequest(f"'{param}' must be a whole number of tokens.", param=param)
    return int(value)


class BillingPages:
    def __init__(self, services: Services, renderer: Renderer) -> None:
        self.s = services
        self.r = renderer
        self.names = Names(services.database)

    def page(self, template: str, visit: Visit, **context: Any) -> Response:
        return self.r.page(template, 200, caller=visit.caller, csrf=visit.csrf, **context)

    # ------------------------------------------------------------------ plans and teams' accounts

    async def billing(self, request: Request, visit: Visit) -> Response:
        plans, _ = await self.s.billing_service.list_plans(visit.caller, Paging(200, None))
        teams, page = await self.s.directory.list_teams(
            visit.caller, Paging(PAGE_SIZE, request.text("after", 1000))
        )
        names = {t["id"]: t["name"] for t in teams}
        accounts = [
            {**account, "team_name": names[account["team_id"]]}
            for account in await self.s.billing_service.accounts(visit.caller, list(names))
        ]
        return self.page("billing.html", visit, plans=plans, accounts=accounts, next_cursor=page.next_cursor)

    async def create_plan(self, request: Request, visit: Visit) -> Response:
        by = request.text("pricing", 16) or "markup"
        prices = (request.text("input_price", 40) or "", request.text("output_price", 40) or "0")
        values = plan_values(
            request.text("name") or "",
            request.text("markup", 40) if by == "markup" else None,
            prices if by == "prices" else None,
            _tokens(request.text("included_tokens", 20), "included_tokens"),
            request.text("monthly_fee", 40),
        )
        await self.s.billing_service.create_plan(visit.caller, values, visit.request_id)
        return redirect(self.r.root + "/billing")

    # ------------------------------------------------------------------ one team's account

    async def team_billing(self, request: Request, visit: Visit, team_id: str) -> Response:
        team_id = await self.names.team(team_id) or team_id
        account = await self.s.billing_service.account(visit.caller, team_id)
        entries, page = await self.s.billing_service.credit_entries(
            visit.caller, team_id, Paging(PAGE_SIZE, request.text("after", 1000))
        )
        plans, _ = await self.s.billing_service.list_plans(visit.caller, Paging(200, None))
        return self.page(
            "team_billing.html",
            visit,
            account=account,
            entries=entries,
            next_cursor=page.next_cursor,
            plans=plans,
        )

    async def set_terms(self, request: Request, visit: Visit, team_id: str) -> Response:
        team_id = await self.names.team(team_id) or team_id
        given = request.text("markup", 40)
        await self.s.billing_service.set_terms(
            visit.caller,
            team_id,
            request.text("plan_id", 64),
            None if given is None else markup(given, "markup"),
            request.text("prepaid", 8) == "on",
            visit.request_id,
        )
        return redirect(f"{self.r.root}/teams/{team_id}/billing")

    async def change_credit(self, request: Request, visit: Visit, team_id: str) -> Response:
        team_id = await self.names.team(team_id) or team_id
        kind = request.text("kind", 16) or "topup"
        amount = credit_amount(request.text("amount", 40) or "", kind)
        await self.s.billing_service.top_up(
            visit.caller, team_id, amount, kind, request.text("note", 500), visit.request_id
        )
        return redirect(f"{self.r.root}/teams/{team_id}/billing")

    # ------------------------------------------------------------------ presets

    async def presets(self, request: Request, visit: Visit) -> Response:
        shown, page = await self.s.billing_service.list_presets(
            visit.caller, Paging(PAGE_SIZE, request.text("after", 1000))
        )
        everything = organisation_reader(visit.caller)
        own = [p["name"] for p in shown if everything or p.get("team_id") == visit.caller.team_id]
        earned = await preset_earnings(self.s.database, own, dt.datetime.now(dt.UTC))
        teams, _ = await self.s.directory.list_teams(visit.caller, Paging(200, None))
        return self.page(
            "presets.html",
            visit,
            presets=[{**p, "own": p["name"] in own, "earned": earned.get(p["name"], {})} for p in shown],
            next_cursor=page.next_cursor,
            teams=teams,
            aliases=sorted(a for a, m in self.s.settings.models.items() if not m.is_wildcard),
        )

    async def publish(self, request: Request, visit: Visit) -> Response:
        team = request.text("team") or visit.caller.team_id or ""
        values = preset_values(
            self.s.catalog,
            name=request.text("name", 100) or "",
            team_id=await self.names.team(team) or team,
            model=request.text("model", 256) or "",
            description=request.text("description", 500),
            system_prompt=request.text("system_prompt", 20_000),
            params=None,
            revenue_share=request.text("revenue_share", 40) or "0",
            share_cap=request.text("share_cap", 40),
        )
        await self.s.billing_service.publish(visit.caller, values, visit.request_id)
        return redirect(self.r.root + "/presets")

    async def withdraw(self, request: Request, visit: Visit, name: str) -> Response:
        await self.s.billing_service.withdraw(visit.caller, name, visit.request_id)
        return redirect(self.r.root + "/presets")
