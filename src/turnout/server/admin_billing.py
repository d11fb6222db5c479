"""/admin/plans, /admin/teams/{id}/billing and /credits, /admin/presets: customer billing."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

import msgspec
import orjson

from turnout.domain.chat import parse_chat_request
from turnout.domain.errors import InvalidRequest, TurnoutError
from turnout.domain.pricing import decimal_price
from turnout.domain.principal import Principal
from turnout.routing.catalog import Catalog
from turnout.server.admin_body import decode_body, usd
from turnout.server.admin_query import paging, query_params, send_page
from turnout.server.exchange import Exchange
from turnout.spend.billing_service import BillingService
from turnout.teams.names import Names

PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
PRESET_FIXED = ("model", "messages", "stream", "stream_options", "n")


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


def _markup(value: str, param: str) -> Decimal:
    try:
        markup = decimal_price(value)
    except ValueError:
        raise InvalidRequest(f"'{param}' must be a decimal number such as \"1.25\".", param=param) from None
    if markup <= 0:
        raise InvalidRequest(f"'{param}' must be more than 0.", param=param)
    return markup


def _price(value: str, param: str) -> str:
    try:
        return str(decimal_price(value))
    except ValueError as error:
        raise InvalidRequest(str(error), param=param) from None


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
        if not body.name.strip() or len(body.name) > 200:
            raise InvalidRequest("'name' must be 1-200 characters.", param="name")
        if (body.markup is None) == (body.prices is None):
            raise InvalidRequest("A plan prices by 'markup' or by 'prices', one of the two.", param="markup")
        if body.included_tokens < 0:
            raise InvalidRequest("'included_tokens' cannot be negative.", param="included_tokens")
        values = {
            "name": body.name.strip(),
            "markup": None if body.markup is None else str(_markup(body.markup, "markup")),
            "input_price": None if body.prices is None else _price(body.prices.input, "prices.input"),
            "output_price": None if body.prices is None else _price(body.prices.output, "prices.output"),
            "included_tokens": body.included_tokens,
            "monthly_fee_micros": 0 if body.monthly_fee is None else usd(body.monthly_fee, "monthly_fee"),
        }
        plan = await self.service.create_plan(caller, values, x.request_id)
        await x.send_json(200, orjson.dumps(plan))

    async def list_plans(self, x: Exchange, caller: Principal) -> None:
        await send_page(x, *await self.service.list_plans(caller, paging(query_params(x))))

    async def terms(self, x: Exchange, caller: Principal, team_id: str) -> None:
        if x.scope["method"] == "GET":
            await x.send_json(200, orjson.dumps(await self.service.account(caller, team_id)))
            return
        body: TeamTerms = decode_body(await x.body(), TeamTerms)
        markup = None if body.markup is None else _markup(body.markup, "markup")
        account = await self.service.set_terms(
            caller, team_id, body.plan_id, markup, body.prepaid, x.request_id
        )
        await x.send_json(200, orjson.dumps(account))

    async def credits(self, x: Exchange, caller: Principal, team_id: str) -> None:
        if x.scope["method"] == "GET":
            data, page = await self.service.credit_entries(caller, team_id, paging(query_params(x)))
            account = await self.service.account(caller, team_id)
            await send_page(x, data, page, account=account)
            return
        body: CreditChange = decode_body(await x.body(), CreditChange)
        negative = body.amount.strip().startswith("-")
        if negative and body.kind == "topup":
            raise InvalidRequest(
                "A top-up must be positive (use kind 'adjustment' to take credit away).", param="amount"
            )
        amount = usd(body.amount.strip().lstrip("-"), "amount")
        if note := body.note:
            note = note[:500]
        account = await self.service.top_up(
            caller, team_id, -amount if negative else amount, body.kind, note, x.request_id
        )
        await x.send_json(200, orjson.dumps(account))

    async def publish(self, x: Exchange, caller: Principal) -> None:
        body: NewPreset = decode_body(await x.body(), NewPreset)
        if not PRESET_NAME.match(body.name):
            raise InvalidRequest("'name' must be 1-100 letters, digits, '.', '_' or '-'.", param="name")
        route = self.catalog.resolve(body.model)
        if route is None or "*" in body.model:
            raise InvalidRequest(f"The model '{body.model}' does not exist.", param="model")
        params = body.params or {}
        fixed = [name for name in PRESET_FIXED if name in params]
        if fixed:
            raise InvalidRequest(f"A preset cannot set '{fixed[0]}'.", param=f"params.{fixed[0]}")
        try:  # its parameters must make a valid request
            parse_chat_request(
                {**params, "model": body.model, "messages": [{"role": "user", "content": "x"}]}
            )
        except TurnoutError as error:
            raise InvalidRequest(
                error.message, param=f"params.{error.param}" if error.param else "params"
            ) from None
        share = _price(body.revenue_share, "revenue_share")
        if Decimal(share) > 1:
            raise InvalidRequest(
                "'revenue_share' is a fraction of what callers pay: 0 to 1.", param="revenue_share"
            )
        if body.description is not None and len(body.description) > 500:
            raise InvalidRequest("'description' must be at most 500 characters.", param="description")
        values = {
            "name": body.name,
            "team_id": await self.names.team(body.team_id),
            "description": body.description,
            "alias": route.alias,
            "system_prompt": body.system_prompt,
            "params": orjson.dumps(params).decode() if params else None,
            "revenue_share": share,
            "share_cap_micros": None if body.share_cap is None else usd(body.share_cap, "share_cap"),
        }
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
