"""OpenAI's Responses API inbound: the official `openai` SDK against /v1/responses, routed to an
OpenAI-format upstream (turnout's fake provider, and a recording upstream) and to an
Anthropic-format one; answers and stream events validated against OpenAI's spec."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.spec import validate_openai
from support.upstream import Upstream, fixture_bytes, sse_events

QUESTION = "What does a turnout do?"
ANSWER = f"You said: {QUESTION}"
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather at a place",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)


def config(upstream: Upstream, data_dir: Path | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "routing": {"retries": {"attempts": 1}},
        "providers": {
            "fake": {"type": "fake", "fake": {"chunks": 6}},
            "up": {
                "type": "openai",
                "base_url": upstream.base_url,
                "api_key": "env:UPSTREAM_KEY",
                "responses_api": False,  # translated to chat (test_agent_clients forwards it whole)
            },
            "claude": {"type": "anthropic", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"},
        },
        "models": {
            "chat": {"provider": "fake", "model": "m"},
            "down": {"provider": "fake", "model": "m?fail=503"},
            "cut": {"provider": "fake", "model": "m?fail=truncate&after=2"},
            "recorded": {"provider": "up", "model": "gpt-4o"},
            "claude": {"provider": "claude", "model": "claude-sonnet-4-5-20250929"},
        },
    }
    if data_dir is not None:
        doc["storage"] = {"data_dir": str(data_dir)}
    return doc


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway(config(upstream), {"UPSTREAM_KEY": UPSTREAM_KEY})


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


@pytest.fixture
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with sdk(gateway) as c:
        yield c


def raw_events(gateway: Gateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream's events as sent, each checked against the spec (and its SSE event name)."""
    with httpx.Client(timeout=20) as http:
        response = http.post(
            gateway.base_url + "/responses", headers={"authorization": f"Bearer {MASTER_KEY}"}, json=body
        )
    assert response.status_code == 200
    events = []
    for block in response.text.strip().split("\n\n"):
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        validate_openai("ResponseStreamEvent", event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


# ----------------------------------------------------------------------------- answers


def test_a_response_from_an_openai_format_provider(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="chat", input=QUESTION, instructions="Be brief.")
    body = json.loads(raw.http_response.content)
    validate_openai("Response", body)
    response = raw.parse()
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.model == "chat"
    assert response.output_text == ANSWER
    assert response.instructions == "Be brief."
    assert [item.type for item in response.output] == ["message"]
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert raw.headers["x-turnout-deployment"] == "fake/m"


def test_what_the_upstream_is_sent(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_json(fixture_bytes("chat_completion.json"))
    client.responses.create(
        model="recorded",
        instructions="Answer in French.",
        input=[
            {"role": "developer", "content": "Use metric units."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is in this picture?"},
                    {"type": "input_image", "image_url": PIXEL, "detail": "low"},
                ],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18 C"},
        ],
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        text={
            "format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}
        },
        reasoning={"effort": "low"},
        max_output_tokens=300,
        temperature=0.2,
        parallel_tool_calls=False,
        store=False,
    )
    sent = upstream.requests[-1].json
    assert sent["model"] == "gpt-4o"
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "system", "content": "Use metric units."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": PIXEL, "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    ]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather at a place",
                "parameters": WEATHER["parameters"],
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    }
    assert sent["reasoning_effort"] == "low"
    assert sent["max_completion_tokens"] == 300
    assert sent["temperature"] == 0.2 and sent["parallel_tool_calls"] is False
    assert "store" not in sent and "stream" not in sent


def test_a_truncated_answer_is_incomplete(upstream: Upstream, client: openai.OpenAI) -> None:
    completion = json.loads(fixture_bytes("chat_completion.json"))
    completion["choices"][0]["finish_reason"] = "length"
    upstream.reply_json(json.dumps(completion).encode())
    raw = client.responses.with_raw_response.create(model="recorded", input=QUESTION, max_output_tokens=5)
    validate_openai("Response", json.loads(raw.http_response.content))
    response = raw.parse()
    assert response.status == "incomplete"
    assert (
        response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    )


# ----------------------------------------------------------------------------- streams


def test_a_streamed_response_through_the_sdk_helper(client: openai.OpenAI) -> None:
    with client.responses.stream(model="chat", input=QUESTION) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == ANSWER and len(deltas) > 1
    assert final.output_text == ANSWER and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0


def test_the_stream_follows_the_documented_event_order(gateway: Gateway) -> None:
    events = raw_events(gateway, {"model": "chat", "input": QUESTION, "stream": True})
    kinds = [e["type"] for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[-4]["text"] == ANSWER
    completed = events[-1]["response"]
    assert completed["output"][0]["content"][0]["text"] == ANSWER
    assert completed["usage"]["output_tokens"] > 0


def test_a_failure_after_the_first_byte_ends_with_response_failed(gateway: Gateway) -> None:
    events = raw_events(gateway, {"model": "cut", "input": QUESTION, "stream": True})
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"


# ----------------------------------------------------------------------------- tools


def test_tools_round_trip(client: openai.OpenAI) -> None:
    first = client.responses.create(model="chat", input=QUESTION, tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "example"}
    follow_up = client.responses.create(
        model="chat",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": QUESTION},
            calls[0].model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 C"},
        ],
    )
    assert follow_up.output_text == "The tool returned: 18 C"


