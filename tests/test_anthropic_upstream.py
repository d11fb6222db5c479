"""Anthropic as an upstream: the official `openai` SDK against turnout against a real HTTP server on
127.0.0.1 that answers with Anthropic's documented Messages API examples and records what turnout
sent it. Every answer turnout gives validates against OpenAI's spec."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.spec import validate_openai
from support.upstream import Upstream, fixture_bytes, sse_events

ENV = {"UPSTREAM_KEY": UPSTREAM_KEY}
MODEL = "claude-sonnet-4-5-20250929"
USER = [{"role": "user", "content": "Hello, Claude"}]


def anthropic_doc(upstream: Upstream, **provider: Any) -> dict[str, Any]:
    return {
        "routing": {"retries": {"attempts": 1}},
        "providers": {
            "claude": {
                "type": "anthropic",
                "base_url": upstream.base_url,
                "api_key": "env:UPSTREAM_KEY",
                **provider,
            }
        },
        "models": {
            "claude": {"provider": "claude", "model": MODEL},
            "claude/*": {"provider": "claude", "model": "*"},
        },
    }


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway(anthropic_doc(upstream), ENV)


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def reply(upstream: Upstream, name: str, status: int = 200, headers: dict[str, str] | None = None) -> None:
    upstream.reply_json(fixture_bytes(name, "anthropic"), status, headers)


def sent(upstream: Upstream) -> dict[str, Any]:
    request = upstream.requests[-1]
    assert request.path == "/v1/messages"
    body: dict[str, Any] = request.json
    return body


# --------------------------------------------------------------------------- plain answers


def test_a_plain_answer_with_system_prompt_and_cache_usage(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "message.json")
    raw = client.chat.completions.with_raw_response.create(
        model="claude",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in English."},
            *USER,
        ],
        temperature=0.2,
        stop="END",
        user="user-42",
    )
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hi! My name is Claude."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id == "chatcmpl-msg_013Zva2CMHLNnXjNJJKqJ2EF"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (2095 + 100 + 1000, 503)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 1000
    request = upstream.requests[-1]
    assert request.headers["x-api-key"] == UPSTREAM_KEY and "authorization" not in request.headers
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert sent(upstream) == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": [
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Answer in English."},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello, Claude"}]}],
        "temperature": 0.2,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
    }


def test_consecutive_messages_of_one_role_are_merged_and_images_converted(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    reply(upstream, "message.json")
    png = "data:image/png;base64,iVBORw0KGgo="
    client.chat.completions.create(
        model="claude",
        max_completion_tokens=300,
        messages=[
            {"role": "user", "content": "First."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": png}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
        ],
    )
    body = sent(upstream)
    assert body["max_tokens"] == 300
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "First."},
                {"type": "text", "text": "What is in these?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather at a place",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


def test_tools_go_out_in_anthropics_form_and_tool_calls_come_back(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    reply(upstream, "message_tool_use.json")
    raw = client.chat.completions.with_raw_response.create(
        model="claude",
        messages=USER,
        tools=[{**WEATHER, "function": {**WEATHER["function"], "strict": True}}],  # type: ignore[dict-item]
        tool_choice="required",
        parallel_tool_calls=False,
    )
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll check the weather in San Francisco."
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "toolu_01A09q90qw90lq917835lq9" and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"location": "San Francisco, CA", "unit": "celsius"}  # type: ignore[union-attr]
    body = sent(upstream)
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
            "description": "Weather at a place",
            "strict": True,
        }
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_a_tool_round_trip_becomes_tool_use_and_tool_result_blocks(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    reply(upstream, "message.json")
    client.chat.completions.create(
        model="claude",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[
            *USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "24 C"},
        ],
    )
    body = sent(upstream)
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"location": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24 C"},
            ],
        },
    ]


def test_structured_outputs_use_a_forced_tool_and_come_back_as_json_text(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    answer = json.loads(fixture_bytes("message_tool_use.json", "anthropic"))
    answer["content"] = [
        {"type": "tool_use", "id": "toolu_9", "name": "json_output", "input": {"city": "Paris"}}
    ]
    upstream.reply_json(answer)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    raw = client.chat.completions.with_raw_response.create(
        model="claude",
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    choice = raw.parse().choices[0]
    assert json.loads(choice.message.content or "") == {"city": "Paris"}
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    body = sent(upstream)
    assert body["tools"][0]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": "json_output"}


# --------------------------------------------------------------------------- streams


def test_a_streamed_answer_with_usage(upstream: Upstream, client: openai.OpenAI, gateway: Gateway) -> None:
    upstream.reply_sse(sse_events("stream_text.sse", "anthropic"))
    with httpx.Client(timeout=20) as http:
        response = http.post(
            gateway.base_url + "/chat/completions",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            json={
                "model": "claude",
                "messages": USER,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e.strip()]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk)
    assert {c["id"] for c in chunks} == {"chatcmpl-msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello!"
    finishes = [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert finishes == ["stop"]
    usage = chunks[-1]["usage"]
    assert (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["prompt_tokens_details"]["cached_tokens"],
    ) == (
        30,
        15,
        5,
    )
    assert sent(upstream)["stream"] is True


def test_a_streamed_tool_call_is_assembled_by_the_sdk(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_sse(sse_events("stream_tool_use.sse", "anthropic"))
    stream = client.chat.completions.create(model="claude", messages=USER, tools=[WEATHER], stream=True)  # type: ignore[list-item]
    text, name, arguments, finish = "", "", "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or ():
            name += (call.function.name or "") if call.function else ""
            arguments += (call.function.arguments or "") if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert text == "Okay, let's check the weather."
    assert name == "get_weather" and json.loads(arguments) == {"location": "San Francisco, CA"}
    assert finish == "tool_calls"


def test_an_error_event_mid_stream_ends_the_stream_with_an_error(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    upstream.reply_sse(sse_events("stream_overloaded.sse", "anthropic"))
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="claude", messages=USER, stream=True):
            received.append(chunk)
    assert not isinstance(caught.value, openai.APIStatusError)
    assert "Overloaded" in caught.value.message
    assert all(not c.choices or c.choices[0].finish_reason is None for c in received)


# --------------------------------------------------------------------------- errors and gaps


@pytest.mark.parametrize(
    ("fixture", "status", "exception", "code"),
    [
        ("error_overloaded.json", 529, openai.InternalServerError, "upstream_unavailable"),
        ("error_invalid_request.json", 400, openai.BadRequestError, None),
        ("error_prompt_too_long.json", 400, openai.BadRequestError, "context_length_exceeded"),
        ("error_overloaded.json", 401, openai.InternalServerError, "upstream_auth_error"),
    ],
)
def test_anthropic_errors_reach_the_client_as_openai_errors(
    upstream: Upstream,
    client: openai.OpenAI,
    fixture: str,
    status: int,
    exception: type[Exception],
    code: str | None,
) -> None:
    reply(upstream, fixture, status)
    with pytest.raises(exception) as caught:
        client.chat.completions.create(model="claude", messages=USER)
    error = caught.value
    assert isinstance(error, openai.APIStatusError)
    assert isinstance(error.body, dict) and error.body.get("code") == code
    assert UPSTREAM_KEY not in str(error.body)
    if status == 400:
        assert error.body["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"logit_bias": {"50256": -100}}, "logit_bias"), ({"temperature": 1.5}, "temperature"), ({"n": 2}, "n")],
)
def test_parameters_anthropic_lacks_are_refused_by_name(
    upstream: Upstream, client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude", messages=USER, **extra)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == param
    assert upstream.requests == []


def test_dropping_is_a_per_provider_choice(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(anthropic_doc(upstream, unsupported_params="drop"), ENV)
    reply(upstream, "message.json")
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        client.chat.completions.create(model="claude", messages=USER, logit_bias={"1": 1}, seed=3)
    assert "logit_bias" not in sent(upstream) and "seed" not in sent(upstream)


def test_the_model_list_comes_from_anthropic(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "models.json")
    names = {m.id for m in client.models.list()}
    assert {"claude", "claude/claude-sonnet-4-5-20250929", "claude/claude-haiku-4-5-20251001"} <= names
    assert upstream.requests[-1].path == "/v1/models"
