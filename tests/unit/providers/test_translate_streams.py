"""Every wire format's stream translator on its recorded streams (tests/fixtures/providers), as pure
calls: the upstream's bytes in, OpenAI `chat.completion.chunk`s out (what an OpenAI SDK assembles
from them: text, reasoning, tool calls, the finish reason) and the usage read on the way."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from turnout.domain.errors import TurnoutError, UpstreamConnectionError
from turnout.domain.usage import Usage
from turnout.providers.anthropic.stream import AnthropicStream, NativeAnthropicStream
from turnout.providers.anthropic.translate import JSON_TOOL as ANTHROPIC_JSON_TOOL
from turnout.providers.anthropic.translate import JsonMode as AnthropicJsonMode
from turnout.providers.bedrock.stream import BedrockStream
from turnout.providers.cohere.stream import CohereStream
from turnout.providers.gemini.stream import GeminiStream
from turnout.providers.openai_compatible.stream import OpenAIStream

from support.wire import bedrock_stream, fixture_bytes, relay

P = "up"


def folded(chunks: list[Any]) -> dict[str, Any]:
    """The chunks as a client assembles them; `usage` is the trailing usage-only chunk's."""
    text, reasoning, finish, usage = "", "", None, None
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        if not chunk["choices"]:
            usage = chunk["usage"]
            continue
        (choice,) = chunk["choices"]
        assert finish is None, "nothing may follow the finish reason but the usage"
        delta = choice["delta"]
        text += delta.get("content") or ""
        reasoning += delta.get("reasoning_content") or ""
        for call in delta.get("tool_calls") or ():
            entry = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.get("id") or ""
            entry["name"] += call.get("function", {}).get("name") or ""
            entry["arguments"] += call.get("function", {}).get("arguments") or ""
        finish = choice["finish_reason"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    return {
        "text": text,
        "reasoning": reasoning,
        "calls": list(calls.values()),
        "finish": finish,
        "usage": usage,
    }


def anthropic(r: Any, json_mode: AnthropicJsonMode | None = None) -> AnthropicStream:
    return AnthropicStream(r, provider=P, requested_model="claude", json_mode=json_mode, include_usage=True)


def gemini(r: Any) -> GeminiStream:
    return GeminiStream(r, provider=P, model="gemini", include_usage=True)


def cohere(r: Any) -> CohereStream:
    return CohereStream(r, provider=P, model="command", include_usage=True)


def bedrock(r: Any) -> BedrockStream:
    return BedrockStream(
        r, provider=P, model="claude", chat_id="chatcmpl-b", json_mode=None, include_usage=True
    )


# --------------------------------------------------------------------------- OpenAI: passed through


def test_openai_chunks_are_passed_on_as_the_upstream_wrote_them() -> None:
    raw = fixture_bytes("chat_stream.sse")
    chunks, usage = relay(lambda r: OpenAIStream(r, provider=P, drop_usage_chunk=False), raw)
    upstream = [json.loads(e.removeprefix(b"data: ")) for e in raw.split(b"\n\n") if e.startswith(b"data: {")]
    assert chunks == upstream
    assert folded(chunks)["text"] == "Hello! How can I assist you today?"
    assert usage is None


@pytest.mark.parametrize("drop", [False, True])
def test_openai_usage_is_read_and_its_chunk_dropped_only_when_the_client_did_not_ask(drop: bool) -> None:
    chunks, usage = relay(
        lambda r: OpenAIStream(r, provider=P, drop_usage_chunk=drop), fixture_bytes("chat_stream_usage.sse")
    )
    assert usage == Usage(input_tokens=19, output_tokens=10)
    assert (chunks[-1]["choices"] == []) is not drop
    assert folded(chunks)["finish"] == "stop"


def test_openai_streamed_tool_call_is_passed_on_whole() -> None:
    chunks, _ = relay(
        lambda r: OpenAIStream(r, provider=P, drop_usage_chunk=False), fixture_bytes("chat_stream_tools.sse")
    )
    answer = folded(chunks)
    assert answer["finish"] == "tool_calls" and len(answer["calls"]) == 1
    json.loads(answer["calls"][0]["arguments"])


# --------------------------------------------------------------------------- translated formats


STREAMS: list[tuple[str, Callable[[Any], Any], bytes, dict[str, Any], Usage]] = [
    (
        "anthropic-text",
        anthropic,
        fixture_bytes("stream_text.sse", "anthropic"),
        {"text": "Hello!", "calls": [], "finish": "stop"},
        Usage(input_tokens=30, output_tokens=15, cached_input_tokens=5),
    ),
    (
        "anthropic-tool_use",
        anthropic,
        fixture_bytes("stream_tool_use.sse", "anthropic"),
        {
            "text": "Okay, let's check the weather.",
            "calls": [
                {
                    "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                    "name": "get_weather",
                    "arguments": '{"location": "San Francisco, CA"}',
                }
            ],
            "finish": "tool_calls",
        },
        Usage(input_tokens=472, output_tokens=89),
    ),
    (
        "gemini-text",
        gemini,
        fixture_bytes("stream.sse", "gemini"),
        {"text": "AI learns patterns from data.", "calls": [], "finish": "stop"},
        Usage(input_tokens=8, output_tokens=6),
    ),
    (
        "gemini-function_call",
        gemini,
        fixture_bytes("stream_function_call.sse", "gemini"),
        {
            "calls": [{"id": "call_0_0", "name": "get_weather", "arguments": '{"city":"Paris"}'}],
            "finish": "tool_calls",
        },
        Usage(input_tokens=40, output_tokens=10),
    ),
    (
        "cohere-text",
        cohere,
        fixture_bytes("stream.sse", "cohere"),
        {"text": "Hello there!", "calls": [], "finish": "stop"},
        Usage(input_tokens=69, output_tokens=3),
    ),
    (
        "cohere-tool_call",
        cohere,
        fixture_bytes("stream_tool_call.sse", "cohere"),
        {
            "reasoning": "I will check the weather.",
            "calls": [
                {
                    "id": "get_weather_nsz5zm3w56q3",
                    "name": "get_weather",
                    "arguments": '{"location": "Toronto"}',
                }
            ],
            "finish": "tool_calls",
        },
        Usage(input_tokens=1061, output_tokens=16),
    ),
    (
        "bedrock-text",
        bedrock,
        bedrock_stream("stream_text.json"),
        {"text": "Hello! How can I help you today?", "calls": [], "finish": "stop"},
        Usage(input_tokens=32, output_tokens=14, cached_input_tokens=20),
    ),
    (
        "bedrock-tool_use",
        bedrock,
        bedrock_stream("stream_tool_use.json"),
        {
            "text": "Let me check that for you.",
            "reasoning": "The user wants WZPZ's top song; top_song can tell.",
            "calls": [
                {"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song", "arguments": '{"sign": "WZPZ"}'}
            ],
            "finish": "tool_calls",
        },
        Usage(input_tokens=375, output_tokens=68),
    ),
]


@pytest.mark.parametrize(
    ("make", "body", "expected", "usage"), [pytest.param(*s[1:], id=s[0]) for s in STREAMS]
)
def test_a_recorded_stream_becomes_the_chunks_an_openai_client_assembles(
    make: Callable[[Any], Any], body: bytes, expected: dict[str, Any], usage: Usage
) -> None:
    chunks, read = relay(make, body)
    answer = folded(chunks)
    for field, value in expected.items():
        got = answer[field]
        if field == "calls":
            got = [{**c, "arguments": json.dumps(json.loads(c["arguments"]))} for c in got]
            value = [{**c, "arguments": json.dumps(json.loads(c["arguments"]))} for c in value]
        assert got == value, field
    assert answer["text"] or answer["calls"]
    assert read == usage
    assert read is not None and answer["usage"] == read.openai()  # the usage chunk the client asked for
    # the same bytes, one byte per read, give the same answer
    again, _ = relay(make, [body[i : i + 1] for i in range(len(body))])
    assert folded(again) == answer


def test_a_stream_split_anywhere_is_translated_alike() -> None:
    body = fixture_bytes("stream_thinking.sse", "anthropic")
    whole = folded(relay(anthropic, body)[0])
    assert whole["reasoning"] and whole["text"]
    for cut in range(0, len(body), 97):
        assert folded(relay(anthropic, [body[:cut], body[cut:]])[0]) == whole


def test_anthropic_json_mode_tool_is_the_answer_text() -> None:
    chunks, _ = relay(
        lambda r: anthropic(r, AnthropicJsonMode("get_weather")),
        fixture_bytes("stream_tool_use.sse", "anthropic"),
    )
    answer = folded(chunks)
    assert answer["calls"] == [] and json.loads(
        answer["text"].removeprefix("Okay, let's check the weather.")
    ) == {"location": "San Francisco, CA"}
    assert ANTHROPIC_JSON_TOOL  # the tool turnout names itself when it asks for JSON


def test_the_native_anthropic_stream_passes_events_on_as_they_came() -> None:
    body = fixture_bytes("stream_text.sse", "anthropic")
    chunks, usage = relay(
        lambda r: NativeAnthropicStream(
            r, provider=P, requested_model="claude", json_mode=None, include_usage=False
        ),
        body,
    )
    events = [e for e in body.split(b"\n\n") if e.strip() and b"message_stop" not in e]
    assert chunks == [e + b"\n\n" for e in events]
    assert usage == Usage(input_tokens=30, output_tokens=15, cached_input_tokens=5)


@pytest.mark.parametrize(
    ("make", "body"),
    [
        pytest.param(gemini, fixture_bytes("stream_cut.sse", "gemini"), id="gemini"),
        pytest.param(
            anthropic,
            fixture_bytes("stream_text.sse", "anthropic").rsplit(b"event: message_stop", 1)[0],
            id="anthropic",
        ),
        pytest.param(bedrock, bedrock_stream("stream_text.json", drop_last=2), id="bedrock"),
        pytest.param(
            lambda r: OpenAIStream(r, provider=P, drop_usage_chunk=False),
            fixture_bytes("chat_stream.sse").replace(b"data: [DONE]", b""),
            id="openai",
        ),
    ],
)
def test_a_stream_cut_before_its_end_is_truncated_not_complete(
    make: Callable[[Any], Any], body: bytes
) -> None:
    with pytest.raises(TurnoutError) as caught:
        relay(make, body)
    assert isinstance(caught.value, UpstreamConnectionError) or caught.value.code == "bad_upstream_response"
