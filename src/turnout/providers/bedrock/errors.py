"""Bedrock's error answers on the error tree. An error answer is `{"message": ...}` with the meaning
in its HTTP status (400 ValidationException, 403 AccessDeniedException, 404 ResourceNotFound,
408 ModelTimeout, 424 ModelError, 429 Throttling / ModelNotReady, 500 InternalServer,
503 ServiceUnavailable). Inside a ConverseStream an error is an exception message instead
(`:exception-type: throttlingException` ...) or an error message (`:error-code`), classified with
the status its shape has in the service model. "Input is too long for requested model" is a
context-window refusal, "blocked by our content filters" a content-policy one."""

from __future__ import annotations

from turnout.domain.errors import Refusal, TurnoutError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.providers.bedrock.wire import error_decoder
from turnout.providers.upstream_errors import UpstreamErrorBody, classify, mentions

# Bedrock hosts many model families: its own phrase and theirs (Anthropic's "prompt is too long").
CONTEXT_PHRASES = ("too long", "too many input tokens", "context window", "context length")
POLICY_PHRASES = ("blocked by our content filters",)

# The HTTP status of each exception shape (bedrock-runtime's service model), by its name in lower
# case: stream exceptions are camelCase (`throttlingException`), error codes capitalised.
STATUS_OF = {
    "validationexception": 400,
    "servicequotaexceededexception": 400,
    "accessdeniedexception": 403,
    "unrecognizedclientexception": 403,
    "resourcenotfoundexception": 404,
    "modeltimeoutexception": 408,
    "modelerrorexception": 424,
    "modelstreamerrorexception": 424,
    "throttlingexception": 429,
    "modelnotreadyexception": 429,
    "internalserverexception": 500,
    "internalfailure": 500,
    "serviceunavailableexception": 503,
}


def parse_error_body(raw: bytes) -> UpstreamErrorBody:
    try:
        body = error_decoder.decode(raw)
    except DECODE_ERRORS:
        return UpstreamErrorBody()
    return error_body(body.message or body.capitalised)


def error_body(message: str | None) -> UpstreamErrorBody:
    refusal: Refusal | None = None
    code = None
    if mentions(message, CONTEXT_PHRASES):
        refusal, code = "context_window", "context_length_exceeded"
    elif mentions(message, POLICY_PHRASES):
        refusal = "content_policy"
    return UpstreamErrorBody(message=message, code=code, refusal=refusal)


def error_from_exception(kind: str, message: str | None, provider: str) -> TurnoutError:
    """The error for an exception or error message in a ConverseStream (`kind` is its
    `:exception-type` or `:error-code`), as the same exception over HTTP."""
    status = STATUS_OF.get(kind.lower(), 500)
    return classify(status, error_body(message), provider=provider, in_stream=True, event=kind)
