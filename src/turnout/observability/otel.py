"""Traces with OpenTelemetry's SDK, exported over OTLP (HTTP or gRPC), following the GenAI semantic
conventions: a server span per client request (`chat <model>`), a client span per upstream
attempt (`chat <upstream model>`), `gen_ai.*` attributes for the provider, the models, token usage
and finish reasons. Imported only when tracing is configured.

An attempt's span starts when the attempt does (its context goes upstream as `traceparent`) and
ends when it ends; its figures (tokens, cost, status) are set from its ledger entry, written when
the request is accounted for, so spans and ledger never disagree. Prompts and answers are added
only with `capture_content`, redacted as logs are."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from turnout.domain.errors import TurnoutError
from turnout.domain.ledger_entry import LedgerEntry
from turnout.observability.redaction import redact
from turnout.observability.tracing import Answer

CONTENT_LIMIT = 16_000  # characters of a prompt or an answer kept in a span
MICROS = 1_000_000
# gen_ai.provider.name for turnout's provider kinds (the conventions' well-known values)
PROVIDER_NAMES = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "cohere": "cohere",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
}
_propagator = TraceContextTextMapPropagator()

ProviderKind = Callable[[str], str]  # a configured provider's name → its kind (openai, anthropic...)


class OtelTracer:
    """`Tracer` on OpenTelemetry's SDK: a provider of its own (the process's global one is left
    alone), spans sampled by `sample_ratio` unless the client's traceparent decided."""

    def __init__(
        self,
        processor: SpanProcessor,
        kind_of: ProviderKind,
        *,
        service_name: str = "turnout",
        sample_ratio: float = 1.0,
        capture_content: bool = False,
        version: str = "",
    ) -> None:
        resource = Resource.create({"service.name": service_name, "service.version": version})
        self.provider = TracerProvider(
            resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio))
        )
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("turnout", version)
        self.kind_of = kind_of
        self.captures_content = capture_content

    @classmethod
    def exporting(
        cls,
        endpoint: str,
        headers: Mapping[str, str],
        kind_of: ProviderKind,
        *,
        protocol: str = "http",
        **options: Any,
    ) -> OtelTracer:
        """Spans batched and sent to `endpoint` in the background: OTLP over HTTP (protobuf), or
        over gRPC (`protocol`; TLS for an https:// endpoint). Only the exporter asked for is
        imported."""
        exporter: SpanExporter
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )

            exporter = GrpcSpanExporter(
                endpoint=endpoint,
                insecure=urlsplit(endpoint).scheme == "http",
                headers={name.lower(): value for name, value in headers.items()},  # gRPC metadata
                timeout=10,
            )
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint, headers=dict(headers), timeout=10)
        return cls(BatchSpanProcessor(exporter), kind_of, **options)

    def request(
        self, operation: str, request_id: str, traceparent: str | None, tracestate: str | None
    ) -> OtelRequestTrace:
        parent: Context | None = None
        if traceparent is not None:
            carrier = {"traceparent": traceparent}
            if tracestate is not None:
                carrier["tracestate"] = tracestate
            parent = _propagator.extract(carrier)
        span = self.tracer.start_span(
            operation,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"gen_ai.operation.name": operation, "turnout.request_id": request_id},
        )
        return OtelRequestTrace(self, span, operation)

    def shutdown(self) -> None:
        self.provider.shutdown()


class OtelAttemptSpan:
    __slots__ = ("ended_at", "finished", "headers", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.ended_at: int | None = None
        self.finished = False
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=set_span_in_context(span))
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in carrier.items()).encode("latin-1")

    def ended(self) -> None:
        if self.ended_at is None:
            self.ended_at = time.time_ns()


