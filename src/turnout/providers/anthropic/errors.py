"""Anthropic's error answers on the error tree. The body is `{"type": "error", "error": {"type",
"message"}}`; its HTTP status carries the meaning (529 overloaded is a retryable upstream failure),
and the error type is passed on as OpenAI's `type`."""

from __future__ import annotations

from turnout.domain.errors import TurnoutError, UpstreamRejected, UpstreamServerError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.observability.redaction import redact
from turnout.providers.anthropic.wire import ErrorDetail, error_decoder
from turnout.providers.upstream_errors import UpstreamErrorBody

# Anthropic's error types as statuses, for errors that arrive inside a stream (no status there).
STATUS_OF = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
CONTEXT_PHRASES = ("prompt is too long", "context window", "context length")


def parse_error_body(raw: bytes) -> UpstreamErrorBody:
    try:
        body = error_decoder.decode(raw)
    except DECODE_ERRORS:
        return UpstreamErrorBody()
    detail = body.error or ErrorDetail()
    code = None
    if detail.message and any(p in detail.message.lower() for p in CONTEXT_PHRASES):
        code = "context_length_exceeded"  # so that context-window fallbacks apply
    return UpstreamErrorBody(message=detail.message, type=detail.type, code=code)


def error_from_event(detail: ErrorDetail | None, provider: str) -> TurnoutError:
    detail = detail or ErrorDetail()
    message = redact(detail.message) if detail.message else "no details given"
    status = STATUS_OF.get(detail.type or "", 500)
    if 400 <= status < 500 and status not in (401, 403):
        return UpstreamRejected(
            message, status=status, error_type=detail.type or "invalid_request_error", param=None, code=None
        )
    return UpstreamServerError(
        f"The provider '{provider}' reported an error during the stream: {message}",
        upstream_status=status,
    )
