"""Chat completions through the official OpenAI SDK: requests reach the upstream faithfully, answers
come back intact and valid against OpenAI's published spec, streamed or not."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.spec import validate_openai
from support.upstream import Upstream, fixture_json, sse_events

USER = [{"role": "user", "content": "Hello!"}]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["location"],
        },
        "strict": False,
    },
}


def test_completion_comes_back_intact(client: openai.OpenAI, upstream: Upstream, gateway: Gateway) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    completion = raw.parse()

    expected = fixture_json("chat_completion.json")
    assert json.loads(raw.content) == expected  # byte-for-byte the upstream's answer
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    assert completion.choices[0].message.content == expected["choices"][0]["message"]["content"]
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert completion.usage.completion_tokens_details is not None
    assert raw.headers["x-turnout-deployment"] == "up/gpt-4o-2024-08-06"
    assert raw.headers["x-request-id"].startswith("req_")

    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json["model"] == "gpt-4o-2024-08-06"
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert MASTER_KEY not in json.dumps(sent.headers)  # the client's key never travels upstream


def test_every_documented_field_reaches_the_upstream(client: openai.OpenAI, upstream: Upstream) -> None:
    messages: list[Any] = [
        {"role": "developer", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "You are a travel assistant."}]},
        {
            "role": "user",
            "name": "ada",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/boardwalk.jpg", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_current_weather", "arguments": '{"location":"Boston"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    client.chat.completions.create(
        model="gpt-4o",
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_current_weather"}},
        parallel_tool_calls=False,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema, "strict": True},
        },
        n=2,
        seed=42,
        stop=["\n\n", "END"],
        temperature=0.3,
        top_p=0.9,
        max_tokens=300,
        max_completion_tokens=256,
        logprobs=True,
        top_logprobs=3,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        logit_bias={"50256": -100},
        user="user-1234",
        metadata={"ticket": "T-1"},
        store=False,
        service_tier="auto",
        reasoning_effort="low",
        prediction={"type": "content", "content": "Paris"},
        extra_body={"top_k": 20, "repetition_penalty": 1.1},  # vendor fields (vLLM) pass through too
    )
    sent = upstream.requests[-1].json
    assert sent["model"] == "gpt-4o-2024-08-06"
    assert sent["messages"] == messages
    assert sent["tools"] == [WEATHER_TOOL]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_current_weather"}}
    assert sent["response_format"]["json_schema"]["schema"] == schema
    for name, value in [
        ("parallel_tool_calls", False),
        ("n", 2),
        ("seed", 42),
        ("stop", ["\n\n", "END"]),
        ("temperature", 0.3),
        ("top_p", 0.9),
        ("max_tokens", 300),
        ("max_completion_tokens", 256),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("frequency_penalty", 0.5),
        ("presence_penalty", -0.5),
        ("logit_bias", {"50256": -100}),
        ("user", "user-1234"),
        ("metadata", {"ticket": "T-1"}),
        ("store", False),
        ("service_tier", "auto"),
        ("reasoning_effort", "low"),
        ("prediction", {"type": "content", "content": "Paris"}),
        ("top_k", 20),
        ("repetition_penalty", 1.1),
    ]:
        assert sent[name] == value, name


@pytest.mark.parametrize(
    "fixture", ["chat_completion_tools.json", "chat_completion_logprobs.json", "chat_completion_image.json"]
)
def test_tool_calls_logprobs_and_details_come_back(
    client: openai.OpenAI, upstream: Upstream, fixture: str
) -> None:
    upstream.reply_fixture(fixture)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=USER, tools=[WEATHER_TOOL]
    )
    assert json.loads(raw.content) == fixture_json(fixture)
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    choice = raw.parse().choices[0]
    expected = fixture_json(fixture)["choices"][0]
    if "tool_calls" in expected["message"]:
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls is not None
        call = choice.message.tool_calls[0]
        assert call.type == "function"
        assert call.function.name == "get_current_weather"
        assert json.loads(call.function.arguments) == {"location": "Boston, MA"}
    if expected.get("logprobs"):
        assert choice.logprobs is not None and choice.logprobs.content is not None
        assert choice.logprobs.content[0].token == expected["logprobs"]["content"][0]["token"]
        assert choice.logprobs.content[0].top_logprobs


def test_refusal_and_reasoning_usage_details_are_kept(client: openai.OpenAI, upstream: Upstream) -> None:
    body = fixture_json("chat_completion.json")
    body["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
    body["usage"]["completion_tokens_details"]["reasoning_tokens"] = 64
    body["usage"]["prompt_tokens_details"]["cached_tokens"] = 12
    upstream.reply_json(body)
    completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert completion.choices[0].message.refusal == "I can't help with that."
    assert completion.usage is not None
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 64
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 12


def _content(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_stream_with_usage(client: openai.OpenAI, upstream: Upstream) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert _content(chunks) == "Hello! How can I assist you today?"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 29
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}


def test_stream_without_usage_still_accounts_for_it(
    client: openai.OpenAI, upstream: Upstream, gateway: Gateway
) -> None:
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    assert _content(chunks) == "Hello! How can I assist you today?"
    assert all(c.choices for c in chunks), "the client did not ask for the usage chunk"
    # turnout asked the upstream for usage anyway, and counted it
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}
    totals = gateway.call(lambda: gateway.services.budgets.totals["gpt-4o"])
    assert (totals.input_tokens, totals.output_tokens) == (19, 10)


def test_streamed_tool_call(client: openai.OpenAI, upstream: Upstream) -> None:
    upstream.reply_sse("chat_stream_tools.sse")
    chunks = list(
        client.chat.completions.create(model="gpt-4o", messages=USER, tools=[WEATHER_TOOL], stream=True)
    )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == "call_abc123"
    assert deltas[0].function is not None and deltas[0].function.name == "get_current_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(arguments) == {"location": "Boston, MA"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


@pytest.mark.parametrize("include_usage", [True, False])
def test_every_streamed_chunk_is_valid_and_flushed_as_sse(
    gateway: Gateway, upstream: Upstream, include_usage: bool
) -> None:
    body = {"model": "gpt-4o", "messages": USER, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    with httpx.stream(
        "POST",
        gateway.base_url + "/chat/completions",
        json=body,
        timeout=10,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert text.count("[DONE]") == 1
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    for payload in payloads:
        validate_openai("CreateChatCompletionStreamResponse", payload)
    expected = [json.loads(e.removeprefix(b"data: ")) for e in sse_events("chat_stream_usage.sse")[:-1]]
    if not include_usage:
        expected = expected[:-1]  # the usage chunk is dropped, the rest untouched
    assert payloads == expected


def test_n_choices_and_json_object(client: openai.OpenAI, upstream: Upstream) -> None:
    body = fixture_json("chat_completion.json")
    body["choices"].append({**body["choices"][0], "index": 1})
    upstream.reply_json(body)
    completion = client.chat.completions.create(
        model="gpt-4o", messages=USER, n=2, response_format={"type": "json_object"}
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert upstream.requests[-1].json["response_format"] == {"type": "json_object"}
    assert upstream.requests[-1].json["n"] == 2


def test_wildcard_alias_passes_the_model_name_through(client: openai.OpenAI, upstream: Upstream) -> None:
    client.chat.completions.create(model="up/meta-llama/Llama-3.1-8B-Instruct", messages=USER)
    assert upstream.requests[-1].json["model"] == "meta-llama/Llama-3.1-8B-Instruct"


def test_base_url_without_v1_works_too(gateway: Gateway) -> None:
    with openai.OpenAI(base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0) as c:
        completion = c.chat.completions.create(model="gpt-4o", messages=USER)
    assert completion.choices[0].message.content
