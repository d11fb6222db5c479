"""Cohere as an upstream: the official `openai` SDK against turnout against a real HTTP server on
127.0.0.1 answering with Cohere's documented v2 shapes and recording what turnout sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.spec import validate_openai
from support.upstream import Upstream, fixture_bytes, sse_events

ENV = {"UPSTREAM_KEY": UPSTREAM_KEY}
USER = [{"role": "user", "content": "What is an LLM?"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    base = upstream.root_url + "/v2"
    doc = {
        "routing": {"retries": {"attempts": 1}},
        "providers": {"co": {"type": "cohere", "base_url": base, "api_key": "env:UPSTREAM_KEY"}},
        "models": {
            "command": {"provider": "co", "model": "command-a-03-2025"},
            "embed": {"provider": "co", "model": "embed-v4.0"},
            "co/*": {"provider": "co", "model": "*"},
        },
    }
    return start_gateway(doc, ENV)


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def reply(upstream: Upstream, name: str, status: int = 200) -> None:
    upstream.reply_json(fixture_bytes(name, "cohere"), status)


def test_a_plain_answer(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "chat.json")
    raw = client.chat.completions.with_raw_response.create(
        model="command",
        messages=[{"role": "developer", "content": "Be brief."}, *USER],
        top_p=0.5,
        max_completion_tokens=50,
        stop="END",
    )
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    completion = raw.parse()
    assert completion.choices[0].message.content == "LLMs are neural networks trained on text."
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (71, 9)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 64
    request = upstream.requests[-1]
    assert request.path == "/v2/chat" and request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert request.json == {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is an LLM?"},
        ],
        "p": 0.5,
        "max_tokens": 50,
        "stop_sequences": ["END"],
    }


def test_an_answer_longer_than_command_a_gives_is_refused_before_cohere_is_asked(
    upstream: Upstream, client: openai.OpenAI
) -> None:
    """Command A answers at most 8,000 tokens (Cohere's model card, in the shipped table): a request
    for more is a 400 naming the limit and the parameter, and Cohere is not called; exactly the
    limit is sent on."""
    for param in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="command", messages=USER, **{param: 8001})  # type: ignore[call-overload]
        assert caught.value.param == param and "8000" in caught.value.message
    assert upstream.requests == []
    reply(upstream, "chat.json")
    client.chat.completions.create(model="command", messages=USER, max_tokens=8000)  # type: ignore[arg-type]
    assert upstream.requests[-1].json["max_tokens"] == 8000


def test_tool_calls_and_a_tool_round_trip(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "chat_tool_call.json")
    completion = client.chat.completions.create(
        model="command", messages=USER, tools=[WEATHER], tool_choice="required"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = (choice.message.tool_calls or [])[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "location": "Toronto"
    }  # type: ignore[union-attr]
    assert choice.message.model_extra and choice.message.model_extra["reasoning_content"].startswith(
        "I will look up"
    )
    body = upstream.requests[-1].json
    assert body["tools"] == [WEATHER] and body["tool_choice"] == "REQUIRED"
    reply(upstream, "chat.json")
    client.chat.completions.create(
        model="command",
        tools=[WEATHER],
        messages=[
            *USER,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "-5 C"},
        ],
    )
    messages = upstream.requests[-1].json["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.id
    assert messages[2] == {"role": "tool", "content": "-5 C", "tool_call_id": call.id}


def test_a_stream_with_usage(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_sse(sse_events("stream.sse", "cohere"))
    chunks = list(
        client.chat.completions.create(
            model="command", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there!"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 69
    assert upstream.requests[-1].json["stream"] is True


def test_a_streamed_tool_call(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_sse(sse_events("stream_tool_call.sse", "cohere"))
    name, arguments, finish = "", "", None
    for chunk in client.chat.completions.create(model="command", messages=USER, tools=[WEATHER], stream=True):
        for call in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
            name += (call.function.name or "") if call.function else ""
            arguments += (call.function.arguments or "") if call.function else ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert (
        name == "get_weather" and json.loads(arguments) == {"location": "Toronto"} and finish == "tool_calls"
    )


@pytest.mark.parametrize(
    ("fixture", "status", "exception"),
    [("error_400.json", 400, openai.BadRequestError), ("error_429.json", 429, openai.RateLimitError)],
)
def test_cohere_errors_become_openai_errors(
    upstream: Upstream, client: openai.OpenAI, fixture: str, status: int, exception: type[Exception]
) -> None:
    reply(upstream, fixture, status)
    with pytest.raises(exception) as caught:
        client.chat.completions.create(model="command", messages=USER)
    assert isinstance(caught.value, openai.APIStatusError) and isinstance(caught.value.body, dict)
    assert json.loads(fixture_bytes(fixture, "cohere"))["message"] in caught.value.body["message"]


def test_embeddings(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "embed.json")
    result = client.embeddings.create(model="embed", input=["hello", "goodbye"])
    assert [len(d.embedding) for d in result.data] == [3, 3]
    assert result.data[1].embedding == pytest.approx([0.021, 0.5, -0.25])
    assert result.usage.prompt_tokens == 2
    assert upstream.requests[-1].path == "/v2/embed"
    assert upstream.requests[-1].json["texts"] == ["hello", "goodbye"]


def test_the_model_list_comes_from_cohere(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "models.json")
    assert {"co/command-a-03-2025", "co/embed-v4.0"} <= {m.id for m in client.models.list()}
    assert upstream.requests[-1].path == "/v1/models"
