"""A request body for an upstream, as JSON bytes. orjson reads JSON nested deeper (1024 levels) than
it writes (254): a client's free-form value (a tool's schema, metadata) between the two is the
client's 400, never a crash of the adapter that rewrites the body for its wire format."""

from __future__ import annotations

from typing import Any

import orjson

from turnout.domain.errors import InvalidRequest


def request_json(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        raise InvalidRequest("The request body is nested too deeply.", code="invalid_json") from None
