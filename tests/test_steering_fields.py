"""Fields that would steer the upstream (its address, credentials or headers: the SSRF and
key-exfiltration class of bugs in other gateways) are refused with a 400 naming them, on every
inbound API, before anything reaches an upstream; vendor fields meant for the provider still pass."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest

from turnout.domain.steering_fields import STEERING_FIELDS

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.upstream import Upstream

USER: Any = [{"role": "user", "content": "hi"}]
SAMPLE = ["api_base", "base_url", "api_key", "azure_endpoint", "aws_secret_access_key", "vertex_credentials"]


@pytest.fixture
def gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    doc = openai_doc(upstream)
    doc["providers"]["fake"] = {"type": "fake"}
    doc["models"]["fake"] = {"provider": "fake", "model": "m"}
    return start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})


@pytest.fixture
def claude(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


def _refused(call: Callable[[], Any], field: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    assert caught.value.param == field
    assert caught.value.code == "forbidden_parameter"
    assert f"'{field}'" in caught.value.message


@pytest.mark.parametrize("field", SAMPLE)
def test_steering_fields_are_refused_on_every_openai_api(
    client: openai.OpenAI, upstream: Upstream, field: str
) -> None:
    extra = {field: "http://169.254.169.254/latest/meta-data/"}
    _refused(lambda: client.chat.completions.create(model="gpt-4o", messages=USER, extra_body=extra), field)
    _refused(
        lambda: client.chat.completions.create(model="gpt-4o", messages=USER, stream=True, extra_body=extra),
        field,
    )
    _refused(lambda: client.embeddings.create(model="embed", input="hi", extra_body=extra), field)
    _refused(lambda: client.responses.create(model="gpt-4o", input="hi", extra_body=extra), field)
    assert upstream.requests == []


@pytest.mark.parametrize("field", SAMPLE)
def test_steering_fields_are_refused_on_the_messages_api(
    claude: anthropic.Anthropic, upstream: Upstream, field: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="fake", max_tokens=20, messages=USER, extra_body={field: "x"})
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error" and f"'{field}'" in body["error"]["message"]
    assert upstream.requests == []


def test_every_listed_field_is_refused(client: openai.OpenAI, upstream: Upstream) -> None:
    for field in sorted(STEERING_FIELDS):
        _refused(
            lambda field=field: client.chat.completions.create(  # type: ignore[misc]
                model="gpt-4o", messages=USER, extra_body={field: {"any": "value"}}
            ),
            field,
        )
    assert upstream.requests == []


@pytest.mark.parametrize(
    "field",
    [
        "API_BASE",
        "Api_Key",
        "aws_bedrock_endpoint",
        "aws_external_id",
        "vertex_region",
        "azure_username",
        "user_config",
        "litellm_params",
        "client_secret",
        "tenant_id",
    ],
)
def test_fields_are_refused_in_any_case_and_by_family(
    client: openai.OpenAI, upstream: Upstream, field: str
) -> None:
    """Not only the listed names: any case of them (an upstream gateway may read them so), every
    `aws_*`, `vertex_*` and `azure_*` setting, and a whole deployment's settings (`user_config`)."""
    _refused(
        lambda: client.chat.completions.create(
            model="gpt-4o", messages=USER, extra_body={field: "http://10.1.2.3"}
        ),
        field,
    )
    assert upstream.requests == []


def test_vendor_fields_for_the_provider_still_pass(client: openai.OpenAI, upstream: Upstream) -> None:
    vendor = {
        "top_k": 40,
        "safe_prompt": True,
        "reasoning_effort": "high",
        "repetition_penalty": 1.1,
        "provider": {"order": ["together"]},  # OpenRouter's routing preferences, for OpenRouter
        "metadata": {"api_key": "a metadata key may be called anything"},
    }
    client.chat.completions.create(model="gpt-4o", messages=USER, extra_body=vendor)
    sent = upstream.requests[-1].json
    assert {k: sent[k] for k in vendor} == vendor


def test_only_the_top_level_is_looked_at(client: openai.OpenAI, upstream: Upstream) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "call_api",
            "parameters": {"type": "object", "properties": {"api_key": {"type": "string"}}},
        },
    }
    client.chat.completions.create(model="gpt-4o", messages=USER, tools=[tool])  # type: ignore[list-item]
    assert upstream.requests[-1].json["tools"] == [tool]
