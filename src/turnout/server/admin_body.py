"""Reading an admin request (its JSON body as a typed struct, amounts of money) and answering it."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from turnout.domain.errors import InvalidRequest
from turnout.domain.pricing import Micros, decimal_price
from turnout.server.exchange import Exchange


async def reply(x: Exchange, body: dict[str, Any]) -> None:
    """200 with the result, or 202 when it is an action waiting for a second admin."""
    await x.send_json(202 if body.get("object") == "pending_action" else 200, orjson.dumps(body))


def decode_body(raw: bytes, kind: type[msgspec.Struct]) -> Any:
    """An admin request's JSON body as `kind`, or a 400 naming the field at fault."""
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as error:
        path = str(error).rsplit(" - at `$.", 1)
        param = path[1].rstrip("`") if len(path) == 2 else None
        raise InvalidRequest(str(error).split(" - at ")[0] + ".", param=param) from None
    except msgspec.DecodeError:
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json") from None


def usd(value: str, param: str, *, zero: bool = False) -> Micros:
    """An amount of USD as written ("25.00") in micro-dollars; more than 0 unless `zero`."""
    try:
        amount = decimal_price(value) * 1_000_000
    except ValueError:
        raise InvalidRequest(f"'{param}' must be an amount of USD such as \"25.00\".", param=param) from None
    if amount != amount.to_integral_value():
        raise InvalidRequest(f"'{param}' has more than six decimals (a micro-dollar).", param=param)
    if amount < 0 or (amount == 0 and not zero):
        raise InvalidRequest(f"'{param}' must be more than 0 USD.", param=param)
    return int(amount)
