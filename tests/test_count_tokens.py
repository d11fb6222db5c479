"""`POST /v1/messages/count_tokens` through the official `anthropic` SDK: counted by Anthropic itself
for a model with an Anthropic-format deployment (the request passed on whole, beta headers and
endpoint included), estimated by turnout for any other model, errors in Anthropic's format."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest

from support.agent_upstream import COUNTED_TOKENS, AgentUpstream
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.spec import validate_anthropic

TOOL: Any = {
    "name": "get_weather",
    "description": "The weather at a place",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
LONG = "A turnout moves a train onto another track without stopping it. " * 40


@pytest.fixture
def agent() -> Iterator[AgentUpstream]:
    server = AgentUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def gateway(agent: AgentUpstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    doc = {
        "providers": {
            "claude": {"type": "anthropic", "base_url": agent.base_url, "api_key": "env:UPSTREAM_KEY"},
            "compatible": {
                "type": "openai_compatible",
                "base_url": agent.base_url,
                "api_key": "env:UPSTREAM_KEY",
            },
        },
        "models": {
            "claude": {"provider": "claude", "model": "claude-test"},
            "gpt": {"provider": "compatible", "model": "test-model"},
        },
    }
    return start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})


@pytest.fixture
def client(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


def test_an_anthropic_model_is_counted_by_anthropic(
    client: anthropic.Anthropic, agent: AgentUpstream
) -> None:
    raw = client.beta.messages.with_raw_response.count_tokens(
        model="claude",
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Hi"}],
        tools=[TOOL],
        thinking={"type": "enabled", "budget_tokens": 2048},
        betas=["context-management-2025-06-27"],
        extra_query={"beta": "true"},  # as Claude Code calls it
    )
    assert raw.parse().input_tokens == COUNTED_TOKENS
    assert raw.headers["x-turnout-token-count"] == "exact"
    sent = agent.requests[-1]
    assert sent.path == "/v1/messages/count_tokens" and sent.query == {"beta": "true"}
    assert "context-management-2025-06-27" in sent.headers["anthropic-beta"].split(",")
    assert sent.headers["x-api-key"] == UPSTREAM_KEY  # turnout's credentials, never the client's
    assert sent.json["model"] == "claude-test" and sent.json["thinking"]["budget_tokens"] == 2048
    assert sent.json["tools"] == [TOOL]


def test_other_models_are_estimated_by_turnout(client: anthropic.Anthropic, agent: AgentUpstream) -> None:
    short = client.messages.with_raw_response.count_tokens(
        model="gpt", messages=[{"role": "user", "content": "Hi"}]
    )
    assert short.headers["x-turnout-token-count"] == "estimated"
    few = short.parse().input_tokens
    assert 0 < few < 20
    long = client.messages.count_tokens(
        model="gpt", system=LONG, messages=[{"role": "user", "content": "Hi"}]
    )
    assert long.input_tokens > few + 400  # the system prompt's ~480 tokens counted
    tooled = client.messages.count_tokens(
        model="gpt", messages=[{"role": "user", "content": "Hi"}], tools=[TOOL]
    )
    assert tooled.input_tokens > few + 10  # and the tools' definitions
    assert agent.requests == []  # no provider asked


def test_count_tokens_errors_are_anthropics(client: anthropic.Anthropic, gateway: Gateway) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "Hi"}])
    assert isinstance(missing.value.body, dict) and missing.value.body["error"]["type"] == "not_found_error"
    with (
        anthropic.Anthropic(base_url=gateway.root_url, api_key="sk-wrong", max_retries=0) as wrong,
        pytest.raises(anthropic.AuthenticationError),
    ):
        wrong.messages.count_tokens(model="gpt", messages=[{"role": "user", "content": "Hi"}])
    with httpx.Client(timeout=10) as http:
        response = http.post(
            gateway.root_url + "/v1/messages/count_tokens",
            headers={"x-api-key": MASTER_KEY},
            json={"model": "gpt", "messages": [{"role": "robot", "content": "Hi"}]},
        )
    assert response.status_code == 400
    validate_anthropic("ErrorResponse", response.json())
    assert "role" in response.json()["error"]["message"]


def test_an_anthropic_provider_that_fails_leaves_turnouts_estimate(
    client: anthropic.Anthropic, agent: AgentUpstream
) -> None:
    agent.reply_json({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, status=529)
    raw = client.messages.with_raw_response.count_tokens(
        model="claude", messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.headers["x-turnout-token-count"] == "estimated"
    assert 0 < raw.parse().input_tokens < 20


def _key(gateway: Gateway, limits: dict[str, int]) -> str:
    made = httpx.post(
        gateway.root_url + "/admin/keys",
        json={"name": "counter", "limits": limits},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert made.status_code == 200, made.text
    return str(made.json()["key"])


def test_counting_counts_against_the_keys_rpm_in_anthropics_shape(gateway: Gateway) -> None:
    key = _key(gateway, {"rpm": 1})
    with anthropic.Anthropic(base_url=gateway.root_url, api_key=key, max_retries=0, timeout=20) as client:
        first = client.messages.with_raw_response.count_tokens(
            model="gpt", messages=[{"role": "user", "content": "hi"}]
        )
        assert first.parse().input_tokens > 0
        assert first.headers["anthropic-ratelimit-requests-limit"] == "1"
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.count_tokens(model="gpt", messages=[{"role": "user", "content": "hi"}])
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error" and "key rpm" in body["error"]["message"]
    assert int(refused.value.response.headers["retry-after"]) >= 1


def test_counting_reserves_no_tokens(gateway: Gateway) -> None:
    """A prompt far over the key's tokens per minute is counted, again and again: counting uses
    none."""
    key = _key(gateway, {"tpm": 10})
    with anthropic.Anthropic(base_url=gateway.root_url, api_key=key, max_retries=0, timeout=20) as client:
        for _ in range(3):
            counted = client.messages.count_tokens(model="gpt", messages=[{"role": "user", "content": LONG}])
            assert counted.input_tokens > 10
        with pytest.raises(anthropic.RateLimitError):  # a message of that prompt is over the limit
            client.messages.create(model="gpt", max_tokens=5, messages=[{"role": "user", "content": LONG}])
