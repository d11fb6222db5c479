"""Reading an admin request (its JSON body as a typed struct, amounts of money) and answering it.

A body is held to turnout's limits for JSON (no deeper than 128 levels, integers in 64 bits:
domain/json_body.py), and the free-form JSON it stores (keys' and teams' `metadata`, a preset's
`params`) to bounds of its own, so that nothing an admin sends can fail later when it is stored,
encoded or read back."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from turnout.domain.amounts import MAX_USD as MAX_USD
from turnout.domain.amounts import usd as usd
from turnout.domain.errors import InvalidRequest
from turnout.domain.json_body import METADATA, FreeForm, check_free_form, decode
from turnout.server.exchange import Exchange


async def reply(x: Exchange, body: dict[str, Any]) -> None:
    """200 with the result, or 202 when it is an action waiting for a second admin."""
    await x.send_json(202 if body.get("object") == "pending_action" else 200, orjson.dumps(body))


# A preset's `params` are request defaults (tools with their JSON schemas among them): larger and
# deeper than metadata, still far below what a request body may be.
PRESET_PARAMS = FreeForm(max_bytes=256 * 1024, max_depth=64, max_keys=4096)
FREE_FORM = {"metadata": METADATA, "params": PRESET_PARAMS}


def decode_body(raw: bytes, kind: type[msgspec.Struct]) -> Any:
    """An admin request's JSON body as `kind`, or a 400 naming the field at fault."""
    doc = decode(raw or b"{}")
    try:
        body = msgspec.convert(doc, kind)
    except msgspec.ValidationError as error:
        path = str(error).rsplit(" - at `$.", 1)
        param = path[1].rstrip("`") if len(path) == 2 else None
        raise InvalidRequest(str(error).split(" - at ")[0] + ".", param=param) from None
    for name, bounds in FREE_FORM.items():
        value = getattr(body, name, None)
        if isinstance(value, dict):
            check_free_form(value, name, bounds)
    return body
