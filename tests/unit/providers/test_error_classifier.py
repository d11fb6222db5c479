"""One classifier for every wire format: a provider's error answer over HTTP (status, body,
Retry-After) and the same error arriving as an event inside a stream land on the same branch of the
error tree, with the same client status, code, type and refusal kind. Pure: the recorded wire bodies
go through each wire format's error module and its stream translator, no network."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from turnout.domain.errors import (
    TurnoutError,
    UpstreamAuthError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from turnout.providers.anthropic import errors as anthropic_errors
from turnout.providers.anthropic.stream import AnthropicStream, NativeAnthropicStream
from turnout.providers.bedrock import errors as bedrock_errors
from turnout.providers.bedrock.stream import BedrockStream
from turnout.providers.cohere import errors as cohere_errors
from turnout.providers.cohere.stream import CohereStream
from turnout.providers.gemini import errors as gemini_errors
from turnout.providers.gemini.stream import GeminiStream
from turnout.providers.openai_compatible import errors as openai_errors
from turnout.providers.openai_compatible.stream import OpenAIStream
from turnout.providers.upstream_errors import UpstreamErrorBody, classify, parse_retry_after

from support.wire import bedrock_message, fixture_bytes, relay

P = "up"


def http_error(
    parse: Callable[[bytes], UpstreamErrorBody], status: int, body: bytes, **retry: bytes
) -> TurnoutError:
    """As `ProviderLink.send` classifies a non-2xx answer (`retry`: its retry-after(-ms) headers)."""
    seconds = parse_retry_after(retry.get("retry_after_ms"), retry.get("retry_after"))
    return classify(status, parse(body), provider=P, retry_after=seconds)


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data).encode() + b"\n\n"


def stream_error(make: Callable[[Any], Any], body: bytes) -> TurnoutError:
    with pytest.raises(TurnoutError) as caught:
        relay(make, body)
    return caught.value


def openai_stream(r: Any) -> OpenAIStream:
    return OpenAIStream(r, provider=P, drop_usage_chunk=False)


def anthropic_stream(r: Any) -> AnthropicStream:
    return AnthropicStream(r, provider=P, requested_model="m", json_mode=None, include_usage=True)


def native_anthropic_stream(r: Any) -> NativeAnthropicStream:
    return NativeAnthropicStream(r, provider=P, requested_model="m", json_mode=None, include_usage=True)


def gemini_stream(r: Any) -> GeminiStream:
    return GeminiStream(r, provider=P, model="m", include_usage=True)


def cohere_stream(r: Any) -> CohereStream:
    return CohereStream(r, provider=P, model="m", include_usage=True)


def bedrock_stream(r: Any) -> BedrockStream:
    return BedrockStream(r, provider=P, model="m", chat_id="chatcmpl-1", json_mode=None, include_usage=True)


# The kinds whose code is turnout's own (the others pass on the provider's).
CODED = frozenset({"auth", "permission", "overloaded", "server", "context_window"})
# The branch of the tree each kind of failure lands on: (class, client status, code, refusal).
EXPECTED: dict[str, tuple[type[TurnoutError], int, str | None, str | None]] = {
    "auth": (UpstreamAuthError, 502, "upstream_auth_error", None),
    "permission": (UpstreamAuthError, 502, "upstream_auth_error", None),
    "rate_limit": (UpstreamRateLimited, 429, None, None),
    "overloaded": (UpstreamServerError, 503, "upstream_unavailable", None),
    "invalid": (UpstreamRejected, 400, None, None),
    "server": (UpstreamServerError, 502, "upstream_server_error", None),
    "context_window": (UpstreamRejected, 400, "context_length_exceeded", "context_window"),
    "content_policy": (UpstreamRejected, 400, None, "content_policy"),
}


def _openai(kind: str, status: int, error: dict[str, Any]) -> tuple[str, int, bytes, bytes]:
    return kind, status, json.dumps({"error": error}).encode(), sse({"error": error})


AZURE_FILTER = {
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content policy.",
    "type": None,
    "param": "prompt",
    "code": "content_filter",
    "status": 400,
    "innererror": {
        "code": "ResponsibleAIPolicyViolation",
        "content_filter_result": {"hate": {"filtered": True}},
    },
}
OPENAI = [
    _openai("auth", 401, json.loads(fixture_bytes("error_401_invalid_key.json"))["error"]),
    _openai("permission", 403, {"message": "Not allowed.", "type": "permission_error", "code": None}),
    _openai(
        "rate_limit", 429, {**json.loads(fixture_bytes("error_429_rate_limit.json"))["error"], "type": None}
    ),
    _openai("overloaded", 529, {"message": "Overloaded.", "type": "overloaded_error", "code": None}),
    _openai("invalid", 400, {"message": "Bad temperature.", "type": "invalid_request_error", "code": None}),
    _openai("server", 500, json.loads(fixture_bytes("error_500_server.json"))["error"]),
    _openai("context_window", 400, json.loads(fixture_bytes("error_400_context_length.json"))["error"]),
    _openai("content_policy", 400, AZURE_FILTER),
]
# The fake provider speaks OpenAI's format with Anthropic-style error types (tests: fake/server.py).
FAKE = [
    _openai(
        kind, status, {"message": f"fake failure {status}", "type": kind_type, "param": None, "code": None}
    )
    for kind, status, kind_type in [
        ("auth", 401, "authentication_error"),
        ("permission", 403, "permission_error"),
        ("rate_limit", 429, "rate_limit_error"),
        ("overloaded", 529, "overloaded_error"),
        ("invalid", 400, "invalid_request_error"),
        ("server", 500, "server_error"),
    ]
]


def _anthropic(kind: str, status: int, kind_type: str, message: str) -> tuple[str, int, bytes, bytes]:
    error = {"type": "error", "error": {"type": kind_type, "message": message}}
    return kind, status, json.dumps(error).encode(), sse(error, "error")


ANTHROPIC = [
    _anthropic("auth", 401, "authentication_error", "invalid x-api-key"),
    _anthropic("permission", 403, "permission_error", "Your API key does not have permission."),
    _anthropic(
        "rate_limit", 429, "rate_limit_error", "Number of request tokens has exceeded your rate limit."
    ),
    _anthropic("overloaded", 529, "overloaded_error", "Overloaded"),
    _anthropic("invalid", 400, "invalid_request_error", "messages: roles must alternate"),
    _anthropic("server", 500, "api_error", "Internal server error"),
    _anthropic(
        "context_window", 400, "invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum"
    ),
]


def _gemini(kind: str, code: int, status: str, message: str) -> tuple[str, int, bytes, bytes]:
    error = {"error": {"code": code, "message": message, "status": status}}
    return kind, code, json.dumps(error).encode(), sse(error)


GEMINI = [
    _gemini("auth", 401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
    _gemini("permission", 403, "PERMISSION_DENIED", "Permission denied on resource project x."),
    _gemini("rate_limit", 429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    _gemini("overloaded", 503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    _gemini(
        "invalid", 400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified"
    ),
    _gemini("server", 500, "INTERNAL", "An internal error has occurred."),
    _gemini(
        "context_window",
        400,
        "INVALID_ARGUMENT",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
    ),
]


def _bedrock(
    kind: str, status: int, name: str, message: str, *, error: bool = False
) -> tuple[str, int, bytes, bytes]:
    frame = bedrock_message("error" if error else "exception", name, {"message": message})
    return kind, status, json.dumps({"message": message}).encode(), frame


BEDROCK = [
    _bedrock("permission", 403, "AccessDeniedException", "You don't have access to the model.", error=True),
    _bedrock("rate_limit", 429, "throttlingException", "Too many tokens, please wait before trying again."),
    _bedrock("overloaded", 503, "serviceUnavailableException", "Bedrock is unable to process your request."),
    _bedrock("invalid", 400, "validationException", "A conversation must start with a user message."),
    _bedrock("server", 500, "internalServerException", "The server encountered an internal error."),
    _bedrock("server", 424, "modelStreamErrorException", "The model failed while streaming the response."),
    _bedrock("context_window", 400, "validationException", "Input is too long for requested model."),
    _bedrock(
        "content_policy", 400, "validationException", "This request has been blocked by our content filters."
    ),
]

COHERE_END = {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "internal server error"}}
COHERE = [("server", 500, json.dumps({"message": "internal server error"}).encode(), sse(COHERE_END))]

WIRE_FORMATS: dict[
    str, tuple[Callable[[bytes], UpstreamErrorBody], list[Callable[[Any], Any]], list[Any]]
] = {
    "openai_compatible": (openai_errors.parse_error_body, [openai_stream], OPENAI),
    "fake": (openai_errors.parse_error_body, [openai_stream], FAKE),
    "anthropic": (anthropic_errors.parse_error_body, [anthropic_stream, native_anthropic_stream], ANTHROPIC),
    "gemini": (gemini_errors.parse_error_body, [gemini_stream], GEMINI),
    "bedrock": (bedrock_errors.parse_error_body, [bedrock_stream], BEDROCK),
    "cohere": (cohere_errors.parse_error_body, [cohere_stream], COHERE),
}
CASES = [
    pytest.param(wire, case, id=f"{wire}-{case[0]}-{case[1]}")
    for wire, (_, _, cases) in WIRE_FORMATS.items()
    for case in cases
]


def _branch(error: TurnoutError) -> tuple[object, ...]:
    return type(error), error.status, error.code, error.error_type, getattr(error, "refusal", None)


@pytest.mark.parametrize(("wire", "case"), CASES)
def test_an_error_in_a_stream_maps_like_the_same_error_over_http(
    wire: str, case: tuple[str, int, bytes, bytes]
) -> None:
    kind, status, http_body, stream_body = case
    parse, streams, _ = WIRE_FORMATS[wire]
    over_http = http_error(parse, status, http_body)
    cls, client_status, code, refusal = EXPECTED[kind]
    assert isinstance(over_http, cls) and type(over_http) is cls
    assert over_http.status == client_status
    if kind in CODED:
        assert over_http.code == code
    assert getattr(over_http, "refusal", None) == refusal
    for make in streams:
        in_stream = stream_error(make, stream_body)
        assert _branch(in_stream) == _branch(over_http), make.__name__


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry_after": b"7"}, 7.0),
        ({"retry_after_ms": b"1500", "retry_after": b"9"}, 1.5),
        ({"retry_after": b"Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past: now
        ({"retry_after": b"soon"}, None),
        ({}, None),
    ],
)
@pytest.mark.parametrize("wire", list(WIRE_FORMATS))
def test_a_429_is_rate_limited_with_its_retry_after_in_seconds(
    wire: str, headers: dict[str, bytes], seconds: float | None
) -> None:
    parse, _, cases = WIRE_FORMATS[wire]
    body = next((c[2] for c in cases if c[0] == "rate_limit"), b'{"message": "slow down"}')
    error = http_error(parse, 429, body, **headers)
    assert type(error) is UpstreamRateLimited
    assert error.retry_after_s == seconds
    assert error.retryable and error.status == 429
    shown = dict(error.headers()).get(b"retry-after")
    assert shown == (None if seconds is None else str(max(1, round(seconds))).encode())


def test_cohere_and_gemini_429_fixtures_are_rate_limits_with_their_type() -> None:
    cohere = http_error(cohere_errors.parse_error_body, 429, fixture_bytes("error_429.json", "cohere"))
    gemini = http_error(
        gemini_errors.parse_error_body,
        429,
        fixture_bytes("error_resource_exhausted.json", "gemini"),
        retry_after=b"3",
    )
    assert type(cohere) is UpstreamRateLimited and cohere.error_type == "rate_limit_error"
    assert type(gemini) is UpstreamRateLimited and gemini.error_type == "resource_exhausted"
    assert gemini.retry_after_s == 3.0


@pytest.mark.parametrize(
    ("wire", "fixture", "status", "refusal"),
    [
        ("openai", "error_400_context_length.json", 400, "context_window"),
        ("openai", "error_400_invalid_value.json", 400, None),
        ("openai", "error_404_model.json", 404, None),
        ("anthropic", "error_prompt_too_long.json", 400, "context_window"),
        ("anthropic", "error_invalid_request.json", 400, None),
        ("gemini", "error_too_long.json", 400, "context_window"),
        ("gemini", "error_invalid_argument.json", 400, None),
        ("bedrock", "error_too_long.json", 400, "context_window"),
        ("bedrock", "error_validation.json", 400, None),
        ("bedrock", "error_invoke_validation.json", 400, None),
        ("cohere", "error_400.json", 400, None),
    ],
)
def test_each_provider_decides_the_refusal_kind_of_its_recorded_errors(
    wire: str, fixture: str, status: int, refusal: str | None
) -> None:
    parse = {
        "openai": openai_errors.parse_error_body,
        "anthropic": anthropic_errors.parse_error_body,
        "gemini": gemini_errors.parse_error_body,
        "bedrock": bedrock_errors.parse_error_body,
        "cohere": cohere_errors.parse_error_body,
    }[wire]
    error = http_error(parse, status, fixture_bytes(fixture, wire))
    assert type(error) is UpstreamRejected
    assert error.status == status and error.refusal == refusal
    if refusal == "context_window":
        assert error.code == "context_length_exceeded"  # as OpenAI names it, for clients


@pytest.mark.parametrize(
    ("message", "refusal"),
    [
        (
            "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",
            "context_window",
        ),
        (
            "Prompt contains 40000 tokens, too large for model with 32768 maximum context length",
            "context_window",
        ),
        ("Please reduce the length of the messages or completion.", None),
        ("Invalid value for 'temperature'.", None),
    ],
)
def test_openai_compatible_servers_without_codes_are_read_by_their_documented_phrases(
    message: str, refusal: str | None
) -> None:
    body = json.dumps(
        {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": 400}
    )
    assert getattr(http_error(openai_errors.parse_error_body, 400, body.encode()), "refusal", None) == refusal
    in_stream = stream_error(openai_stream, sse({"error": json.loads(body)}))  # vLLM: the status in `code`
    assert type(in_stream) is UpstreamRejected and in_stream.status == 400 and in_stream.refusal == refusal


@pytest.mark.parametrize(
    "code", ["content_policy_violation", "content_filter", "responsible_ai_policy_violation"]
)
def test_openai_content_policy_codes_are_content_policy_refusals(code: str) -> None:
    body = {
        "error": {
            "message": "Your request was rejected by our safety system.",
            "type": "invalid_request_error",
            "code": code,
        }
    }
    error = http_error(openai_errors.parse_error_body, 400, json.dumps(body).encode())
    assert type(error) is UpstreamRejected and error.refusal == "content_policy" and error.code == code


def test_credentials_in_a_message_are_redacted_on_both_paths() -> None:
    leaky = "bad key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789 given"
    body = {"error": {"message": leaky, "type": "invalid_request_error", "code": None}}
    over_http = http_error(openai_errors.parse_error_body, 400, json.dumps(body).encode())
    in_stream = stream_error(openai_stream, sse(body))
    server = stream_error(openai_stream, sse({"error": {**body["error"], "type": "server_error"}}))
    for error in (over_http, in_stream, server):
        assert "abcdefghijklmnopqrstuvwxyz0123456789" not in error.message


def test_an_upstream_failure_in_a_stream_quotes_the_provider_and_over_http_does_not() -> None:
    error = {"error": {"message": "The engine is currently overloaded", "type": "server_error", "code": None}}
    over_http = http_error(openai_errors.parse_error_body, 500, json.dumps(error).encode())
    in_stream = stream_error(openai_stream, sse(error))
    assert over_http.message == "The provider 'up' failed to answer (HTTP 500)."
    assert (
        in_stream.message
        == "The provider 'up' reported an error during the stream: The engine is currently overloaded"
    )
    named = stream_error(bedrock_stream, bedrock_message("error", "InternalFailure", {"message": "boom"}))
    assert named.message == "The provider 'up' reported an error during the stream (InternalFailure): boom"


def test_an_error_event_that_is_not_json_is_an_upstream_failure() -> None:
    error = stream_error(openai_stream, b"event: error\ndata: upstream exploded\n\n")
    assert type(error) is UpstreamServerError and "upstream exploded" in error.message


GEMINI_QUOTA = {
    "error": {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "x"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27.5s"},
        ],
    }
}


def test_a_gemini_429_waits_as_long_as_its_retry_info_asks_over_http_and_in_a_stream() -> None:
    over_http = http_error(gemini_errors.parse_error_body, 429, json.dumps(GEMINI_QUOTA).encode())
    in_stream = stream_error(gemini_stream, sse(GEMINI_QUOTA))
    for error in (over_http, in_stream):
        assert type(error) is UpstreamRateLimited and error.retry_after_s == 27.5
        assert dict(error.headers())[b"retry-after"] == b"28"
    # a Retry-After header, when there is one, is what counts
    headed = http_error(
        gemini_errors.parse_error_body, 429, json.dumps(GEMINI_QUOTA).encode(), retry_after=b"3"
    )
    assert isinstance(headed, UpstreamRateLimited) and headed.retry_after_s == 3.0


@pytest.mark.parametrize("delay", ["soon", "s", "-5s", "nans", 27, None])
def test_a_retry_info_that_is_not_a_duration_is_no_hint(delay: object) -> None:
    quota = json.loads(json.dumps(GEMINI_QUOTA))
    quota["error"]["details"][1]["retryDelay"] = delay
    error = http_error(gemini_errors.parse_error_body, 429, json.dumps(quota).encode())
    assert isinstance(error, UpstreamRateLimited)
    assert error.retry_after_s in (None, 0.0)
