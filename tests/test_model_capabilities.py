"""What a model declares it can carry (`supports:`) and its own policy for parameters its provider
lacks (`unsupported_params:`), on top of its provider's: requests that need a missing feature skip
that deployment, or get a 400 naming the feature when no deployment of the alias has it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from turnout.config.loader import ConfigError

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for
from support.wire_models import WireModels

PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)
LOOK = [
    {
        "role": "user",
        "content": [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": PIXEL}}],
    }
]
HELLO = [{"role": "user", "content": "Hello"}]


def doc(root: str) -> dict[str, Any]:
    return {
        "routing": {"retries": {"attempts": 2}},
        "providers": {
            "oa": {"type": "openai", "base_url": f"{root}/v1", "api_key": "env:UPSTREAM_KEY"},
            "claude": {"type": "anthropic", "base_url": f"{root}/v1", "api_key": "env:UPSTREAM_KEY"},
        },
        "models": {
            "text-only": {
                "provider": "oa",
                "model": "small",
                "supports": {"images": False, "json_schema": False},
            },
            "mixed": {
                "targets": [
                    {"provider": "oa", "model": "small", "name": "small", "supports": {"images": False}},
                    {"provider": "oa", "model": "vision", "name": "vision"},
                ]
            },
            "strict-claude": {"provider": "claude", "model": "claude-sonnet-4-5"},
            "lenient-claude": {
                "provider": "claude",
                "model": "claude-sonnet-4-5",
                "unsupported_params": "drop",
            },
        },
    }


@pytest.fixture(scope="module")
def models() -> Iterator[WireModels]:
    server = WireModels().start()
    yield server
    server.stop()


@pytest.fixture
def client(models: WireModels, start_gateway: Callable[..., Gateway]) -> Iterator[openai.OpenAI]:
    gateway = start_gateway(doc(models.root_url), {"UPSTREAM_KEY": UPSTREAM_KEY})
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


def test_a_feature_no_deployment_declares_is_refused_by_name(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="text-only", messages=LOOK)
    assert "images" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="text-only",
            messages=HELLO,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}},
            },
        )
    assert caught.value.body["param"] == "response_format"  # type: ignore[index]
    answer = client.chat.completions.create(model="text-only", messages=HELLO)
    assert answer.choices[0].message.content == "no system | turn 1 | you said: Hello"


def test_requests_skip_the_deployment_that_cannot_carry_them(
    client: openai.OpenAI, models: WireModels
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="mixed", messages=LOOK)
    assert raw.headers["x-turnout-deployment"] == "vision"
    assert raw.parse().choices[0].message.content.endswith("images: 1")
    assert models.requests[-1].json["model"] == "vision"
    plain = client.chat.completions.with_raw_response.create(model="mixed", messages=HELLO)
    assert plain.headers["x-turnout-deployment"] == "small"


def test_a_model_can_drop_what_its_provider_refuses(client: openai.OpenAI, models: WireModels) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="strict-claude", messages=HELLO, seed=7)
    assert caught.value.body["param"] == "seed"  # type: ignore[index]
    answer = client.chat.completions.create(model="lenient-claude", messages=HELLO, seed=7)
    assert answer.choices[0].message.content == "no system | turn 1 | you said: Hello"
    assert "seed" not in models.requests[-1].json


def test_declarations_are_checked_with_their_path(tmp_path: Path) -> None:
    bad = doc("http://127.0.0.1:9")
    bad["models"]["text-only"]["supports"] = {"vision": False}
    with pytest.raises(ConfigError) as caught:
        settings_for(bad, tmp_path, {"UPSTREAM_KEY": UPSTREAM_KEY})
    assert "models.text-only" in str(caught.value) and "vision" in str(caught.value)
    worse = doc("http://127.0.0.1:9")
    worse["models"]["mixed"]["targets"][0]["unsupported_params"] = "ignore"
    with pytest.raises(ConfigError) as caught:
        settings_for(worse, tmp_path, {"UPSTREAM_KEY": UPSTREAM_KEY})
    assert "models.mixed.targets[0]" in str(caught.value)
