"""What the request path knows of tracing: a `Tracer` that opens one trace per client request
(`RequestTrace`), a span per upstream attempt (`AttemptSpan`), and the `traceparent` the current
attempt sends upstream. With tracing off there is no tracer at all (None): nothing here imports
OpenTelemetry; `observability/otel.py` does, and only when `tracing.otlp_endpoint` is set."""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from turnout.domain.ledger_entry import LedgerEntry

# The `traceparent: ...\r\n` (and `tracestate`) header lines of the upstream attempt running in
# this task, added to its request by the providers' shared link (None: not traced).
UPSTREAM_TRACE_HEADERS: ContextVar[bytes | None] = ContextVar("turnout_upstream_trace_headers", default=None)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the answer the client got said of itself, for the request's span."""

    response_id: str | None = None
    model: str | None = None
    finish_reasons: tuple[str, ...] = ()
    text: str | None = None  # its content (read only when content is captured)


class AttemptSpan(Protocol):
    @property
    def headers(self) -> bytes:
        """The trace context to send upstream with this attempt, as header lines."""
        ...

    def ended(self) -> None:
        """The attempt is over (its span ends now; its figures come with the ledger entry)."""
        ...


class RequestTrace(Protocol):
    captures_content: bool

    def attempt(self, provider: str, model: str, deployment: str, number: int) -> AttemptSpan:
        """A span for upstream attempt `number`, to `model` on `provider`'s `deployment`."""
        ...

    def requested(self, model: str, parameters: dict[str, Any], messages: Any) -> None:
        """The model the client asked for, its sampling parameters (`gen_ai.request.*`), and its
        messages (kept only when content is captured)."""
        ...

    def recorded(self, entries: Sequence[LedgerEntry], status: int, answer: Answer | None) -> None:
        """The request's ledger entries, one per attempt: each attempt's span gets its figures."""
        ...

    def end(self, error: BaseException | None = None) -> None: ...


class Tracer(Protocol):
    captures_content: bool

    def request(
        self, operation: str, request_id: str, traceparent: str | None, tracestate: str | None
    ) -> RequestTrace:
        """A client request's trace (continuing the client's `traceparent`, when it sent one)."""
        ...

    def shutdown(self) -> None:
        """Export what is pending and stop."""
        ...