class OtelRequestTrace:
    def __init__(self, tracer: OtelTracer, span: Span, operation: str) -> None:
        self._tracer = tracer
        self.span = span
        self.operation = operation
        self.context = set_span_in_context(span)
        self.attempts: list[OtelAttemptSpan] = []
        self.captures_content = tracer.captures_content
        self._ended = False
        self._recorded = False  # its ledger entries were seen (`recorded`)

    def attempt(self, provider: str, model: str, deployment: str, number: int) -> OtelAttemptSpan:
        kind = self._tracer.kind_of(provider)
        system = PROVIDER_NAMES.get(kind, kind)
        span = self._tracer.tracer.start_span(
            f"{self.operation} {model}",
            context=self.context,
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": self.operation,
                "gen_ai.provider.name": system,
                "gen_ai.system": system,
                "gen_ai.request.model": model,
                "turnout.provider": provider,
                "turnout.deployment": deployment,
                "turnout.attempt": number,
            },
        )
        attempt = OtelAttemptSpan(span)
        self.attempts.append(attempt)
        return attempt

    def requested(self, model: str, parameters: dict[str, Any], messages: Any) -> None:
        span = self.span
        if not span.is_recording():
            return
        span.update_name(f"{self.operation} {model}")
        span.set_attribute("gen_ai.request.model", model)
        for name, value in parameters.items():
            if value is not None:
                span.set_attribute(f"gen_ai.request.{name}", value)
        if self.captures_content and messages is not None:
            text = orjson.dumps(messages).decode()
            span.set_attribute("gen_ai.input.messages", redact(text, limit=CONTENT_LIMIT))

    def recorded(self, entries: Sequence[LedgerEntry], status: int, answer: Answer | None) -> None:
        span = self.span
        self._recorded = True
        inputs = outputs = 0
        for entry in entries:
            inputs += entry.input_tokens
            outputs += entry.output_tokens
            if 0 < entry.attempt <= len(self.attempts):
                self._attempt_done(self.attempts[entry.attempt - 1], entry, answer, status)
        head = entries[0]
        span.set_attribute("turnout.alias", head.alias)
        span.set_attribute("turnout.api", head.api)
        span.set_attribute("turnout.attempts", len(self.attempts))
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("gen_ai.usage.input_tokens", inputs)
        span.set_attribute("gen_ai.usage.output_tokens", outputs)
        if answer is not None and status < 400:
            _answered(span, answer, self.captures_content)
        if status >= 500:
            reason = entries[-1].reason or "error"
            span.set_attribute("error.type", reason)
            span.set_status(Status(StatusCode.ERROR, reason))

    def _attempt_done(
        self, attempt: OtelAttemptSpan, entry: LedgerEntry, answer: Answer | None, status: int
    ) -> None:
        span = attempt.span
        span.set_attribute("gen_ai.usage.input_tokens", entry.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", entry.output_tokens)
        span.set_attribute("http.response.status_code", entry.status)
        if entry.cost_micros is not None:
            span.set_attribute("turnout.cost_usd", entry.cost_micros / MICROS)
        if entry.status >= 400:
            reason = entry.reason or "error"
            span.set_attribute("error.type", reason)
            span.set_status(Status(StatusCode.ERROR, reason))
        elif answer is not None and entry.status == status:
            _answered(span, answer, captures_content=False)
        attempt.finished = True
        span.end(end_time=attempt.ended_at)

    def end(self, error: BaseException | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        for attempt in self.attempts:  # any not accounted for
            if not attempt.finished:
                attempt.finished = True
                attempt.span.end(end_time=attempt.ended_at)
        span = self.span
        if isinstance(error, TurnoutError) and span.is_recording():
            if not self._recorded:
                span.set_attribute("http.response.status_code", error.status)
            if error.status >= 500:
                span.set_attribute("error.type", error.reason)
                span.set_status(Status(StatusCode.ERROR, error.reason))
        elif error is not None and not isinstance(error, TurnoutError):
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR))
        span.end()


def _answered(span: Span, answer: Answer, captures_content: bool) -> None:
    if answer.model is not None:
        span.set_attribute("gen_ai.response.model", answer.model)
    if answer.response_id is not None:
        span.set_attribute("gen_ai.response.id", answer.response_id)
    if answer.finish_reasons:
        span.set_attribute("gen_ai.response.finish_reasons", list(answer.finish_reasons))
    if captures_content and answer.text is not None:
        message = [{"role": "assistant", "parts": [{"type": "text", "content": answer.text}]}]
        span.set_attribute(
            "gen_ai.output.messages", redact(orjson.dumps(message).decode(), limit=CONTENT_LIMIT)
        )


__all__ = ["OtelRequestTrace", "OtelTracer", "ReadableSpan"]
