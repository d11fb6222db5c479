"""Gemini's (and Vertex AI's) error answers on the error tree: `{"error": {"code", "message",
"status"}}`, over HTTP and as an event inside a stream (there, `code` is the status). The status
string becomes OpenAI's `type`; "The input token count (N) exceeds the maximum number of tokens
allowed (M)" is a context-window refusal (`context_length_exceeded`)."""

from __future__ import annotations

from turnout.domain.errors import TurnoutError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.providers.gemini.wire import ErrorDetail, error_decoder
from turnout.providers.upstream_errors import UpstreamErrorBody, bounded_seconds, classify, mentions

CONTEXT_PHRASES = ("exceeds the maximum number of tokens", "input token count", "too long")
# google.rpc.Code names and their HTTP statuses (cloud.google.com/apis/design/errors), for an error
# inside a stream whose numeric code is missing.
STATUS_OF = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "NOT_IMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def parse_error_body(raw: bytes) -> UpstreamErrorBody:
    try:
        body = error_decoder.decode(raw)
    except DECODE_ERRORS:
        return UpstreamErrorBody()
    return error_body(body.error)


def error_body(error: ErrorDetail | None) -> UpstreamErrorBody:
    if error is None:
        return UpstreamErrorBody()
    kind = (error.status or "").lower() or None
    wait = retry_delay(error.details)
    if mentions(error.message, CONTEXT_PHRASES):
        return UpstreamErrorBody(
            message=error.message,
            type=kind,
            code="context_length_exceeded",
            refusal="context_window",
            retry_after_s=wait,
        )
    return UpstreamErrorBody(message=error.message, type=kind, retry_after_s=wait)


def retry_delay(details: object) -> float | None:
    """The wait a `google.rpc.RetryInfo` detail asks for (`"retryDelay": "27s"`, a Duration in
    its JSON form: seconds with up to nine decimals and an `s`), as Gemini's 429s carry it."""
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s") and 1 < len(delay) <= 32:
                try:
                    return bounded_seconds(float(delay[:-1]))
                except ValueError:
                    return None
    return None


def stream_error(error: ErrorDetail, provider: str) -> TurnoutError:
    """The error for an `{"error": {...}}` event inside a stream, as the same error over HTTP."""
    status = error.code if error.code is not None and 100 <= error.code <= 599 else None
    if status is None:
        status = STATUS_OF.get(error.status or "", 500)
    return classify(status, error_body(error), provider=provider, in_stream=True)
