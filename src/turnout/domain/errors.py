"""The error tree: every failure turnout reports, with its HTTP status and OpenAI error type/code.

Caller errors (`ClientError`) are never retried. Upstream errors (`UpstreamError`) may be retried
or failed over (`retryable`); they are what circuit breakers and fallbacks react to. Rendering to
the wire happens in one place (`turnout.server.errors`); nothing here knows about HTTP frameworks.
"""

from __future__ import annotations

from typing import Literal

# A provider's refusal that another alias may still serve (the alias's own fallback chain for it):
# the request is longer than the model's context window, or the provider's content policy refused it.
# Set by each wire format's error classifier, so routing never reads error messages.
Refusal = Literal["context_window", "content_policy"]


# The ledger's reason for an attempt or a request the client left before it was answered (recorded
# with status 499, as nginx logs a client that closed its connection).
CLIENT_CLOSED = "client_closed"
SHUT_DOWN = "gateway_shutdown"  # ... and for one the gateway's shutdown cut short (GatewayShutdown)


class TurnoutError(Exception):
    """Base of every error turnout reports to a client."""

    status: int = 500
    error_type: str = "server_error"
    code: str | None = None
    retryable: bool = False
    attempts: int = 0  # upstream attempts made before this error was reported
    # what refused the request before any provider was called (a budget, prepaid credit, a
    # limit), for the metrics' `turnout_refusals_total{kind}`; None: not such a refusal
    refused_by: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Extra response headers this error carries (e.g. Retry-After)."""
        return []

    def details(self) -> dict[str, object] | None:
        """Fields added to the error object beside message, type, param and code (rare)."""
        return None

    @property
    def reason(self) -> str:
        """Why a request or an attempt failed, as the ledger records it: the error's code."""
        return self.code or self.error_type


# --------------------------------------------------------------------------- caller errors


class ClientError(TurnoutError):
    """The request itself is at fault; retrying it unchanged cannot help."""

    status = 400
    error_type = "invalid_request_error"


class InvalidRequest(ClientError):
    """Malformed JSON, a wrong type, a missing field or a value out of range (400)."""

    code = "invalid_value"


class ConfigurationRejected(ClientError):
    """A reload found the configuration invalid and kept the running one (422); `problems` holds
    each fault with its dotted path, as `turnout config check` prints them."""

    status = 422
    code = "invalid_configuration"

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems

    def details(self) -> dict[str, object] | None:
        return {"problems": self.problems}


class UnsupportedFeature(ClientError):
    """The request needs a capability no target of its model has (400)."""

    code = "unsupported_feature"


class AuthenticationFailed(ClientError):
    """No key, or a key turnout does not know (401)."""

    status = 401
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    """A valid key that may not do this (403)."""

    status = 403
    code = "permission_denied"


class ModelNotFound(ClientError):
    """The requested model alias does not exist, or the key may not see it (404)."""

    status = 404
    code = "model_not_found"


class BudgetExhausted(ClientError):
    """The key's budget cannot cover this request (429 `insufficient_quota`, as OpenAI answers when
    an account is out of credit; never retried, nothing was sent to a provider)."""

    status = 429
    error_type = "insufficient_quota"
    code = "insufficient_quota"
    refused_by = "budget"


class CreditExhausted(BudgetExhausted):
    """The team's prepaid credit cannot cover this request (the same answer as a budget's)."""

    refused_by = "credit"


class TooManyFailedAuthentications(ClientError):
    """Too many requests from the client's address failed to authenticate lately: refused before its
    key is looked at, until the window ends (429 with Retry-After)."""

    status = 429
    error_type = "rate_limit_error"
    code = "too_many_failed_authentications"
    refused_by = "failed_authentications"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.retry_after).encode())]


class RouteNotFound(ClientError):
    """No such endpoint (404)."""

    status = 404
    code = "not_found"


class ResourceNotFound(ClientError):
    """No such object (a stored response, say), or one the key may not see (404)."""

    status = 404
    code = "not_found"


class MethodNotAllowed(ClientError):
    """The endpoint exists but not for this HTTP method (405)."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"allow", ", ".join(self.allowed).encode())]


class RequestTooLarge(ClientError):
    """The body is over the configured limit; refused before it is read in full (413)."""

    status = 413
    code = "request_too_large"


class UnsupportedMediaType(ClientError):
    """The body is not JSON (415)."""

    status = 415
    code = "unsupported_media_type"


class UpstreamRejected(ClientError):
    """The provider refused the request as invalid (its own 4xx), passed on faithfully."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_type: str,
        param: str | None,
        code: str | None,
        retry_after: str | None = None,
        refusal: Refusal | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.status = status
        self.error_type = error_type
        self.code = code
        self.retry_after = retry_after
        self.refusal = refusal
        # A provider's 429 means "that provider is busy", which another deployment may not be.
        self.retryable = status in (408, 409, 429)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", self.retry_after.encode())] if self.retry_after else []


