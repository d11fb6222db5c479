"""Plans, credit changes and presets as an admin writes them (the admin API's bodies and the
console's forms alike), checked and read into the values `BillingService` stores: a plan prices by a
markup or by fixed prices, a top-up is positive, a preset calls a model that exists with parameters
that make a valid request and shares at most all of what its callers pay."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson

from turnout.domain.amounts import usd
from turnout.domain.chat import parse_chat_request
from turnout.domain.errors import InvalidRequest, TurnoutError
from turnout.domain.pricing import Micros, decimal_price
from turnout.domain.steering_fields import steers
from turnout.routing.catalog import Catalog

PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
PRESET_FIXED = ("model", "messages", "stream", "stream_options", "n")
CREDIT_KINDS = ("topup", "adjustment")


def markup(value: str, param: str) -> Decimal:
    try:
        found = decimal_price(value)
    except ValueError:
        raise InvalidRequest(f"'{param}' must be a decimal number such as \"1.25\".", param=param) from None
    if found <= 0:
        raise InvalidRequest(f"'{param}' must be more than 0.", param=param)
    return found


def price(value: str, param: str) -> str:
    try:
        return str(decimal_price(value))
    except ValueError as error:
        raise InvalidRequest(f"'{param}': {error}", param=param) from None


def plan_values(
    name: str,
    by_markup: str | None,
    prices: tuple[str, str] | None,
    included_tokens: int,
    monthly_fee: str | None,
) -> dict[str, Any]:
    """A new plan's stored values: priced by `by_markup` or by `prices` (input, output: USD per 1M
    tokens), exactly one of the two."""
    if not name.strip() or len(name) > 200:
        raise InvalidRequest("'name' must be 1-200 characters.", param="name")
    if (by_markup is None) == (prices is None):
        raise InvalidRequest("A plan prices by 'markup' or by 'prices', one of the two.", param="markup")
    if included_tokens < 0:
        raise InvalidRequest("'included_tokens' cannot be negative.", param="included_tokens")
    return {
        "name": name.strip(),
        "markup": None if by_markup is None else str(markup(by_markup, "markup")),
        "input_price": None if prices is None else price(prices[0], "prices.input"),
        "output_price": None if prices is None else price(prices[1], "prices.output"),
        "included_tokens": included_tokens,
        "monthly_fee_micros": 0 if monthly_fee is None else usd(monthly_fee, "monthly_fee"),
    }


def credit_amount(amount: str, kind: str) -> Micros:
    """A credit change in micro-dollars, signed: a top-up is positive, an adjustment either way."""
    if kind not in CREDIT_KINDS:
        raise InvalidRequest("'kind' must be 'topup' or 'adjustment'.", param="kind")
    negative = amount.strip().startswith("-")
    if negative and kind == "topup":
        raise InvalidRequest(
            "A top-up must be positive (use kind 'adjustment' to take credit away).", param="amount"
        )
    value = usd(amount.strip().lstrip("-"), "amount")
    return -value if negative else value


def preset_values(
    catalog: Catalog,
    *,
    name: str,
    team_id: str,
    model: str,
    description: str | None,
    system_prompt: str | None,
    params: dict[str, Any] | None,
    revenue_share: str,
    share_cap: str | None,
) -> dict[str, Any]:
    """A preset's stored values (`team_id` already resolved from a name)."""
    if not PRESET_NAME.match(name):
        raise InvalidRequest("'name' must be 1-100 letters, digits, '.', '_' or '-'.", param="name")
    route = catalog.resolve(model)
    if route is None or "*" in model:
        raise InvalidRequest(f"The model '{model}' does not exist.", param="model")
    params = params or {}
    fixed = [p for p in PRESET_FIXED if p in params]
    if fixed:
        raise InvalidRequest(f"A preset cannot set '{fixed[0]}'.", param=f"params.{fixed[0]}")
    steering = [p for p in params if steers(p)]
    if steering:  # a preset's parameters reach the upstream as a request's own would
        raise InvalidRequest(
            f"A preset cannot set '{steering[0]}': turnout chooses the upstream, its address and its "
            "credentials.",
            param=f"params.{steering[0]}",
            code="forbidden_parameter",
        )
    try:  # its parameters must make a valid request
        parse_chat_request({**params, "model": model, "messages": [{"role": "user", "content": "x"}]})
    except TurnoutError as error:
        param = f"params.{error.param}" if error.param else "params"
        raise InvalidRequest(error.message, param=param) from None
    share = price(revenue_share, "revenue_share")
    if Decimal(share) > 1:
        raise InvalidRequest(
            "'revenue_share' is a fraction of what callers pay: 0 to 1.", param="revenue_share"
        )
    if description is not None and len(description) > 500:
        raise InvalidRequest("'description' must be at most 500 characters.", param="description")
    return {
        "name": name,
        "team_id": team_id,
        "description": description,
        "alias": route.alias,
        "system_prompt": system_prompt,
        "params": orjson.dumps(params).decode() if params else None,
        "revenue_share": share,
        "share_cap_micros": None if share_cap is None else usd(share_cap, "share_cap"),
    }
