"""Anthropic's Messages API inbound: the official `anthropic` SDK against turnout, routed to an
OpenAI-format upstream (turnout's fake provider) and to an Anthropic-format one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.spec import validate_anthropic
from support.upstream import Upstream, fixture_bytes, sse_events

QUESTION = "What does a turnout do?"
ANSWER = f"You said: {QUESTION}"
USER: list[Any] = [{"role": "user", "content": QUESTION}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather at a place",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    doc = {
        "routing": {"retries": {"attempts": 1}},
        "providers": {
            "fake": {"type": "fake", "fake": {"chunks": 6}},
            "claude": {"type": "anthropic", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"},
            "compatible": {
                "type": "openai_compatible",
                "base_url": upstream.base_url,
                "api_key": "env:UPSTREAM_KEY",
            },
        },
        "models": {
            "translated": {"provider": "compatible", "model": "test-model"},
            "chat": {"provider": "fake", "model": "m"},
            "down": {"provider": "fake", "model": "m?fail=503"},
            "claude": {"provider": "claude", "model": "claude-sonnet-4-5-20250929"},
            "mixed": {
                "targets": [
                    {"provider": "fake", "model": "m", "name": "fake"},
                    {"provider": "claude", "model": "claude-sonnet-4-5-20250929", "name": "claude"},
                ]
            },
        },
    }
    return start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})


@pytest.fixture
def client(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


def test_a_message_from_an_openai_format_provider(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(
        model="chat", max_tokens=200, system="Be brief.", messages=USER
    )
    validate_anthropic("Message", json.loads(raw.http_response.content))
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == "chat"
    assert message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == ANSWER  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["x-turnout-deployment"] == "fake/m"


def test_a_streamed_message_with_the_exact_event_sequence(
    client: anthropic.Anthropic, gateway: Gateway
) -> None:
    with client.messages.stream(model="chat", max_tokens=200, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    with httpx.Client(timeout=20) as http:
        response = http.post(
            gateway.root_url + "/v1/messages",
            headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"},
            json={"model": "chat", "max_tokens": 100, "messages": USER, "stream": True},
        )
    kinds = [
        line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")
    ]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "[DONE]" not in response.text


def test_tools_round_trip_through_an_openai_format_provider(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="chat", max_tokens=200, messages=USER, tools=[WEATHER])
    assert message.stop_reason == "tool_use"
    call = next(b for b in message.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "example"}  # type: ignore[union-attr]
    follow_up = client.messages.create(
        model="chat",
        max_tokens=200,
        tools=[WEATHER],
        messages=[
            *USER,
            {"role": "assistant", "content": [c.model_dump() for c in message.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C"}]},  # type: ignore[union-attr]
        ],
    )
    assert follow_up.content[0].text == "The tool returned: 18 C"  # type: ignore[union-attr]


def test_a_streamed_tool_call_is_assembled_by_the_sdk(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="chat", max_tokens=200, messages=USER, tools=[WEATHER]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    call = next(b for b in final.content if b.type == "tool_use")
    assert call.input == {"city": "example"}  # type: ignore[union-attr]


def test_claude_through_turnout_keeps_its_answer(upstream: Upstream, client: anthropic.Anthropic) -> None:
    upstream.reply_json(fixture_bytes("message.json", "anthropic"))
    raw = client.messages.with_raw_response.create(model="claude", max_tokens=100, messages=USER)
    # same format both ways: the upstream's answer is passed on byte for byte
    assert raw.http_response.content == fixture_bytes("message.json", "anthropic")
    message = raw.parse()
    assert message.content[0].text == "Hi! My name is Claude."  # type: ignore[union-attr]
    assert message.usage.cache_creation_input_tokens == 100 and message.usage.input_tokens == 2095
    assert upstream.requests[-1].json["model"] == "claude-sonnet-4-5-20250929"
    upstream.reply_sse(sse_events("stream_tool_use.sse", "anthropic"))
    with client.messages.stream(model="claude", max_tokens=100, messages=USER, tools=[WEATHER]) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"location": "San Francisco, CA"}  # type: ignore[union-attr]


NATIVE_ONLY: dict[str, Any] = {
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "top_k": 5,
    "tools": [WEATHER, {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
}
DOCUMENT = {
    "role": "user",
    "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Rails."}},
        {"type": "text", "text": QUESTION, "cache_control": {"type": "ephemeral"}},
    ],
}


def test_what_only_anthropic_can_carry_goes_through_whole(
    upstream: Upstream, client: anthropic.Anthropic
) -> None:
    upstream.reply_json(fixture_bytes("message_thinking.json", "anthropic"))
    raw = client.messages.with_raw_response.create(
        model="claude",
        max_tokens=4096,
        messages=[DOCUMENT],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
        thinking=NATIVE_ONLY["thinking"],
        tools=NATIVE_ONLY["tools"],
        extra_body={"top_k": 5},
    )
    sent = upstream.requests[-1]
    assert sent.json == {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 4096,
        "messages": [DOCUMENT],
        **NATIVE_ONLY,
    }
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    message = raw.parse()
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.signature.startswith("WaUjzkyp")  # type: ignore[union-attr]
    assert raw.headers["x-turnout-deployment"] == "claude/claude-sonnet-4-5-20250929"


@pytest.mark.parametrize(
    "source",
    [
        {"type": "text", "media_type": "text/plain", "data": "Rails."},
        {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
    ],
)
def test_a_message_of_a_document_alone_goes_through_whole(
    upstream: Upstream, client: anthropic.Anthropic, source: dict[str, Any]
) -> None:
    """A user turn holding only a document (nothing the chat format carries) is a message all the
    same: it goes to the Anthropic deployment as written (it was refused as having no message)."""
    upstream.reply_json(fixture_bytes("message_thinking.json", "anthropic"))
    only = {"role": "user", "content": [{"type": "document", "source": source}]}
    client.messages.create(model="claude", max_tokens=100, messages=[only])  # type: ignore[list-item]
    assert upstream.requests[-1].json["messages"] == [only]
    with pytest.raises(anthropic.BadRequestError) as refused:  # no deployment of its format: named
        client.messages.create(model="chat", max_tokens=100, messages=[only])  # type: ignore[list-item]
    assert "messages[0].content[0] (document)" in refused.value.message


def test_a_native_stream_is_passed_on_event_for_event(upstream: Upstream, gateway: Gateway) -> None:
    upstream.reply_sse(sse_events("stream_thinking.sse", "anthropic"))
    with httpx.Client(timeout=20) as http:
        response = http.post(
            gateway.root_url + "/v1/messages",
            headers={"x-api-key": MASTER_KEY},
            json={"model": "claude", "max_tokens": 4096, "messages": USER, "stream": True, **NATIVE_ONLY},
        )
    expected = fixture_bytes("stream_thinking.sse", "anthropic").decode()
    assert [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")] == [
        json.loads(line[6:]) for line in expected.splitlines() if line.startswith("data: ")
    ]
    kinds = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert kinds == [line[7:] for line in expected.splitlines() if line.startswith("event: ")]


def test_native_only_requests_go_to_anthropic_deployments_only(
    upstream: Upstream, client: anthropic.Anthropic
) -> None:
    upstream.reply_json(fixture_bytes("message_thinking.json", "anthropic"))
    # "mixed" prefers the fake (OpenAI-format) deployment, which could not carry `top_k`
    raw = client.messages.with_raw_response.create(
        model="mixed", max_tokens=4096, messages=USER, extra_body={"top_k": 5}
    )
    assert raw.headers["x-turnout-deployment"] == "claude"
    # thinking only tunes Anthropic's own models: elsewhere the answer comes without it
    thought = client.messages.with_raw_response.create(
        model="mixed", max_tokens=4096, messages=USER, thinking={"type": "enabled", "budget_tokens": 2048}
    )
    assert thought.headers["x-turnout-deployment"] == "fake"
    assert thought.parse().content[0].text == ANSWER  # type: ignore[union-attr]
    plain = client.messages.with_raw_response.create(model="mixed", max_tokens=100, messages=USER)
    assert plain.headers["x-turnout-deployment"] == "fake"
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model="chat", max_tokens=100, messages=[DOCUMENT])
    assert "messages[0].content[0] (document)" in refused.value.message


def test_errors_come_in_anthropics_format(client: anthropic.Anthropic, gateway: Gateway) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope", max_tokens=10, messages=USER)
    assert isinstance(missing.value.body, dict) and missing.value.body["error"]["type"] == "not_found_error"
    with (
        anthropic.Anthropic(base_url=gateway.root_url, api_key="sk-wrong", max_retries=0) as wrong,
        pytest.raises(anthropic.AuthenticationError),
    ):
        wrong.messages.create(model="chat", max_tokens=10, messages=USER)
    with pytest.raises(anthropic.APIStatusError) as down:
        client.messages.create(model="down", max_tokens=10, messages=USER)
    assert down.value.status_code == 503
    assert isinstance(down.value.body, dict) and down.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.BadRequestError) as unsupported:
        client.messages.create(model="chat", max_tokens=10, messages=USER, extra_body={"top_k": 5})
    assert "top_k" in unsupported.value.message
    with httpx.Client(timeout=10) as http:
        response = http.post(
            gateway.root_url + "/v1/messages",
            headers={"x-api-key": MASTER_KEY},
            json={"model": "chat", "messages": USER},
        )
    assert response.status_code == 400
    body = json.loads(response.content)
    validate_anthropic("ErrorResponse", body)
    assert body["type"] == "error" and "max_tokens" in body["error"]["message"]
    with httpx.Client(timeout=10) as http:  # a method the route does not take, too
        for path in ("/v1/messages", "/v1/messages/count_tokens", "/messages", "/v1/messages/"):
            response = http.get(gateway.root_url + path, headers={"x-api-key": MASTER_KEY})
            assert response.status_code == 405, path
            validate_anthropic("ErrorResponse", response.json())


def test_what_claude_code_sends_is_translated_without_a_400(upstream: Upstream, gateway: Gateway) -> None:
    """Claude Code's requests: system turns among the messages, thinking, output_config and
    context_management, deferred tools (loaded by a tool_reference), cache_control everywhere."""
    body = {
        "model": "translated",
        "max_tokens": 32000,
        "stream": True,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "s"})},
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "tools": [
            {**WEATHER, "name": "ToolSearch"},
            {**WEATHER, "defer_loading": True},  # get_weather: loaded below
            {**WEATHER, "name": "Placeholder", "defer_loading": True},  # never loaded
            {"type": "web_search_20250305", "name": "web_search", "defer_loading": True},
        ],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": QUESTION, "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "system", "content": [{"type": "text", "text": "Deferred tools: get_weather"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Search.", "signature": "sig"},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "ToolSearch",
                        "input": {"query": "weather"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "tool_reference", "tool_name": "get_weather"}],
                    }
                ],
            },
        ],
    }
    with httpx.Client(timeout=20) as http:
        response = http.post(
            gateway.root_url + "/v1/messages?beta=true",
            headers={"x-api-key": MASTER_KEY, "anthropic-beta": "context-management-2025-06-27"},
            json=body,
        )
    assert response.status_code == 200, response.text
    assert "event: message_stop" in response.text
    sent = upstream.requests[-1].json
    assert sent["model"] == "test-model" and sent["max_tokens"] == 32000
    assert not {"thinking", "output_config", "context_management"} & set(sent)
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "system", "assistant", "tool"]
    assert sent["messages"][2]["content"] == "Deferred tools: get_weather"
    assert sent["messages"][4] == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": "Tool loaded: get_weather",
    }
    assert [t["function"]["name"] for t in sent["tools"]] == ["ToolSearch", "get_weather"]


def test_images_in_a_tool_result_follow_it_as_a_user_turn(
    upstream: Upstream, client: anthropic.Anthropic
) -> None:
    # a chat tool message holds only text: Claude Code's Read of an image file still gets through
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": pixel}}
    client.messages.create(
        model="translated",
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            *USER,
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "A map:"}, image],
                    }
                ],
            },
        ],
    )
    sent = upstream.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[2]["content"] == "A map:\n\n(an image, shown in the next user message)"
    assert sent[3]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}}
    ]