class UpstreamRateLimited(UpstreamRejected):
    """The provider's 429: it is busy, not broken. Its deployment cools down for `retry_after_s`
    (or a short default) and its circuit breaker is left alone; the client, if no other deployment
    answers, gets the provider's 429 with a Retry-After."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None,
        error_type: str = "rate_limit_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        shown = None if retry_after_s is None else str(max(1, round(retry_after_s)))
        super().__init__(
            message, status=429, error_type=error_type, param=param, code=code, retry_after=shown
        )
        self.retry_after_s = retry_after_s


# --------------------------------------------------------------------------- refused at the HTTP edge
# (by the HTTP protocol itself, before a request is authenticated or reaches the application)


class MalformedRequest(ClientError):
    """Bytes that are not an HTTP/1.1 request (400)."""

    code = "malformed_request"


class RequestTimeout(ClientError):
    """The request arrived too slowly: its head not within `server.limits.header_timeout`, or its
    body below `server.limits.body_min_rate` (408; the connection is closed)."""

    status = 408
    code = "request_timeout"


class UriTooLong(ClientError):
    """The request target is longer than `server.limits.max_request_line` (414)."""

    status = 414
    code = "uri_too_long"


class HeadersTooLarge(ClientError):
    """More header fields, or more bytes of head, than `server.limits` allow (431)."""

    status = 431
    code = "headers_too_large"


# --------------------------------------------------------------------------- upstream errors


class UpstreamError(TurnoutError):
    """The provider failed us; another attempt or another deployment may succeed."""

    status = 502
    error_type = "upstream_error"
    retryable = True

    def __init__(
        self, message: str, *, deployment: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.deployment = deployment
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(max(1, round(self.retry_after))).encode())]


class UpstreamConnectionError(UpstreamError):
    """Could not connect, or the connection broke (502)."""

    code = "upstream_connection_error"


class UpstreamStaleConnection(UpstreamConnectionError):
    """A connection taken from the pool closed before any byte of an answer came back: the upstream
    had closed it while idle (it never saw the request) or crashed after reading it; nothing tells
    the two apart. Never resent silently: it is an attempt like any other, counted and recorded."""


class UpstreamAnswerCut(UpstreamError):
    """The provider answered a non-streamed chat request 2xx, but its body broke off before it was
    complete (short of its content-length, a chunked body cut, the connection reset or stalled
    mid-body). The provider generated that answer and bills for it, so it is never sent again to
    another deployment (502; a failure of its deployment all the same). `received` is what did
    arrive (decompressed), for counting what the provider produced."""

    code = "upstream_answer_cut"
    retryable = False

    def __init__(self, message: str, *, received: bytes, deployment: str | None = None) -> None:
        super().__init__(message, deployment=deployment)
        self.received = received

    def headers(self) -> list[tuple[bytes, bytes]]:
        # an SDK retrying a 502 would have it generated and billed a second time
        return [(b"x-should-retry", b"false")]


class UpstreamTimeout(UpstreamError):
    """The provider did not answer in time: connect, first byte, idle or total (504)."""

    status = 504
    error_type = "timeout_error"
    code = "upstream_timeout"

    def __init__(self, message: str, *, phase: str, deployment: str | None = None) -> None:
        super().__init__(message, deployment=deployment)
        self.phase = phase


class UpstreamServerError(UpstreamError):
    """The provider answered 5xx (502, or 503 when it says it is overloaded/unavailable)."""

    code = "upstream_server_error"

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int,
        deployment: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, deployment=deployment, retry_after=retry_after)
        self.upstream_status = upstream_status
        if upstream_status in (503, 529):
            self.status = 503
            self.code = "upstream_unavailable"


class UpstreamAuthError(UpstreamError):
    """The provider rejected turnout's own credentials: an operator must fix them (502).

    Never reported as 401, which would tell the client its (valid) turnout key is wrong.
    """

    code = "upstream_auth_error"


class UpstreamProtocolError(UpstreamError):
    """The provider's answer was not what its wire format promises (502)."""

    code = "bad_upstream_response"


class NoUpstreamAvailable(UpstreamError):
    """No deployment can take the request now (503)."""

    status = 503
    error_type = "service_unavailable"
    code = "no_upstream_available"


# --------------------------------------------------------------------------- our own failures


class ServiceUnavailable(TurnoutError):
    """turnout itself cannot serve now: starting, draining, or a store it needs is down (503)."""

    status = 503
    error_type = "service_unavailable"
    code = "service_unavailable"


class GatewayShutdown(ServiceUnavailable):
    """The gateway is stopping and its shutdown grace (`server.shutdown_grace`) ran out with this
    request still running: turnout cut it short (503; a stream ends with this as its error event).
    Not the client's doing, so never recorded as a client that left (499)."""

    code = SHUT_DOWN

    def __init__(self) -> None:
        super().__init__(
            "The gateway is shutting down and its grace period ran out before this answer was "
            "complete; retry the request."
        )


class LedgerUnavailable(ServiceUnavailable):
    """The spend ledger's journal cannot be written (its disk full, out of inodes, read-only or
    failing): refused before any provider is called, so nothing is spent unrecorded (503, with
    Retry-After)."""

    code = "ledger_unavailable"
    refused_by = "ledger_unavailable"
    retry_after = 5

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.retry_after).encode())]


class Overloaded(ServiceUnavailable):
    """This instance has as many requests in progress as it can serve well (`server.overload`) and
    its short queue is full or was waited in too long: refused at once, before anything is read
    or spent (503, with Retry-After). Requests of a lower priority class are refused first."""

    code = "overloaded"
    refused_by = "overloaded"  # (turnout_refusals_total)

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.retry_after).encode())]


class InternalError(TurnoutError):
    """A bug in turnout. The message never carries details of it (500)."""

    status = 500
    error_type = "server_error"
    code = "internal_error"


class Conflict(ClientError):
    """The object is not in a state that allows this: an approval already decided or expired (409)."""

    status = 409
    code = "action_already_decided"
