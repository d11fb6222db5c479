"""Cohere's error answers (`{"message": ...}`, the meaning in the HTTP status) on the error tree; a
message about too many tokens is a context-window refusal (`context_length_exceeded`). A stream that
fails says so in its `message-end` (finish reason `ERROR`, no status): an upstream failure."""

from __future__ import annotations

from turnout.domain.errors import TurnoutError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.providers.cohere.wire import error_decoder
from turnout.providers.upstream_errors import UpstreamErrorBody, classify, mentions

# "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4524"
CONTEXT_PHRASES = ("too many tokens", "context length", "exceeds the maximum")


def parse_error_body(raw: bytes) -> UpstreamErrorBody:
    try:
        body = error_decoder.decode(raw)
    except DECODE_ERRORS:
        return UpstreamErrorBody()
    return error_body(body.message)


def error_body(message: str | None) -> UpstreamErrorBody:
    if mentions(message, CONTEXT_PHRASES):
        return UpstreamErrorBody(message=message, code="context_length_exceeded", refusal="context_window")
    return UpstreamErrorBody(message=message)


def stream_error(message: str | None, provider: str) -> TurnoutError:
    """The error for a stream that ended with finish reason `ERROR`: Cohere failing mid-answer."""
    return classify(500, error_body(message), provider=provider, in_stream=True)
