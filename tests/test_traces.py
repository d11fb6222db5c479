"""OpenTelemetry traces, span by span: a client request continues the client's W3C trace, each
upstream attempt is a child span whose context reaches the upstream as `traceparent`, spans carry
the GenAI conventions' attributes and the ledger's figures, prompts and answers appear only when
asked for (redacted), spans reach an OTLP/HTTP collector, and with tracing off the SDK is never
loaded."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from turnout.observability.otel import OtelTracer

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.upstream import Upstream

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
SECRET = "sk-proj-Zx81kLm02PqR77sTuV"
USER = [{"role": "user", "content": f"Where does the train go? my key is {SECRET}"}]
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY}


@pytest.fixture
def second_upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


def two_upstreams(first: Upstream, second: Upstream, **extra: Any) -> dict[str, Any]:
    provider = {"type": "openai_compatible", "api_key": "env:UPSTREAM_KEY"}
    return {
        "routing": {"breaker": {"consecutive_failures": 10000, "min_requests": 10000}},
        "providers": {
            "first": {**provider, "base_url": first.base_url},
            "second": {**provider, "base_url": second.base_url},
        },
        "models": {
            "gpt-4o": {
                "targets": [
                    {"provider": "first", "model": "gpt-4o-2024-08-06", "name": "first"},
                    {"provider": "second", "model": "gpt-4o-2024-08-06", "name": "second"},
                ]
            }
        },
        **extra,
    }


def traced(gateway: Gateway, capture_content: bool = False) -> InMemorySpanExporter:
    """Have the running gateway trace into memory (the SDK's in-memory exporter)."""
    exporter = InMemorySpanExporter()
    kinds = gateway.services.provider_kinds
    tracer = OtelTracer(
        SimpleSpanProcessor(exporter), lambda p: kinds.get(p, p), capture_content=capture_content
    )
    gateway.call(lambda: setattr(gateway.services.pipeline, "tracer", tracer))
    return exporter


def by_kind(spans: tuple[ReadableSpan, ...]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    attempts = sorted(
        (s for s in spans if s.kind is SpanKind.CLIENT), key=lambda s: s.attributes["turnout.attempt"]
    )
    return server, attempts


def traceparent_of(span: ReadableSpan) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def test_a_failover_is_one_trace_with_a_span_per_attempt(
    upstream: Upstream, second_upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(two_upstreams(upstream, second_upstream), ENV)
    exporter = traced(gateway)
    upstream.mode = "500"
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=USER, max_tokens=50, extra_headers={"traceparent": TRACEPARENT}
        )
    completion = raw.parse()
    assert raw.headers["x-turnout-attempts"] == "2"

    server, attempts = by_kind(exporter.get_finished_spans())
    assert len(exporter.get_finished_spans()) == 3
    # the request: continues the client's trace
    assert server.name == "chat gpt-4o"
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CLIENT_SPAN
    assert server.attributes["gen_ai.operation.name"] == "chat"
    assert server.attributes["gen_ai.request.model"] == "gpt-4o"
    assert server.attributes["gen_ai.request.max_tokens"] == 50
    assert server.attributes["gen_ai.response.model"] == completion.model
    assert server.attributes["gen_ai.response.id"] == completion.id
    assert server.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert completion.usage is not None
    assert server.attributes["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert server.attributes["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["turnout.request_id"] == raw.headers["x-request-id"]
    assert server.status.status_code is StatusCode.UNSET
    assert "gen_ai.input.messages" not in server.attributes  # content only when asked for

    failed, answered = attempts
    for number, span in enumerate(attempts, 1):
        assert span.name == "chat gpt-4o-2024-08-06"
        assert span.parent is not None and span.parent.span_id == server.context.span_id
        assert span.context.trace_id == server.context.trace_id
        assert span.attributes["gen_ai.provider.name"] == "openai_compatible"
        assert span.attributes["gen_ai.request.model"] == "gpt-4o-2024-08-06"
        assert span.attributes["turnout.attempt"] == number
        assert span.start_time is not None and server.start_time is not None
        assert span.end_time is not None and server.end_time is not None
        assert server.start_time <= span.start_time <= span.end_time <= server.end_time
    assert failed.attributes["turnout.deployment"] == "first"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "upstream_server_error"
    assert failed.attributes["gen_ai.usage.output_tokens"] == 0
    assert answered.attributes["turnout.deployment"] == "second"
    assert answered.status.status_code is StatusCode.UNSET
    assert answered.attributes["gen_ai.response.model"] == completion.model
    assert answered.attributes["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert answered.end_time <= failed.end_time or failed.end_time <= answered.start_time
    # each upstream received its own attempt's context
    assert [r.headers["traceparent"] for r in upstream.requests] == [traceparent_of(failed)]
    assert [r.headers["traceparent"] for r in second_upstream.requests] == [traceparent_of(answered)]


def test_a_stream_without_a_client_trace_starts_one(
    upstream: Upstream, second_upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(two_upstreams(upstream, second_upstream), ENV)
    exporter = traced(gateway)
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
            )
        )
    server, (attempt,) = by_kind(exporter.get_finished_spans())
    assert server.parent is None  # a new trace
    assert server.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert server.attributes["gen_ai.response.model"] == chunks[0].model
    assert chunks[-1].usage is not None
    assert attempt.attributes["gen_ai.usage.output_tokens"] == chunks[-1].usage.completion_tokens
    assert attempt.attributes["http.response.status_code"] == 200
    assert upstream.requests[0].headers["traceparent"] == traceparent_of(attempt)


def test_a_refused_request_is_a_span_with_its_status(
    upstream: Upstream, second_upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(two_upstreams(upstream, second_upstream), ENV)
    exporter = traced(gateway)
    with (
        openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client,
        pytest.raises(openai.NotFoundError),
    ):
        client.chat.completions.create(model="no-such-model", messages=USER)
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.attributes["http.response.status_code"] == 404
    assert span.status.status_code is StatusCode.UNSET  # the caller's mistake, not ours
    assert upstream.requests == [] and second_upstream.requests == []


def test_content_is_captured_only_when_asked_and_redacted(
    upstream: Upstream, second_upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(two_upstreams(upstream, second_upstream), ENV)
    exporter = traced(gateway, capture_content=True)
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    server, (attempt,) = by_kind(exporter.get_finished_spans())
    prompt = str(server.attributes["gen_ai.input.messages"])
    assert "Where does the train go?" in prompt
    assert SECRET not in prompt and "[redacted]" in prompt
    answer = completion.choices[0].message.content
    assert answer and answer in str(server.attributes["gen_ai.output.messages"])
    assert "gen_ai.input.messages" not in attempt.attributes  # content once, on the request


def test_a_hedged_request_traces_both_attempts(
    upstream: Upstream, second_upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    doc = two_upstreams(upstream, second_upstream)
    doc["models"]["gpt-4o"]["hedge_after"] = "50ms"
    gateway = start_gateway(doc, ENV)
    exporter = traced(gateway)
    upstream.hang()  # the first deployment never answers: the hedge on the second wins
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    assert raw.headers["x-turnout-hedged"] == "true"
    server, (slow, fast) = by_kind(exporter.get_finished_spans())
    assert slow.attributes["turnout.deployment"] == "first"
    assert slow.attributes["error.type"] == "client_closed"  # cancelled: the ledger's 499
    assert fast.attributes["turnout.deployment"] == "second"
    assert fast.status.status_code is StatusCode.UNSET
    assert all(
        span.parent is not None and span.parent.span_id == server.context.span_id for span in (slow, fast)
    )
    assert upstream.requests[0].headers["traceparent"] == traceparent_of(slow)
    assert second_upstream.requests[0].headers["traceparent"] == traceparent_of(fast)


def test_embeddings_are_traced_too(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(openai_doc(upstream), ENV)
    exporter = traced(gateway)
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        result = client.embeddings.create(model="embed", input="hello")
    server, (attempt,) = by_kind(exporter.get_finished_spans())
    assert server.name == "embeddings embed"
    assert server.attributes["gen_ai.operation.name"] == "embeddings"
    assert attempt.name == "embeddings text-embedding-3-small"
    assert attempt.attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens
    assert upstream.requests[0].headers["traceparent"] == traceparent_of(attempt)


class Collector:
    """An OTLP/HTTP receiver: decodes each export's protobuf and keeps its spans."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Any]] = []  # (resource attributes, span)
        self.headers: list[dict[str, str]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _export(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.headers.append(dict(request.headers))
        for resource_spans in message.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                self.spans += [(resource, span) for span in scope.spans]
        return web.Response(body=b"", content_type="application/x-protobuf")

    def start(self) -> Collector:
        self._thread.start()
        app = web.Application()
        app.router.add_post("/v1/traces", self._export)
        runner = web.AppRunner(app)

        async def serve() -> None:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        self._runner = runner
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_spans_reach_an_otlp_collector_when_configured(
    upstream: Upstream, second_upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    collector = Collector().start()
    try:
        tracing = {
            "otlp_endpoint": f"http://127.0.0.1:{collector.port}/v1/traces",
            "headers": {"x-collector-key": "env:COLLECTOR_KEY"},
            "service_name": "gateway-eu",
        }
        doc = two_upstreams(upstream, second_upstream, tracing=tracing)
        gateway = start_gateway(doc, {**ENV, "COLLECTOR_KEY": "collector-secret-123456"})
        with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
            client.chat.completions.create(
                model="gpt-4o", messages=USER, extra_headers={"traceparent": TRACEPARENT}
            )
        gateway.stop()  # the batched spans are exported on the way out
        names = sorted(span.name for _, span in collector.spans)
        assert names == ["chat gpt-4o", "chat gpt-4o-2024-08-06"]
        assert {resource["service.name"] for resource, _ in collector.spans} == {"gateway-eu"}
        assert all(span.trace_id.hex() == TRACE_ID for _, span in collector.spans)
        assert all(h.get("x-collector-key") == "collector-secret-123456" for h in collector.headers)
    finally:
        collector.stop()


class GrpcCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP receiver over gRPC: the TraceService Export RPC of opentelemetry-proto, served by
    grpcio on 127.0.0.1, keeping each span with its resource's attributes and each call's metadata."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Any]] = []
        self.metadata: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def Export(self, request: Any, context: Any) -> Any:
        with self._lock:
            self.metadata.append(dict(context.invocation_metadata()))
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    self.spans += [(resource, span) for span in scope.spans]
        return trace_service_pb2.ExportTraceServiceResponse()

    def start(self) -> GrpcCollector:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(None).wait(10)


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP key-value attributes as a dict (scalars and string arrays)."""
    found: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        value = getattr(pair.value, kind)
        found[pair.key] = [v.string_value for v in value.values] if kind == "array_value" else value
    return found


def test_spans_reach_an_otlp_collector_over_grpc_with_their_gen_ai_attributes(
    upstream: Upstream, second_upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    collector = GrpcCollector().start()
    try:
        tracing = {
            "otlp_endpoint": f"http://127.0.0.1:{collector.port}",
            "otlp_protocol": "grpc",
            "headers": {"X-Collector-Key": "env:COLLECTOR_KEY"},
            "service_name": "gateway-grpc",
        }
        doc = two_upstreams(upstream, second_upstream, tracing=tracing)
        gateway = start_gateway(doc, {**ENV, "COLLECTOR_KEY": "collector-secret-123456"})
        with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
            answer = client.chat.completions.create(
                model="gpt-4o", messages=USER, extra_headers={"traceparent": TRACEPARENT}
            )
        gateway.stop()  # the batched spans are exported on the way out
    finally:
        collector.stop()
    spans = {span.name: (resource, span) for resource, span in collector.spans}
    assert sorted(spans) == ["chat gpt-4o", "chat gpt-4o-2024-08-06"]
    assert {resource["service.name"] for resource, _ in spans.values()} == {"gateway-grpc"}
    assert all(span.trace_id.hex() == TRACE_ID for _, span in spans.values())
    assert all(m.get("x-collector-key") == "collector-secret-123456" for m in collector.metadata)
    request = spans["chat gpt-4o"][1]
    attempt = spans["chat gpt-4o-2024-08-06"][1]
    assert request.parent_span_id.hex() == CLIENT_SPAN
    assert attempt.parent_span_id == request.span_id
    on_request, on_attempt = attributes(request.attributes), attributes(attempt.attributes)
    assert answer.usage is not None
    assert on_request["gen_ai.operation.name"] == "chat"
    assert on_request["gen_ai.request.model"] == "gpt-4o"
    assert on_request["gen_ai.response.model"] == answer.model
    assert on_request["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert on_request["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert on_request["gen_ai.response.finish_reasons"] == ["stop"]
    assert on_attempt["gen_ai.provider.name"] == "openai_compatible"  # the provider's kind
    assert on_attempt["gen_ai.request.model"] == "gpt-4o-2024-08-06"
    assert on_attempt["turnout.deployment"] == "first"


def test_tracing_settings_are_checked() -> None:
    from turnout.config.loader import ConfigError
    from turnout.providers.config_loader import build_settings

    with pytest.raises(ConfigError, match=r"tracing\.otlp_endpoint: must be an http"):
        build_settings({"tracing": {"otlp_endpoint": "grpc://collector:4317"}}, {}, source="t")
    with pytest.raises(ConfigError, match=r"tracing: takes effect only with tracing\.otlp_endpoint"):
        build_settings({"tracing": {"capture_content": True}}, {}, source="t")
    with pytest.raises(ConfigError, match=r"tracing: takes effect only with tracing\.otlp_endpoint"):
        build_settings({"tracing": {"otlp_protocol": "grpc"}}, {}, source="t")
    with pytest.raises(ConfigError, match=r"tracing\.otlp_endpoint: gRPC takes a host and port only"):
        grpc_doc = {"otlp_endpoint": "http://collector:4317/v1/traces", "otlp_protocol": "grpc"}
        build_settings({"tracing": grpc_doc}, {}, source="t")
    with pytest.raises(ConfigError, match=r"tracing\.otlp_protocol"):
        build_settings({"tracing": {"otlp_endpoint": "http://c:4317", "otlp_protocol": "h2"}}, {}, source="t")
    with pytest.raises(ConfigError, match=r"tracing\.headers\.authorization: looks like a credential"):
        endpoint = "http://collector:4318/v1/traces"
        build_settings(
            {"tracing": {"otlp_endpoint": endpoint, "headers": {"authorization": "Bearer abc"}}},
            {},
            source="t",
        )
    with pytest.raises(ConfigError, match=r"tracing\.sample_ratio"):
        build_settings({"tracing": {"otlp_endpoint": "http://c:4318", "sample_ratio": 2}}, {}, source="t")


def test_with_tracing_off_the_tracing_sdk_is_never_loaded() -> None:
    """(redis-py loads OpenTelemetry's *metrics* SDK when it is installed: hence the extra.)"""
    code = (
        "import sys\n"
        "import turnout.server.asgi, turnout.server.runner, turnout.cli.main\n"
        "wanted = ('opentelemetry.sdk.trace', 'opentelemetry.exporter', 'grpc',\n"
        "          'turnout.observability.otel')\n"
        "print(sorted(m for m in sys.modules if m.startswith(wanted)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
