"""`/v1/responses` to a provider that has the Responses API itself (`type: openai`, or
`responses_api: true`): the request passed on whole, its answer and events passed back as they
came, through the official `openai` SDK; stored so that it can be retrieved and continued."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from turnout.config.loader import ConfigError

from support.agent_upstream import GREETING, AgentUpstream, answer_after
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def agent() -> Iterator[AgentUpstream]:
    server = AgentUpstream().start()
    yield server
    server.stop()


def doc(agent: AgentUpstream, **provider: Any) -> dict[str, Any]:
    return {
        "providers": {
            "openai": {"type": "openai", "base_url": agent.base_url, "api_key": "env:UPSTREAM_KEY"},
            "vllm": {
                "type": "vllm",
                "base_url": agent.base_url,
                "api_key": "env:UPSTREAM_KEY",
                **provider,
            },
        },
        "models": {
            "native": {"provider": "openai", "model": "test-model"},
            "self-hosted": {"provider": "vllm", "model": "test-model"},
        },
    }


@pytest.fixture
def gateway(agent: AgentUpstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway(doc(agent, responses_api=True), {"UPSTREAM_KEY": UPSTREAM_KEY})


@pytest.fixture
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


def test_a_response_is_passed_on_whole(client: openai.OpenAI, agent: AgentUpstream) -> None:
    agent.agent("get_weather", {"city": "Oslo"})
    raw = client.responses.with_raw_response.create(
        model="native", input="Hi", tools=[WEATHER], extra_body={"client_metadata": {"run": "7"}}
    )
    response = raw.parse()
    assert response.id == "resp_fake_1"  # the provider's own answer
    call = response.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert raw.headers["x-turnout-deployment"] == "openai/test-model"
    sent = agent.posted("/responses")[-1]
    assert sent == {
        "model": "test-model",
        "input": "Hi",
        "tools": [WEATHER],
        "client_metadata": {"run": "7"},
    }
    assert agent.posted("/chat/completions") == []


def test_a_streamed_response_is_passed_on_event_for_event(
    client: openai.OpenAI, agent: AgentUpstream
) -> None:
    with client.responses.stream(model="self-hosted", input="Hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == GREETING and final.usage is not None and final.usage.output_tokens == 5
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert agent.posted("/responses")[-1]["stream"] is True


def test_a_forwarded_response_is_stored_and_continued(client: openai.OpenAI, agent: AgentUpstream) -> None:
    agent.agent("get_weather", {"city": "Oslo"})
    first = client.responses.create(model="native", input="Weather in Oslo?", tools=[WEATHER])
    assert client.responses.retrieve(first.id).output[0].type == "function_call"
    call = first.output[0]
    assert call.type == "function_call"
    follow_up = client.responses.create(
        model="native",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 C"}],
        tools=[WEATHER],
    )
    assert follow_up.output_text == answer_after("18 C")
    # turnout holds that conversation, so it continues it itself, through chat
    continued = agent.posted("/chat/completions")[-1]["messages"]
    assert [m["role"] for m in continued] == ["user", "assistant", "tool"]


def test_responses_api_is_refused_where_it_cannot_work(
    agent: AgentUpstream, start_gateway: Callable[..., Gateway]
) -> None:
    bad = doc(agent)
    bad["providers"]["claude"] = {
        "type": "anthropic",
        "base_url": agent.base_url,
        "api_key": "env:UPSTREAM_KEY",
        "responses_api": True,
    }
    with pytest.raises(ConfigError) as refused:
        start_gateway(bad, {"UPSTREAM_KEY": UPSTREAM_KEY})
    assert "providers.claude.responses_api" in str(refused.value)