def test_a_streamed_tool_call_is_assembled_by_the_sdk(client: openai.OpenAI, gateway: Gateway) -> None:
    with client.responses.stream(model="chat", input=QUESTION, tools=[WEATHER]) as stream:
        final = stream.get_final_response()
    call = next(item for item in final.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "example"}
    events = raw_events(gateway, {"model": "chat", "input": QUESTION, "tools": [WEATHER], "stream": True})
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["name"] == "get_weather" and json.loads(done["arguments"]) == {"city": "example"}


# ----------------------------------------------------------------------------- Anthropic upstream


def test_claude_answers_a_responses_request(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_json(fixture_bytes("message.json", "anthropic"))
    raw = client.responses.with_raw_response.create(model="claude", input=QUESTION, instructions="Be brief.")
    validate_openai("Response", json.loads(raw.http_response.content))
    response = raw.parse()
    assert response.output_text == "Hi! My name is Claude."
    sent = upstream.requests[-1].json
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]


def test_claude_streams_a_responses_request(upstream: Upstream, gateway: Gateway) -> None:
    upstream.reply_sse(sse_events("stream_text.sse", "anthropic"))
    events = raw_events(gateway, {"model": "claude", "input": QUESTION, "stream": True})
    assert events[-1]["type"] == "response.completed"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text and events[-1]["response"]["output"][0]["content"][0]["text"] == text


def test_claude_calls_a_tool_for_a_responses_request(upstream: Upstream, client: openai.OpenAI) -> None:
    upstream.reply_json(fixture_bytes("message_tool_use.json", "anthropic"))
    response = client.responses.create(model="claude", input=QUESTION, tools=[WEATHER])
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].call_id.startswith("toolu_")
    sent = upstream.requests[-1].json
    assert sent["tools"][0]["name"] == "get_weather"


# ----------------------------------------------------------------------------- stored responses


def test_a_stored_response_can_be_retrieved_and_continued(upstream: Upstream, client: openai.OpenAI) -> None:
    first = client.responses.create(model="chat", input=QUESTION)
    again = client.responses.retrieve(first.id)
    assert again.id == first.id and again.output_text == ANSWER
    items = client.responses.input_items.list(first.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]  # type: ignore[union-attr]

    upstream.reply_json(fixture_bytes("chat_completion.json"))
    second = client.responses.create(
        model="recorded", previous_response_id=first.id, input="And then?", instructions="Be brief."
    )
    assert second.previous_response_id == first.id
    assert upstream.requests[-1].json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "And then?"},
    ]

    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    response = client.responses.create(model="chat", input=QUESTION, store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(response.id)
    assert response.id in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="chat", input="more", previous_response_id=response.id)
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_a_streamed_response_is_stored_too(client: openai.OpenAI) -> None:
    with client.responses.stream(model="chat", input=QUESTION, tools=[WEATHER]) as stream:
        final = stream.get_final_response()
    stored = client.responses.retrieve(final.id)
    assert [item.type for item in stored.output] == ["function_call"]


def test_stored_responses_survive_a_restart_and_are_shared(
    upstream: Upstream, start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    first = start_gateway(config(upstream, shared), {"UPSTREAM_KEY": UPSTREAM_KEY})
    with sdk(first) as client:
        response = client.responses.create(model="chat", input=QUESTION)
    first.stop()  # graceful: what is pending is written
    second = start_gateway(config(upstream, shared), {"UPSTREAM_KEY": UPSTREAM_KEY})
    with sdk(second) as client:
        assert client.responses.retrieve(response.id).output_text == ANSWER


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[0].type"),
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        ({"text": {"format": {"type": "yaml"}}}, "text.format"),
    ],
)
def test_what_turnout_cannot_carry_is_refused_by_name(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    body: dict[str, Any] = {"model": "chat", "input": QUESTION, **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/responses", body=body, cast_to=httpx.Response)
    assert caught.value.body["param"] == param  # type: ignore[index]


def test_unknown_fields_and_missing_input_are_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/responses", body={"model": "chat", "input": "x", "colour": 1}, cast_to=httpx.Response)
    assert caught.value.body["param"] == "colour"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.post("/responses", body={"model": "chat", "input": []}, cast_to=httpx.Response)


def test_an_upstream_outage_is_an_openai_format_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="down", input=QUESTION)
    assert caught.value.status_code in (502, 503)
    assert caught.value.body["type"]  # type: ignore[index]


def test_unknown_response_ids_and_methods(client: openai.OpenAI, gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_nope")
    with pytest.raises(openai.NotFoundError):
        client.responses.delete("resp_nope")
    with httpx.Client(timeout=20) as http:
        put = http.put(
            gateway.base_url + "/responses/resp_x", headers={"authorization": f"Bearer {MASTER_KEY}"}
        )
        anonymous = http.get(gateway.base_url + "/responses/resp_x")
    assert put.status_code == 405
    assert anonymous.status_code == 401
