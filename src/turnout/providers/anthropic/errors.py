"""Anthropic's error answers on the error tree. The body is `{"type": "error", "error": {"type",
"message"}}`; over HTTP its status carries the meaning (529 overloaded is a retryable upstream
failure), inside a stream (an `error` event, no status) the status its documented type has. The
error type is passed on as OpenAI's `type`; "prompt is too long" is a context-window refusal."""

from __future__ import annotations

from turnout.domain.errors import TurnoutError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.providers.anthropic.wire import ErrorDetail, error_decoder
from turnout.providers.upstream_errors import UpstreamErrorBody, classify, mentions

# Anthropic's error types and their HTTP statuses (docs.anthropic.com, "Errors"), for errors that
# arrive inside a stream.
STATUS_OF = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
# "prompt is too long: 215000 tokens > 200000 maximum"; "input length and `max_tokens` exceed
# context limit: 188240 + 21333 > 200000".
CONTEXT_PHRASES = ("prompt is too long", "exceed context limit", "context window", "context length")


def parse_error_body(raw: bytes) -> UpstreamErrorBody:
    try:
        body = error_decoder.decode(raw)
    except DECODE_ERRORS:
        return UpstreamErrorBody()
    return error_body(body.error)


def error_body(detail: ErrorDetail | None) -> UpstreamErrorBody:
    detail = detail or ErrorDetail()
    if mentions(detail.message, CONTEXT_PHRASES):
        # the code OpenAI gives the same refusal, so that clients recognise it
        return UpstreamErrorBody(
            message=detail.message, type=detail.type, code="context_length_exceeded", refusal="context_window"
        )
    return UpstreamErrorBody(message=detail.message, type=detail.type)


def error_from_event(detail: ErrorDetail | None, provider: str) -> TurnoutError:
    """The error for an `error` event inside a stream, as the same error over HTTP."""
    body = error_body(detail)
    return classify(STATUS_OF.get(body.type or "", 500), body, provider=provider, in_stream=True)
