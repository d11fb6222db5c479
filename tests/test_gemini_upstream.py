"""Gemini as an upstream: the official `openai` SDK against turnout against a real HTTP server on
127.0.0.1 answering with the Gemini API's documented shapes and recording what turnout sent."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from typing import Any

import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.spec import validate_openai
from support.upstream import Upstream, fixture_bytes, sse_events

ENV = {"UPSTREAM_KEY": UPSTREAM_KEY}
MODEL = "gemini-2.5-flash"
USER = [{"role": "user", "content": "Explain how AI works"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    doc = {
        "routing": {"retries": {"attempts": 1}},
        "providers": {
            "google": {"type": "gemini", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"}
        },
        "models": {
            "gemini": {"provider": "google", "model": MODEL},
            "gemini-embed": {"provider": "google", "model": "gemini-embedding-001"},
            "google/*": {"provider": "google", "model": "*"},
        },
    }
    return start_gateway(doc, ENV)


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def reply(upstream: Upstream, name: str, status: int = 200) -> None:
    upstream.reply_json(fixture_bytes(name, "gemini"), status)


def sent(upstream: Upstream) -> dict[str, Any]:
    body: dict[str, Any] = upstream.requests[-1].json
    return body


def test_a_plain_answer_with_thoughts_and_cache_usage(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "generate_content.json")
    raw = client.chat.completions.with_raw_response.create(
        model="gemini",
        messages=[{"role": "system", "content": "Be brief."}, *USER],
        temperature=0.3,
        top_p=0.9,
        max_tokens=100,
        stop=["END"],
        seed=7,
    )
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    completion = raw.parse()
    message = completion.choices[0].message
    assert message.content == "AI learns patterns from data."
    assert message.model_extra and message.model_extra["reasoning_content"] == "Let me think."
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (8, 16)
    assert (
        usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 4
    )
    request = upstream.requests[-1]
    assert request.path == f"/v1/models/{MODEL}:generateContent"
    assert request.headers["x-goog-api-key"] == UPSTREAM_KEY
    assert sent(upstream) == {
        "contents": [{"role": "user", "parts": [{"text": "Explain how AI works"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.9,
            "seed": 7,
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
        },
    }


def test_tools_images_and_a_tool_round_trip(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "function_call.json")
    first = client.chat.completions.create(
        model="gemini",
        messages=USER,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]  # type: ignore[union-attr]
    assert len({c.id for c in calls}) == 2
    body = sent(upstream)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "parametersJsonSchema": WEATHER["function"]["parameters"],
                }
            ]
        }
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    reply(upstream, "generate_content.json")
    client.chat.completions.create(
        model="gemini",
        tools=[WEATHER],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Here is a map"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},  # type: ignore[misc]
            {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp": 18}'},
            {"role": "tool", "tool_call_id": calls[1].id, "content": "24 C"},
        ],
    )
    contents = sent(upstream)["contents"]
    assert contents[0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "24 C"}}},
        ],
    }


def test_structured_outputs_use_gemini_json_mode(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "generate_content.json")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    client.chat.completions.create(
        model="gemini",
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    config = sent(upstream)["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}


@pytest.mark.parametrize("fixture", ["safety_blocked.json", "prompt_blocked.json"])
def test_a_safety_block_is_a_content_filter_finish(
    upstream: Upstream, client: openai.OpenAI, fixture: str
) -> None:
    reply(upstream, fixture)
    raw = client.chat.completions.with_raw_response.create(model="gemini", messages=USER)
    validate_openai("CreateChatCompletionResponse", json.loads(raw.content))
    assert raw.parse().choices[0].finish_reason == "content_filter"


def test_a_stream_with_usage(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_sse(sse_events("stream.sse", "gemini"))
    stream = client.chat.completions.create(
        model="gemini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "AI learns patterns from data."
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    request = upstream.requests[-1]
    assert request.path == f"/v1/models/{MODEL}:streamGenerateContent" and request.query == {"alt": "sse"}


def test_a_streamed_function_call(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_sse(sse_events("stream_function_call.sse", "gemini"))
    chunks = list(client.chat.completions.create(model="gemini", messages=USER, tools=[WEATHER], stream=True))
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments or "") == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_stream_that_stops_before_its_finish_is_an_error(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_sse(sse_events("stream_cut.sse", "gemini"))
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="gemini", messages=USER, stream=True):
            assert not chunk.choices or chunk.choices[0].finish_reason is None
    assert not isinstance(caught.value, openai.APIStatusError)


@pytest.mark.parametrize(
    ("fixture", "status", "exception", "code"),
    [
        ("error_invalid_argument.json", 400, openai.BadRequestError, None),
        ("error_too_long.json", 400, openai.BadRequestError, "context_length_exceeded"),
        ("error_resource_exhausted.json", 429, openai.RateLimitError, None),
    ],
)
def test_gemini_errors_become_openai_errors(
    upstream: Upstream,
    client: openai.OpenAI,
    fixture: str,
    status: int,
    exception: type[Exception],
    code: str | None,
) -> None:
    reply(upstream, fixture, status)
    with pytest.raises(exception) as caught:
        client.chat.completions.create(model="gemini", messages=USER)
    error = caught.value
    assert isinstance(error, openai.APIStatusError) and isinstance(error.body, dict)
    assert error.body["code"] == code
    assert error.body["type"] == ("resource_exhausted" if status == 429 else "invalid_argument")


def test_parameters_gemini_lacks_are_refused(upstream: Upstream, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemini", messages=USER, logit_bias={"1": 1})
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "logit_bias"
    assert upstream.requests == []


def test_embeddings_in_order_as_floats_and_base64(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "batch_embed.json")
    result = client.embeddings.create(model="gemini-embed", input=["one", "two"], dimensions=3)
    # the SDK asks for base64 (float32) and decodes it
    assert [d.embedding for d in result.data] == [
        pytest.approx([0.1, 0.2, 0.3]),
        pytest.approx([0.4, 0.5, 0.6]),
    ]
    assert upstream.requests[-1].path == "/v1/models/gemini-embedding-001:batchEmbedContents"
    assert sent(upstream)["requests"][1] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "two"}]},
        "outputDimensionality": 3,
    }
    reply(upstream, "batch_embed.json")
    raw = client.embeddings.with_raw_response.create(
        model="gemini-embed", input=["one", "two"], encoding_format="base64"
    )
    first = json.loads(raw.content)["data"][0]["embedding"]
    assert struct.unpack("<3f", base64.b64decode(first)) == pytest.approx((0.1, 0.2, 0.3))


def test_the_model_list_comes_from_gemini(upstream: Upstream, client: openai.OpenAI) -> None:
    reply(upstream, "models.json")
    names = {m.id for m in client.models.list()}
    assert {"google/gemini-2.5-flash", "google/gemini-embedding-001"} <= names
