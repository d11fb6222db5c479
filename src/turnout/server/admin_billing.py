"""/admin/plans, /admin/teams/{id}/billing and /credits, /admin/presets: customer billing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec
import orjson

from turnout.domain.principal import Principal
from turnout.routing.catalog import Catalog
from turnout.server.admin_body import decode_body
from turnout.server.admin_query import paging, query_params, send_page
from turnout.server.exchange import Exchange
from turnout.spend.billing_service import BillingService
from turnout.spend.billing_terms import credit_amount, markup, plan_values, preset_values
from turnout.teams.names import Names


class TokenPrices(msgspec.Struct, forbid_unknown_fields=True):
    input: str
    output: str = "0"


class NewPlan(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    markup: str | None = None  # customer price = cost times this ("1.25")
    prices: TokenPrices | None = None  # or fixed USD per 1M tokens, any model
    included_tokens: int = 0  # free each month
    monthly_fee: str | None = None  # USD


class TeamTerms(msgspec.Struct, forbid_unknown_fields=True):
    plan_id: str | None = None
    markup: str | None = None  # overrides the plan's pricing
    prepaid: bool = False  # stop at a zero balance


class CreditChange(msgspec.Struct, forbid_unknown_fields=True):
    amount: str  # USD; a top-up is positive, an adjustment either way
    kind: Literal["topup", "adjustment"] = "topup"
    note: str | None = None


class NewPreset(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    team_id: str  # or the team's name
    model: str  # the alias it calls
    description: str | None = None  # what it is for (shown to every team)
    system_prompt: str | None = None
    params: dict[str, Any] | None = None  # defaults for the caller's request
    revenue_share: str = "0"  # of what callers pay, credited to the team (0..1)
    share_cap: str | None = None  # USD a month


class AdminBilling:
    def __init__(self, service: BillingService, catalog: Callable[[], Catalog], names: Names) -> None:
        self.service = service
        self._catalog = catalog  # the current one (a reload replaces it)
        self.names = names

    @property
    def catalog(self) -> Catalog:
        return self._catalog()

    async def create_plan(self, x: Exchange, caller: Principal) -> None:
        body: NewPlan = decode_body(await x.body(), NewPlan)
        prices = None if body.prices is None else (body.prices.input, body.prices.output)
        values = plan_values(body.name, body.markup, prices, body.included_tokens, body.monthly_fee)
        plan = await self.service.create_plan(caller, values, x.request_id)
        await x.send_json(200, orjson.dumps(plan))

    async def list_plans(self, x: Exchange, caller: Principal) -> None:
        await send_page(x, *await self.service.list_plans(caller, paging(query_params(x))))

    async def terms(self, x: Exchange, caller: Principal, team_id: str) -> None:
        if x.scope["method"] == "GET":
            await x.send_json(200, orjson.dumps(await self.service.account(caller, team_id)))
            return
        body: TeamTerms = decode_body(await x.body(), TeamTerms)
        by_markup = None if body.markup is None else markup(body.markup, "markup")
        account = await self.service.set_terms(
            caller, team_id, body.plan_id, by_markup, body.prepaid, x.request_id
        )
        await x.send_json(200, orjson.dumps(account))

    async def credits(self, x: Exchange, caller: Principal, team_id: str) -> None:
        if x.scope["method"] == "GET":
            data, page = await self.service.credit_entries(caller, team_id, paging(query_params(x)))
            account = await self.service.account(caller, team_id)
            await send_page(x, data, page, account=account)
            return
        body: CreditChange = decode_body(await x.body(), CreditChange)
        amount = credit_amount(body.amount, body.kind)
        note = None if body.note is None else body.note[:500]
        account = await self.service.top_up(caller, team_id, amount, body.kind, note, x.request_id)
        await x.send_json(200, orjson.dumps(account))

    async def publish(self, x: Exchange, caller: Principal) -> None:
        body: NewPreset = decode_body(await x.body(), NewPreset)
        values = preset_values(
            self.catalog,
            name=body.name,
            team_id=await self.names.team(body.team_id) or body.team_id,
            model=body.model,
            description=body.description,
            system_prompt=body.system_prompt,
            params=body.params,
            revenue_share=body.revenue_share,
            share_cap=body.share_cap,
        )
        await x.send_json(200, orjson.dumps(await self.service.publish(caller, values, x.request_id)))

    async def list_presets(self, x: Exchange, caller: Principal) -> None:
        """A page of the published presets (in full for the caller's own team), each with its
        model's price."""
        shown, page = await self.service.list_presets(caller, paging(query_params(x)))
        await send_page(x, [{**p, "price": self._price(p["alias"])} for p in shown], page)

    def _price(self, alias: str) -> dict[str, str] | None:
        """What the alias's first deployment costs, USD per 1M tokens (None: not known)."""
        route = self.catalog.resolve(alias)
        price = None if route is None or not route.targets else route.targets[0].price
        if price is None:
            return None
        return {"input": str(price.input), "output": str(price.output), "unit": "USD per 1M tokens"}

    async def withdraw(self, x: Exchange, caller: Principal, name: str) -> None:
        await x.send_json(200, orjson.dumps(await self.service.withdraw(caller, name, x.request_id)))
