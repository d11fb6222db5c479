"""Gemini's error answers on the error tree: `{"error": {"code", "message", "status"}}`. The
status string becomes OpenAI's `type`; a message about the input being too long becomes
`context_length_exceeded`, so that context-window fallbacks apply."""

from __future__ import annotations

from turnout.domain.malformed import DECODE_ERRORS
from turnout.providers.gemini.wire import error_decoder
from turnout.providers.upstream_errors import UpstreamErrorBody

CONTEXT_PHRASES = ("exceeds the maximum number of tokens", "input token count", "too long")


def parse_error_body(raw: bytes) -> UpstreamErrorBody:
    try:
        body = error_decoder.decode(raw)
    except DECODE_ERRORS:
        return UpstreamErrorBody()
    if body.error is None:
        return UpstreamErrorBody()
    message = body.error.message
    code = None
    if message and any(p in message.lower() for p in CONTEXT_PHRASES):
        code = "context_length_exceeded"
    kind = (body.error.status or "").lower() or None
    return UpstreamErrorBody(message=message, type=kind, code=code)
