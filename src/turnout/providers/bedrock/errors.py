"""Bedrock's error answers on the error tree. An error answer is `{"message": ...}` with the meaning
in its HTTP status (400 ValidationException, 403 AccessDeniedException, 404 ResourceNotFound,
408 ModelTimeout, 424 ModelError, 429 Throttling / ModelNotReady, 500 InternalServer,
503 ServiceUnavailable). Inside a ConverseStream an error is an exception message instead
(`:exception-type: throttlingException` ...), mapped here with the status its shape documents."""

from __future__ import annotations

from turnout.domain.errors import TurnoutError, UpstreamRejected, UpstreamServerError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.observability.redaction import redact
from turnout.providers.bedrock.wire import error_decoder
from turnout.providers.upstream_errors import UpstreamErrorBody

CONTEXT_PHRASES = ("too long", "too many input tokens", "context window", "context length")

# The HTTP status each stream exception has in the service model, and OpenAI's error type for it.
STREAM_EXCEPTIONS = {
    "validationException": (400, "invalid_request_error"),
    "throttlingException": (429, "rate_limit_error"),
    "modelStreamErrorException": (424, "model_error"),
    "internalServerException": (500, "server_error"),
    "serviceUnavailableException": (503, "service_unavailable"),
}


def parse_error_body(raw: bytes) -> UpstreamErrorBody:
    try:
        body = error_decoder.decode(raw)
    except DECODE_ERRORS:
        return UpstreamErrorBody()
    message = body.message or body.capitalised
    code = None
    if message and any(p in message.lower() for p in CONTEXT_PHRASES):
        code = "context_length_exceeded"  # so that context-window fallbacks apply
    return UpstreamErrorBody(message=message, code=code)


def error_from_exception(kind: str, message: str | None, provider: str) -> TurnoutError:
    """The error for an exception message in a ConverseStream (`kind` is its `:exception-type`)."""
    text = redact(message) if message else "no details given"
    status, error_type = STREAM_EXCEPTIONS.get(kind, (500, "server_error"))
    if status in (400, 429):
        return UpstreamRejected(text, status=status, error_type=error_type, param=None, code=None)
    # a model failing mid-answer (424), or Bedrock failing: the upstream's fault, retryable elsewhere
    return UpstreamServerError(
        f"The provider '{provider}' reported an error during the stream ({kind}): {text}",
        upstream_status=status,
    )
