"""The one boundary between a provider's failures and the error tree: `classify` maps a status, the
wire format's parsed error body and a Retry-After onto it, for an error answer over HTTP and for an
error event inside a stream alike, so both mean the same to routing and to the client.

Each wire format's `errors` module reads its own error shapes into `UpstreamErrorBody` (and, for an
error inside a stream, which has no HTTP status, the status its documented type stands for); it
alone decides the refusal kind (`context_window`, `content_policy`), so nothing above `providers/`
reads messages. This module decides what the client sees:
- the provider rejecting *turnout's* credentials (401/403/407) is an operator problem, reported as
  502 `upstream_auth_error`, never as the client's 401;
- a provider's 429 is `UpstreamRateLimited`, with the seconds its Retry-After asks for;
- other 4xx pass through faithfully (status, message, type, param, code, refusal), with
  credentials scrubbed from the message;
- 5xx, and 424 (Failed Dependency: the model behind the provider failed, Bedrock's ModelError),
  become 502 (503 when the provider says it is overloaded or unavailable).
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from turnout.domain.errors import (
    Refusal,
    TurnoutError,
    UpstreamAuthError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from turnout.observability.redaction import redact

if TYPE_CHECKING:
    from turnout.providers.http.connection import UpstreamResponse

log = logging.getLogger("turnout.upstream")


@dataclass(frozen=True, slots=True)
class UpstreamErrorBody:
    """A provider's error as its wire format's `errors` module read it. `type` and `code` are passed
    on as OpenAI's; `refusal` is the provider's refusal kind, decided from its own documented codes
    and phrases."""

    message: str | None = None
    type: str | None = None
    param: str | None = None
    code: str | None = None
    refusal: Refusal | None = None
    retry_after_s: float | None = None  # a wait the body asks for (when no Retry-After header does)


def mentions(message: str | None, phrases: tuple[str, ...]) -> bool:
    """Whether `message` contains one of `phrases` (lower case), ignoring case."""
    if not message:
        return False
    lowered = message.lower()
    return any(p in lowered for p in phrases)


MAX_RETRY_AFTER = 86_400.0  # a day: anything longer (or not a number) is not a useful hint


def parse_retry_after(retry_after_ms: bytes | None, retry_after: bytes | None) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `retry-after` (seconds or an HTTP date), capped."""
    if retry_after_ms:
        try:
            return bounded_seconds(float(retry_after_ms) / 1000)
        except ValueError:
            pass
    if not retry_after:
        return None
    text = retry_after.decode("latin-1").strip()
    try:
        return bounded_seconds(float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError):
        return None
    return bounded_seconds(when.timestamp() - time.time())


def bounded_seconds(seconds: float) -> float | None:
    """`seconds` as a wait worth honouring: not negative, at most a day; None if not finite."""
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


AUTH_STATUSES = frozenset({401, 403, 407})
# Failed Dependency: the model behind the provider failed (Bedrock's ModelErrorException and
# modelStreamErrorException, "retry your request"); the provider's failure, not the request's.
PROVIDER_FAILURE_STATUSES = frozenset({424})


def classify(
    status: int,
    body: UpstreamErrorBody,
    *,
    provider: str,
    retry_after: float | None = None,
    in_stream: bool = False,
    event: str | None = None,
) -> TurnoutError:
    """The error on the tree for a provider's failure: `status` (its HTTP status, or inside a stream
    the status the wire format documents for the error's type), its parsed `body`, the seconds its
    Retry-After asks for. `in_stream`: the error came as an event inside a stream (named `event`
    when the wire format names it), which only changes the wording: an upstream failure inside a
    stream quotes the provider's (redacted) message, one over HTTP does not."""
    message = redact(body.message) if body.message else None
    if retry_after is None:
        retry_after = body.retry_after_s
    if status in AUTH_STATUSES:
        where = "during the stream" if in_stream else f"HTTP {status}"
        log.error("provider %s rejected turnout's credentials (%s): %s", provider, where, message)
        return UpstreamAuthError(
            f"The provider '{provider}' rejected turnout's credentials ({where}); "
            "an operator must fix this provider's API key.",
            deployment=provider,
        )
    refused = message or (
        f"The provider '{provider}' rejected the request"
        + (" during the stream." if in_stream else f" (HTTP {status}).")
    )
    if status == 429:
        return UpstreamRateLimited(
            refused,
            retry_after_s=retry_after,
            error_type=body.type or "rate_limit_error",
            param=body.param,
            code=body.code,
        )
    if 400 <= status < 500 and status not in PROVIDER_FAILURE_STATUSES:
        return UpstreamRejected(
            refused,
            status=status,
            error_type=body.type or "invalid_request_error",
            param=body.param,
            code=body.code,
            retry_after=None if retry_after is None else str(max(1, round(retry_after))),
            refusal=body.refusal,
        )
    log.warning("provider %s failed with status %d (%s): %s", provider, status, event or "-", message)
    if in_stream:
        named = f" ({event})" if event else ""
        text = f"The provider '{provider}' reported an error during the stream{named}: "
        text += message or "no details given"
    else:
        text = f"The provider '{provider}' failed to answer (HTTP {status})."
    return UpstreamServerError(text, upstream_status=status, deployment=provider, retry_after=retry_after)


MAX_ERROR_BYTES = 64 * 1024


async def error_from_response(
    response: UpstreamResponse, parse_body: Callable[[bytes], UpstreamErrorBody], *, provider: str
) -> TurnoutError:
    """The error for an upstream's non-2xx answer: its body read (up to 64 KiB) and parsed by the
    wire format's `parse_body`, its Retry-After honoured."""
    retry_after = parse_retry_after(response.header(b"retry-after-ms"), response.header(b"retry-after"))
    try:
        raw = await response.read(MAX_ERROR_BYTES)
    except TurnoutError:
        raw = b""
    return classify(response.status, parse_body(raw), provider=provider, retry_after=retry_after)
