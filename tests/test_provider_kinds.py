"""Deployments of OpenAI's wire format (Azure, Mistral, Ollama, Groq, DeepSeek, OpenAI), each pointed
at the test upstream: the URL, authentication and body each one documents, and its gaps refused up
front (naming the parameter) or dropped where that loses nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from support.gateway import MASTER_KEY, Gateway
from support.spec import validate_openai
from support.upstream import Recorded, Upstream, fixture_json

USER = [{"role": "user", "content": "Hello!"}]
PROVIDER_KEY = "sk-provider-secret-0123456789abcdef"
ENV = {"PROVIDER_KEY": PROVIDER_KEY, "TEAM_TOKEN": "tok-team-secret-42"}


class Deployment:
    """A gateway with one provider `p` of some kind at the test upstream, aliased as `m` (chat) and
    `e` (embeddings)."""

    def __init__(self, gateway: Gateway, upstream: Upstream) -> None:
        self.gateway = gateway
        self.upstream = upstream
        self.client = openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)

    def chat(self, **kwargs: Any) -> Any:
        return self.client.chat.completions.create(model="m", messages=USER, **kwargs)

    @property
    def sent(self) -> Recorded:
        return self.upstream.requests[-1]


@pytest.fixture
def deploy(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Iterator[Callable[..., Deployment]]:
    made: list[Deployment] = []

    def make(kind: str, *, base_url: str | None = None, **provider: Any) -> Deployment:
        config: dict[str, Any] = {"type": kind, "base_url": base_url or upstream.base_url, **provider}
        doc = {
            "providers": {"p": config},
            "models": {
                "m": {"provider": "p", "model": "chat-deployment"},
                "e": {"provider": "p", "model": "embed-deployment"},
            },
        }
        deployment = Deployment(start_gateway(doc, ENV), upstream)
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        deployment.client.close()


def _refused(deployment: Deployment, param: str, **kwargs: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        deployment.chat(**kwargs)
    error = caught.value
    assert error.status_code == 400
    assert error.param == param
    assert f"'{param}'" in error.message or param in error.message
    validate_openai("ErrorResponse", error.response.json())
    assert deployment.upstream.requests == []  # refused before any upstream call
    return error


# --------------------------------------------------------------------------- Azure


def test_azure_addresses_the_deployment_with_an_api_key(
    deploy: Callable[..., Deployment], upstream: Upstream
) -> None:
    azure = deploy("azure", base_url=upstream.root_url, api_key="env:PROVIDER_KEY")
    raw = azure.client.chat.completions.with_raw_response.create(model="m", messages=USER)
    assert json.loads(raw.content) == fixture_json("chat_completion.json")

    sent = azure.sent
    assert (sent.method, sent.path) == ("POST", "/openai/deployments/chat-deployment/chat/completions")
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == PROVIDER_KEY
    assert "authorization" not in sent.headers
    assert sent.json["messages"] == USER


def test_azure_streams_from_the_deployment(deploy: Callable[..., Deployment], upstream: Upstream) -> None:
    azure = deploy("azure", base_url=upstream.root_url, api_key="env:PROVIDER_KEY")
    chunks = list(azure.chat(stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello! How can I assist you today?"
    )
    assert azure.sent.path == "/openai/deployments/chat-deployment/chat/completions"
    assert azure.sent.query == {"api-version": "2024-10-21"}
    assert azure.sent.json["stream"] is True


def test_azure_embeddings_address_the_deployment(
    deploy: Callable[..., Deployment], upstream: Upstream
) -> None:
    azure = deploy("azure", base_url=upstream.root_url, api_key="env:PROVIDER_KEY")
    result = azure.client.embeddings.create(model="e", input="hello", encoding_format="float")
    assert result.data[0].embedding == fixture_json("embeddings.json")["data"][0]["embedding"]
    sent = azure.sent
    assert (sent.method, sent.path) == ("POST", "/openai/deployments/embed-deployment/embeddings")
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == PROVIDER_KEY
    assert "authorization" not in sent.headers


def test_azure_uses_the_configured_api_version(deploy: Callable[..., Deployment], upstream: Upstream) -> None:
    azure = deploy(
        "azure", base_url=upstream.root_url, api_key="env:PROVIDER_KEY", api_version="2025-04-01-preview"
    )
    azure.chat()
    assert azure.sent.path == "/openai/deployments/chat-deployment/chat/completions"
    assert azure.sent.query == {"api-version": "2025-04-01-preview"}


def test_azure_v1_api_names_the_model_in_the_body(
    deploy: Callable[..., Deployment], upstream: Upstream
) -> None:
    azure = deploy("azure", base_url=upstream.root_url, api_key="env:PROVIDER_KEY", api_version="v1")
    completion = azure.chat()
    assert completion.choices[0].message.content
    sent = azure.sent
    assert (sent.method, sent.path) == ("POST", "/openai/v1/chat/completions")
    assert "api-version" not in sent.query
    assert sent.json["model"] == "chat-deployment"
    assert sent.headers["api-key"] == PROVIDER_KEY


def test_azure_v1_api_embeddings(deploy: Callable[..., Deployment], upstream: Upstream) -> None:
    azure = deploy("azure", base_url=upstream.root_url, api_key="env:PROVIDER_KEY", api_version="v1")
    azure.client.embeddings.create(model="e", input="hello", encoding_format="float")
    assert azure.sent.path == "/openai/v1/embeddings"
    assert "api-version" not in azure.sent.query
    assert azure.sent.json["model"] == "embed-deployment"


# --------------------------------------------------------------------------- Mistral


def test_mistral_renames_seed_and_max_completion_tokens(deploy: Callable[..., Deployment]) -> None:
    mistral = deploy("mistral", api_key="env:PROVIDER_KEY")
    mistral.chat(seed=7, max_completion_tokens=100, temperature=0.2)
    sent = mistral.sent.json
    assert sent["random_seed"] == 7
    assert sent["max_tokens"] == 100
    assert "seed" not in sent and "max_completion_tokens" not in sent
    assert sent["temperature"] == 0.2
    assert mistral.sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"


def test_mistral_refuses_logprobs_by_default(deploy: Callable[..., Deployment]) -> None:
    mistral = deploy("mistral", api_key="env:PROVIDER_KEY")
    error = _refused(mistral, "logprobs", logprobs=True)
    assert "unsupported_params: drop" in error.message  # the message says how to let it through
    _refused(mistral, "top_logprobs", top_logprobs=2)
    _refused(mistral, "logit_bias", logit_bias={"50256": -100})


def test_mistral_drops_harmless_values(deploy: Callable[..., Deployment]) -> None:
    mistral = deploy("mistral", api_key="env:PROVIDER_KEY")
    mistral.chat(logprobs=False, store=False, user="user-1234", safety_identifier="hash-42")
    sent = mistral.sent.json
    for name in ("logprobs", "store", "user", "safety_identifier"):
        assert name not in sent, name


def test_mistral_drops_unsupported_params_when_configured(deploy: Callable[..., Deployment]) -> None:
    mistral = deploy("mistral", api_key="env:PROVIDER_KEY", unsupported_params="drop")
    completion = mistral.chat(logprobs=True, top_logprobs=2, user="user-1234", seed=3)
    assert completion.choices[0].message.content
    sent = mistral.sent.json
    for name in ("logprobs", "top_logprobs", "user", "seed"):
        assert name not in sent, name
    assert sent["random_seed"] == 3


def test_mistral_streams_without_stream_options(deploy: Callable[..., Deployment]) -> None:
    mistral = deploy("mistral", api_key="env:PROVIDER_KEY")
    chunks = list(mistral.chat(stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    sent = mistral.sent.json
    assert sent["stream"] is True
    assert "stream_options" not in sent

    list(mistral.chat(stream=True))
    assert "stream_options" not in mistral.sent.json


def test_mistral_embeddings_name_dimensions_their_own_way(deploy: Callable[..., Deployment]) -> None:
    mistral = deploy("mistral", api_key="env:PROVIDER_KEY")
    mistral.client.embeddings.create(model="e", input="hello", dimensions=256, encoding_format="float")
    sent = mistral.sent.json
    assert sent["output_dimension"] == 256
    assert "dimensions" not in sent


# --------------------------------------------------------------------------- Ollama, Groq, DeepSeek


def test_ollama_renames_max_completion_tokens_and_sends_no_key(deploy: Callable[..., Deployment]) -> None:
    ollama = deploy("ollama")
    ollama.chat(max_completion_tokens=64, user="user-1", tool_choice="auto", tools=[_TOOL])
    sent = ollama.sent
    assert sent.path == "/v1/chat/completions"
    assert sent.json["max_tokens"] == 64
    assert "max_completion_tokens" not in sent.json
    assert "user" not in sent.json
    assert "tool_choice" not in sent.json
    assert "authorization" not in sent.headers
    assert "api-key" not in sent.headers


def test_ollama_refuses_several_choices(deploy: Callable[..., Deployment]) -> None:
    _refused(deploy("ollama"), "n", n=2)


def test_groq_refuses_n_above_one_and_drops_n_one(deploy: Callable[..., Deployment]) -> None:
    groq = deploy("groq", api_key="env:PROVIDER_KEY")
    _refused(groq, "n", n=2)
    groq.chat(n=1)
    assert "n" not in groq.sent.json
    assert groq.sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"


def test_deepseek_refuses_json_schema_but_takes_json_object(deploy: Callable[..., Deployment]) -> None:
    deepseek = deploy("deepseek", api_key="env:PROVIDER_KEY")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    _refused(
        deepseek,
        "response_format",
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    deepseek.chat(response_format={"type": "json_object"}, max_completion_tokens=10)
    assert deepseek.sent.json["response_format"] == {"type": "json_object"}
    assert deepseek.sent.json["max_tokens"] == 10


# --------------------------------------------------------------------------- OpenAI, custom headers

_TOOL = {
    "type": "function",
    "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
}


def test_openai_kind_sends_a_bearer_key_and_everything_else(deploy: Callable[..., Deployment]) -> None:
    openai_kind = deploy("openai", api_key="env:PROVIDER_KEY")
    openai_kind.chat(n=2, logprobs=True, top_logprobs=2, seed=1, user="u", max_completion_tokens=5)
    sent = openai_kind.sent
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert "api-key" not in sent.headers
    assert MASTER_KEY not in json.dumps(sent.headers)
    for name, value in [
        ("model", "chat-deployment"),
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 2),
        ("seed", 1),
        ("user", "u"),
        ("max_completion_tokens", 5),
    ]:
        assert sent.json[name] == value, name


@pytest.mark.parametrize("kind", ["openai", "azure", "ollama"])
def test_custom_headers_reach_the_upstream(
    deploy: Callable[..., Deployment], upstream: Upstream, kind: str
) -> None:
    deployment = deploy(
        kind,
        base_url=upstream.root_url if kind == "azure" else None,
        api_key=None if kind == "ollama" else "env:PROVIDER_KEY",
        headers={"X-Team": "search", "OpenAI-Organization": "org-123", "X-Team-Token": "env:TEAM_TOKEN"},
    )
    deployment.chat()
    list(deployment.chat(stream=True))
    assert len(upstream.requests) == 2
    for sent in upstream.requests:
        assert sent.headers["x-team"] == "search"
        assert sent.headers["openai-organization"] == "org-123"
        assert sent.headers["x-team-token"] == "tok-team-secret-42"  # resolved, not "env:TEAM_TOKEN"
