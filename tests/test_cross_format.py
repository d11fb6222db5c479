"""Cross-format round trips: for every pair (inbound API, upstream wire format) the same
tool-calling conversation — ask, get two parallel tool calls, send both results, get the final
text — gives the same tool calls and the same final text, plain and streamed. Clients are the
official SDKs (`openai` for Chat Completions and Responses, `anthropic` for Messages); upstreams
are one deterministic model speaking each provider's format (support/wire_models.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.wire_models import WireModels

QUESTION = "What is the weather in Paris and Oslo?"
EXPECTED_CALLS = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]
FINAL = "The weather: Paris: 18 C; Oslo: 18 C"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
UPSTREAMS: dict[str, Callable[[str], dict[str, Any]]] = {
    # translated like the others (/v1/responses forwarded whole: tests/test_responses_native.py)
    "openai": lambda root: {
        "type": "openai",
        "base_url": f"{root}/v1",
        "api_key": "env:UPSTREAM_KEY",
        "responses_api": False,
    },
    "anthropic": lambda root: {"type": "anthropic", "base_url": f"{root}/v1", "api_key": "env:UPSTREAM_KEY"},
    "gemini": lambda root: {"type": "gemini", "base_url": f"{root}/v1beta", "api_key": "env:UPSTREAM_KEY"},
    "cohere": lambda root: {"type": "cohere", "base_url": f"{root}/v2", "api_key": "env:UPSTREAM_KEY"},
    "bedrock": lambda root: {
        "type": "bedrock",
        "base_url": root,
        "aws": {
            "region": "us-east-1",
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "secret_access_key": "env:AWS_SECRET",
        },
    },
}
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY, "AWS_SECRET": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


def result_for(city: str) -> str:
    return f"{city}: 18 C"


@pytest.fixture(scope="module")
def models() -> Iterator[WireModels]:
    server = WireModels().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(models: WireModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    from support.gateway import settings_for  # one gateway, one alias per upstream format

    doc = {
        "routing": {"retries": {"attempts": 1}},
        "providers": {name: provider(models.root_url) for name, provider in UPSTREAMS.items()},
        "models": {name: {"provider": name, "model": "m-1"} for name in UPSTREAMS},
    }
    gateway = Gateway(settings_for(doc, tmp_path_factory.mktemp("data"), ENV)).start()
    yield gateway
    gateway.stop()


# ----------------------------------------------------------------------------- one conversation per API


def via_chat(gateway: Gateway, model: str, stream: bool) -> tuple[list[Any], str]:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as client:

        def ask(messages: list[Any]) -> tuple[str, list[dict[str, Any]]]:
            if not stream:
                message = (
                    client.chat.completions.create(model=model, messages=messages, tools=[tool])
                    .choices[0]
                    .message
                )
                calls = [
                    {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                    for c in message.tool_calls or ()
                ]
                return message.content or "", calls
            text, calls_by_index = "", {}
            for chunk in client.chat.completions.create(
                model=model, messages=messages, tools=[tool], stream=True
            ):
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    for c in choice.delta.tool_calls or ():
                        entry = calls_by_index.setdefault(c.index, {"id": "", "name": "", "arguments": ""})
                        entry["id"] += c.id or ""
                        entry["name"] += (c.function.name if c.function else None) or ""
                        entry["arguments"] += (c.function.arguments if c.function else None) or ""
            return text, [calls_by_index[i] for i in sorted(calls_by_index)]

        history: list[Any] = [{"role": "user", "content": QUESTION}]
        _, calls = ask(history)
        history.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls
                ],
            }
        )
        for c in calls:
            city = json.loads(c["arguments"])["city"]
            history.append({"role": "tool", "tool_call_id": c["id"], "content": result_for(city)})
        final, _ = ask(history)
    return [(c["name"], json.loads(c["arguments"])) for c in calls], final


def via_messages(gateway: Gateway, model: str, stream: bool) -> tuple[list[Any], str]:
    tool: Any = {"name": "get_weather", "input_schema": SCHEMA}
    with anthropic.Anthropic(
        base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0, timeout=20
    ) as client:

        def ask(messages: list[Any]) -> Any:
            if not stream:
                return client.messages.create(model=model, max_tokens=500, messages=messages, tools=[tool])
            with client.messages.stream(model=model, max_tokens=500, messages=messages, tools=[tool]) as s:
                return s.get_final_message()

        history: list[Any] = [{"role": "user", "content": QUESTION}]
        first = ask(history)
        uses = [b for b in first.content if b.type == "tool_use"]
        history.append(
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]}
        )
        history.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": b.id, "content": result_for(b.input["city"])}
                    for b in uses
                ],
            }
        )
        second = ask(history)
    final = "".join(b.text for b in second.content if b.type == "text")
    return [(b.name, b.input) for b in uses], final


def via_responses(gateway: Gateway, model: str, stream: bool) -> tuple[list[Any], str]:
    tool: Any = {"type": "function", "name": "get_weather", "parameters": SCHEMA}
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as client:

        def ask(items: list[Any]) -> Any:
            if not stream:
                return client.responses.create(model=model, input=items, tools=[tool], store=False)
            with client.responses.stream(model=model, input=items, tools=[tool], store=False) as s:
                return s.get_final_response()

        history: list[Any] = [{"role": "user", "content": QUESTION}]
        first = ask(history)
        calls = [item for item in first.output if item.type == "function_call"]
        history += [c.model_dump(exclude_none=True) for c in calls]
        history += [
            {
                "type": "function_call_output",
                "call_id": c.call_id,
                "output": result_for(json.loads(c.arguments)["city"]),
            }
            for c in calls
        ]
        second = ask(history)
    return [(c.name, json.loads(c.arguments)) for c in calls], second.output_text


INBOUND = {"chat": via_chat, "messages": via_messages, "responses": via_responses}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("upstream", list(UPSTREAMS))
@pytest.mark.parametrize("inbound", list(INBOUND))
def test_a_tool_conversation_ends_the_same_everywhere(
    gateway: Gateway, inbound: str, upstream: str, stream: bool
) -> None:
    calls, final = INBOUND[inbound](gateway, upstream, stream)
    assert calls == EXPECTED_CALLS
    assert final == FINAL
