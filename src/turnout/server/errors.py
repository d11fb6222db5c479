"""Errors on the wire, rendered in one place: OpenAI's `{"error": {...}}` body, or the terminal SSE
event a stream ends with when it fails after its first byte (no `[DONE]` follows it)."""

from __future__ import annotations

import orjson

from turnout.domain.errors import TurnoutError


def error_body(error: TurnoutError) -> bytes:
    body: dict[str, object] = {
        "message": error.message,
        "type": error.error_type,
        "param": error.param,
        "code": error.code,
    }
    details = error.details()
    if details:
        body.update(details)
    return orjson.dumps({"error": body})


def error_event(error: TurnoutError) -> bytes:
    return b"data: " + error_body(error) + b"\n\n"
