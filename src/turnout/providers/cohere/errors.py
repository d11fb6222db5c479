"""Cohere's error answers (`{"message": ...}`, the meaning in the HTTP status) on the error tree; a
message about too many tokens becomes `context_length_exceeded`."""

from __future__ import annotations

from turnout.domain.malformed import DECODE_ERRORS
from turnout.providers.cohere.wire import error_decoder
from turnout.providers.upstream_errors import UpstreamErrorBody

CONTEXT_PHRASES = ("too many tokens", "context length", "exceeds the maximum")


def parse_error_body(raw: bytes) -> UpstreamErrorBody:
    try:
        body = error_decoder.decode(raw)
    except DECODE_ERRORS:
        return UpstreamErrorBody()
    message = body.message
    code = (
        "context_length_exceeded" if message and any(p in message.lower() for p in CONTEXT_PHRASES) else None
    )
    return UpstreamErrorBody(message=message, code=code)
