"""Map a provider's error answer (status + its own error fields) onto the error tree, once.

Each wire format parses its own error body into `UpstreamErrorBody`; this module decides what the
client sees. Upstream 4xx pass through faithfully (status, message, type, param, code), with
credentials scrubbed from the message. The provider rejecting *turnout's* credentials (401/403/407)
is an operator problem, reported as 502, never as the client's 401. 5xx become 502 (503 when the
provider says it is overloaded or unavailable).
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
    message: str | None = None
    type: str | None = None
    param: str | None = None
    code: str | None = None


MAX_RETRY_AFTER = 86_400.0  # a day: anything longer (or not a number) is not a useful hint


def parse_retry_after(retry_after_ms: bytes | None, retry_after: bytes | None) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `retry-after` (seconds or an HTTP date), capped."""
    if retry_after_ms:
        try:
            return _bounded(float(retry_after_ms) / 1000)
        except ValueError:
            pass
    if not retry_after:
        return None
    text = retry_after.decode("latin-1").strip()
    try:
        return _bounded(float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError):
        return None
    return _bounded(when.timestamp() - time.time())


def _bounded(seconds: float) -> float | None:
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def map_upstream_error(
    status: int, body: UpstreamErrorBody, *, provider: str, retry_after: float | None
) -> TurnoutError:
    message = redact(body.message) if body.message else None
    if status in (401, 403, 407):
        log.error("provider %s rejected turnout's credentials (HTTP %d): %s", provider, status, message)
        return UpstreamAuthError(
            f"The provider '{provider}' rejected turnout's credentials (HTTP {status}); "
            "an operator must fix this provider's API key.",
            deployment=provider,
        )
    if status == 429:
        return UpstreamRateLimited(
            message or f"The provider '{provider}' is rate-limiting turnout (HTTP 429).",
            retry_after_s=retry_after,
            error_type=body.type or "rate_limit_error",
            param=body.param,
            code=body.code,
        )
    if 400 <= status < 500:
        return UpstreamRejected(
            message or f"The provider '{provider}' rejected the request (HTTP {status}).",
            status=status,
            error_type=body.type or "invalid_request_error",
            param=body.param,
            code=body.code,
            retry_after=None if retry_after is None else str(max(1, round(retry_after))),
        )
    log.warning("provider %s failed with HTTP %d: %s", provider, status, message)
    return UpstreamServerError(
        f"The provider '{provider}' failed to answer (HTTP {status}).",
        upstream_status=status,
        deployment=provider,
        retry_after=retry_after,
    )


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
    return map_upstream_error(response.status, parse_body(raw), provider=provider, retry_after=retry_after)
