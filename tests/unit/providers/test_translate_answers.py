"""Every wire format's translators as pure calls on recorded wire bodies (tests/fixtures/providers):
an OpenAI chat request becomes the body each provider documents, and each provider's whole answer
becomes an OpenAI `chat.completion` (valid against OpenAI's spec) with its text, reasoning, tool
calls, finish reason and usage."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from turnout.domain.chat import parse_chat_request
from turnout.domain.completions import ChatCompletion, encoder
from turnout.providers.anthropic import translate as anthropic
from turnout.providers.anthropic.wire import message_decoder
from turnout.providers.bedrock import translate as bedrock
from turnout.providers.bedrock.wire import response_decoder as converse_decoder
from turnout.providers.cohere import translate as cohere
from turnout.providers.cohere.wire import response_decoder as cohere_decoder
from turnout.providers.gemini import translate as gemini
from turnout.providers.gemini.wire import response_decoder as gemini_decoder
from turnout.providers.openai_compatible.request import chat_body
from turnout.providers.request_json import request_json

from support.gateway import settings_for
from support.spec import validate_openai
from support.upstream import fixture_bytes

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}
CHAT: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}],
    "max_tokens": 100,
    "temperature": 0.5,
    "stop": ["END"],
}
CALL = {"city": "Paris"}


# --------------------------------------------------------------------------- requests


def test_anthropic_request_is_a_messages_body() -> None:
    body, json_mode = anthropic.request_body(parse_chat_request(CHAT), "claude", stream=True)
    assert json_mode is None
    assert body == {
        "model": "claude",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": CALL}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18C"}]},
        ],
        "system": [{"type": "text", "text": "Be brief."}],
        "stream": True,
        "temperature": 0.5,
        "stop_sequences": ["END"],
        "tools": [{"name": "get_weather", "input_schema": WEATHER}],
    }


def test_bedrock_request_is_a_converse_body() -> None:
    body, json_mode = bedrock.request_body(parse_chat_request(CHAT))
    assert json_mode is None
    assert body == {
        "messages": [
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": CALL}}],
            },
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}]}}],
            },
        ],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]},
        "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": WEATHER}}}]},
    }


def test_gemini_request_is_a_generate_content_body() -> None:
    assert gemini.request_body(parse_chat_request(CHAT)) == {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": CALL}}]},
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}}],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 100, "stopSequences": ["END"]},
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": WEATHER}]}],
    }


def test_cohere_request_is_a_v2_chat_body() -> None:
    body = cohere.request_body(parse_chat_request(CHAT), CHAT, "command-r", stream=False)
    assert body["model"] == "command-r" and "stream" not in body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": CHAT["messages"][2]["tool_calls"]},
        {"role": "tool", "content": "18C", "tool_call_id": "call_1"},
    ]
    assert (body["temperature"], body["max_tokens"], body["stop_sequences"]) == (0.5, 100, ["END"])
    assert body["tools"] == CHAT["tools"]


def test_every_translated_request_is_written_as_json() -> None:
    request = parse_chat_request(CHAT)
    for body in (
        anthropic.request_body(request, "claude", stream=False)[0],
        bedrock.request_body(request)[0],
        gemini.request_body(request),
        cohere.request_body(request, CHAT, "command-r", stream=True),
    ):
        assert json.loads(request_json(body)) == body


def test_anthropic_json_schema_output_becomes_a_forced_tool() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": WEATHER}}
    request = parse_chat_request({**CHAT, "tools": None, "response_format": schema})
    body, json_mode = anthropic.request_body(request, "claude", stream=False)
    assert json_mode is not None
    assert body["tool_choice"] == {"type": "tool", "name": json_mode.tool}
    assert [t["input_schema"] for t in body["tools"]] == [WEATHER]


# --------------------------------------------------------------------------- whole answers


def _written(completion: ChatCompletion) -> dict[str, Any]:
    """A typed completion as the edge writes it for an OpenAI client."""
    out: dict[str, Any] = json.loads(encoder.encode(completion))
    return out


def _anthropic(name: str) -> dict[str, Any]:
    return _written(
        anthropic.completion(
            message_decoder.decode(fixture_bytes(name, "anthropic")), None, requested_model="claude"
        )
    )


def _bedrock(name: str) -> dict[str, Any]:
    return _written(
        bedrock.completion(
            converse_decoder.decode(fixture_bytes(name, "bedrock")),
            None,
            model="claude",
            chat_id="chatcmpl-b",
        )
    )


def _gemini(name: str) -> dict[str, Any]:
    return _written(gemini.completion(gemini_decoder.decode(fixture_bytes(name, "gemini")), model="gemini"))


def _cohere(name: str) -> dict[str, Any]:
    return _written(cohere.completion(cohere_decoder.decode(fixture_bytes(name, "cohere")), model="command"))


ANSWERS: list[tuple[Callable[[str], dict[str, Any]], str, dict[str, Any]]] = [
    (
        _anthropic,
        "message.json",
        {"content": "Hi! My name is Claude.", "finish": "stop", "usage": (3195, 503)},
    ),
    (
        _anthropic,
        "message_tool_use.json",
        {
            "content": "I'll check the weather in San Francisco.",
            "calls": [("get_weather", {"location": "San Francisco, CA", "unit": "celsius"})],
            "finish": "tool_calls",
            "usage": (472, 89),
        },
    ),
    (
        _anthropic,
        "message_thinking.json",
        {
            "content": "A turnout lets a train move from one track to another.",
            "reasoning": "To approach this, let me think about what a railway turnout does: "
            "it lets a train change tracks.",
            "finish": "stop",
        },
    ),
    (
        _bedrock,
        "converse.json",
        {"content": "Hello! I'm Claude, an AI assistant. How can I help you today?", "finish": "stop"},
    ),
    (
        _bedrock,
        "converse_tool_use.json",
        {
            "content": "I'll look up the most popular song on WZPZ.",
            "calls": [("top_song", {"sign": "WZPZ"})],
            "finish": "tool_calls",
            "usage": (375, 68),
        },
    ),
    (
        _bedrock,
        "converse_reasoning.json",
        {
            "content": "27 x 453 = 12,231.",
            "reasoning": "The user asks for 27 * 453. 27 * 453 = 12231.",
            "finish": "stop",
        },
    ),
    (_bedrock, "converse_guardrail.json", {"finish": "content_filter"}),
    (
        _gemini,
        "generate_content.json",
        {
            "content": "AI learns patterns from data.",
            "reasoning": "Let me think.",
            "finish": "stop",
            "usage": (8, 16),
        },
    ),
    (
        _gemini,
        "function_call.json",
        {
            "calls": [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})],
            "finish": "tool_calls",
        },
    ),
    (_gemini, "prompt_blocked.json", {"content": "", "finish": "content_filter"}),
    (_gemini, "safety_blocked.json", {"finish": "content_filter"}),
    (_cohere, "chat.json", {"content": "LLMs are neural networks trained on text.", "finish": "stop"}),
    (
        _cohere,
        "chat_tool_call.json",
        {
            "reasoning": "I will look up the weather in Toronto.",
            "calls": [("get_weather", {"location": "Toronto"})],
            "finish": "tool_calls",
            "usage": (1061, 16),
        },
    ),
]


@pytest.mark.parametrize(
    ("translate", "fixture", "expected"),
    [pytest.param(*a, id=f"{a[0].__name__[1:]}-{a[1]}") for a in ANSWERS],
)
def test_a_recorded_answer_becomes_an_openai_chat_completion(
    translate: Callable[[str], dict[str, Any]], fixture: str, expected: dict[str, Any]
) -> None:
    completion = translate(fixture)
    validate_openai("CreateChatCompletionResponse", completion)
    (choice,) = completion["choices"]
    message = choice["message"]
    assert message["role"] == "assistant"
    if "content" in expected:
        assert message["content"] == expected["content"]
    assert message.get("reasoning_content", "") == expected.get("reasoning", "")
    calls = [
        (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message.get("tool_calls", [])
    ]
    assert calls == expected.get("calls", [])
    assert all(c["id"] and c["type"] == "function" for c in message.get("tool_calls", []))
    assert choice["finish_reason"] == expected["finish"]
    usage = completion["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if "usage" in expected:
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == expected["usage"]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_requests_are_forwarded_with_the_targets_model(tmp_path: Path, stream: bool) -> None:
    doc = {"providers": {"up": {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}}}
    provider = settings_for(doc, tmp_path).providers["up"]
    body = json.loads(chat_body({**CHAT, "stream": stream}, "gpt-4o-2024-08-06", provider, stream=stream))
    expected = {**CHAT, "model": "gpt-4o-2024-08-06", "stream": stream}
    if stream:  # usage is always asked for, so that every stream can be accounted for
        expected["stream_options"] = {"include_usage": True}
    assert body == expected
