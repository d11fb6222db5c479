"""Embeddings through the official OpenAI SDK: inputs reach the upstream as sent, answers come back
intact, in input order, valid against OpenAI's published spec, as floats or as base64 (also from
upstreams that only speak floats); bad input and models without embeddings are refused up front."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.spec import validate_openai
from support.upstream import Upstream, fixture_bytes, fixture_json

VECTORS = [
    [0.25, -0.5, 0.125, 1.0],
    [-0.0023064255, 0.009327292, 0.0028842222, -0.01637873],
    [0.1, 0.2, 0.3, 0.4],
]
INPUTS = ["The food was delicious", "and the waiter...", "was very friendly."]


def b64(vector: list[float]) -> str:
    """How OpenAI encodes an embedding for `encoding_format: base64`: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def unb64(text: str) -> list[float]:
    raw = base64.b64decode(text)
    assert len(raw) % 4 == 0
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def f32(vector: list[float]) -> list[float]:
    """`vector` as float32 holds it (what a base64 embedding carries)."""
    return list(struct.unpack(f"<{len(vector)}f", struct.pack(f"<{len(vector)}f", *vector)))


def embedding_list(order: list[int], *, encode: bool = False) -> dict[str, Any]:
    """An upstream answer holding VECTORS[i] for each index in `order`, in that order."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": b64(VECTORS[i]) if encode else VECTORS[i]}
            for i in order
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 12, "total_tokens": 12},
    }


def validate_embeddings(body: dict[str, Any]) -> None:
    """Validate against the spec, which describes `embedding` as floats: base64 ones are decoded."""
    doc = {
        **body,
        "data": [
            {**item, "embedding": unb64(item["embedding"])} if isinstance(item["embedding"], str) else item
            for item in body["data"]
        ],
    }
    validate_openai("CreateEmbeddingResponse", doc)


def _client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


@pytest.fixture
def float_only_client(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Iterator[openai.OpenAI]:
    """A client of a gateway whose provider is configured as unable to send base64."""
    gateway = start_gateway(openai_doc(upstream, embeddings_base64=False), {"UPSTREAM_KEY": UPSTREAM_KEY})
    with _client(gateway) as c:
        yield c


# --------------------------------------------------------------------------- answers


def test_float_embeddings_come_back_intact(client: openai.OpenAI, upstream: Upstream) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="embed", input="The food was delicious and the waiter...", encoding_format="float"
    )
    assert raw.status_code == 200
    assert raw.content == fixture_bytes("embeddings.json")  # the upstream's body, byte for byte
    validate_embeddings(json.loads(raw.content))
    result = raw.parse()
    expected = fixture_json("embeddings.json")
    assert result.data[0].embedding == expected["data"][0]["embedding"]
    assert result.usage.prompt_tokens == 8
    assert raw.headers["x-turnout-deployment"] == "up/text-embedding-3-small"

    sent = upstream.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/embeddings")
    assert sent.json == {
        "model": "text-embedding-3-small",
        "input": "The food was delicious and the waiter...",
        "encoding_format": "float",
    }
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_base64_is_passed_on_and_decoded_by_the_sdk(client: openai.OpenAI, upstream: Upstream) -> None:
    upstream.reply_json(embedding_list([0, 1], encode=True))
    # without encoding_format the SDK asks for base64 and decodes it itself
    raw = client.embeddings.with_raw_response.create(model="embed", input=INPUTS[:2])
    assert upstream.requests[-1].json["encoding_format"] == "base64"

    body = json.loads(raw.content)
    validate_embeddings(body)
    assert [item["embedding"] for item in body["data"]] == [b64(VECTORS[0]), b64(VECTORS[1])]
    result = raw.parse()
    assert [item.embedding for item in result.data] == [f32(VECTORS[0]), f32(VECTORS[1])]


@pytest.mark.parametrize("encode", [False, True], ids=["float", "base64"])
def test_a_batch_answered_out_of_order_comes_back_in_input_order(
    client: openai.OpenAI, upstream: Upstream, encode: bool
) -> None:
    upstream.reply_json(embedding_list([2, 0, 1], encode=encode))
    raw = client.embeddings.with_raw_response.create(
        model="embed", input=INPUTS, encoding_format="base64" if encode else "float"
    )
    assert upstream.requests[-1].json["input"] == INPUTS

    body = json.loads(raw.content)
    validate_embeddings(body)
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    expected = [b64(v) for v in VECTORS] if encode else VECTORS
    assert [item["embedding"] for item in body["data"]] == expected
    # nothing else is touched
    assert body["model"] == "text-embedding-3-small"
    assert body["usage"] == {"prompt_tokens": 12, "total_tokens": 12}
    assert body["object"] == "list"


@pytest.mark.parametrize(
    "tokens",
    [[1820, 25, 374, 264, 1296], [[1820, 25, 374], [264, 1296]]],
    ids=["one-token-array", "batch-of-token-arrays"],
)
def test_token_array_inputs_reach_the_upstream(
    client: openai.OpenAI, upstream: Upstream, tokens: list[Any]
) -> None:
    count = 2 if isinstance(tokens[0], list) else 1
    upstream.reply_json(embedding_list(list(range(count))))
    result = client.embeddings.create(model="embed", input=tokens, encoding_format="float")
    assert upstream.requests[-1].json["input"] == tokens
    assert [item.embedding for item in result.data] == VECTORS[:count]


def test_dimensions_and_user_are_forwarded(client: openai.OpenAI, upstream: Upstream) -> None:
    client.embeddings.create(
        model="embed", input="hello", dimensions=256, user="user-42", encoding_format="float"
    )
    sent = upstream.requests[-1].json
    assert sent["dimensions"] == 256
    assert sent["user"] == "user-42"


def test_upstream_errors_come_back_in_openai_format(client: openai.OpenAI, upstream: Upstream) -> None:
    upstream.reply_fixture("error_400_context_length.json", status=400)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="embed", input="hello", encoding_format="float")
    expected = fixture_json("error_400_context_length.json")["error"]
    assert caught.value.status_code == 400
    assert expected["message"] in caught.value.message
    assert caught.value.code == expected["code"]
    assert caught.value.param == expected["param"]


# --------------------------------------------------------------------------- float-only upstreams


def test_float_only_provider_is_asked_for_floats_and_client_gets_base64(
    float_only_client: openai.OpenAI, upstream: Upstream
) -> None:
    upstream.reply_json(embedding_list([1, 0]))  # floats, and out of order
    raw = float_only_client.embeddings.with_raw_response.create(
        model="embed", input=INPUTS[:2], encoding_format="base64"
    )
    assert upstream.requests[-1].json["encoding_format"] == "float"

    body = json.loads(raw.content)
    validate_embeddings(body)
    assert [item["index"] for item in body["data"]] == [0, 1]
    for item in body["data"]:
        assert isinstance(item["embedding"], str)
        assert unb64(item["embedding"]) == f32(VECTORS[item["index"]])
    assert body["usage"] == {"prompt_tokens": 12, "total_tokens": 12}


def test_float_only_provider_serves_the_sdk_default(
    float_only_client: openai.OpenAI, upstream: Upstream
) -> None:
    upstream.reply_json(embedding_list([0, 1, 2]))
    result = float_only_client.embeddings.create(model="embed", input=INPUTS)  # the SDK asks for base64
    assert upstream.requests[-1].json["encoding_format"] == "float"
    assert [item.embedding for item in result.data] == [f32(v) for v in VECTORS]


def test_float_only_provider_answers_floats_untouched(
    float_only_client: openai.OpenAI, upstream: Upstream
) -> None:
    raw = float_only_client.embeddings.with_raw_response.create(
        model="embed", input="hello", encoding_format="float"
    )
    assert upstream.requests[-1].json["encoding_format"] == "float"
    assert raw.content == fixture_bytes("embeddings.json")


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "value",
    [
        [],
        ["word"] * 2049,
        [[1, 2]] * 2049,
        42,
        None,
        True,
        {"text": "hello"},
        [1, "two"],
        ["one", 2],
        [["a", "b"]],
        [1.5, 2.5],
    ],
    ids=[
        "empty-list",
        "2049-strings",
        "2049-token-arrays",
        "number",
        "null",
        "boolean",
        "object",
        "mixed-token-and-string",
        "mixed-string-and-token",
        "nested-strings",
        "floats",
    ],
)
def test_invalid_input_is_refused_naming_input(client: openai.OpenAI, upstream: Upstream, value: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="embed", input=value, encoding_format="float")
    assert caught.value.status_code == 400
    param = caught.value.param
    assert param is not None and (param == "input" or param.startswith("input["))  # input, input[3] ...
    assert "input" in caught.value.message
    assert caught.value.type == "invalid_request_error"
    validate_openai("ErrorResponse", caught.value.response.json())
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"dimensions": 0}, "dimensions"),
        ({"dimensions": "256"}, "dimensions"),
        ({"encoding_format": "int8"}, "encoding_format"),
        ({"user": 42}, "user"),
    ],
)
def test_invalid_parameters_are_refused_naming_them(
    gateway: Gateway, upstream: Upstream, extra: dict[str, Any], param: str
) -> None:
    response = httpx.post(
        gateway.base_url + "/embeddings",
        json={"model": "embed", "input": "hello", **extra},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert response.status_code == 400
    validate_openai("ErrorResponse", response.json())
    assert response.json()["error"]["param"] == param
    assert upstream.requests == []


def test_missing_input_is_refused_naming_input(gateway: Gateway, upstream: Upstream) -> None:
    response = httpx.post(
        gateway.base_url + "/embeddings",
        json={"model": "embed"},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert response.status_code == 400
    validate_openai("ErrorResponse", response.json())
    assert response.json()["error"]["param"] == "input"
    assert upstream.requests == []


def test_the_full_batch_of_2048_inputs_is_accepted(client: openai.OpenAI, upstream: Upstream) -> None:
    client.embeddings.create(model="embed", input=["word"] * 2048, encoding_format="float")
    assert len(upstream.requests[-1].json["input"]) == 2048


def test_unknown_model_is_404(client: openai.OpenAI, upstream: Upstream) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="no-such-embedder", input="hello", encoding_format="float")
    assert caught.value.param == "model"
    assert upstream.requests == []


def test_provider_without_embeddings_is_refused_without_calling_it(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    doc = {
        "providers": {
            "ds": {"type": "deepseek", "base_url": upstream.base_url, "api_key": "env:DEEPSEEK_KEY"}
        },
        "models": {"deepseek-chat": {"provider": "ds", "model": "deepseek-chat"}},
    }
    gateway = start_gateway(doc, {"DEEPSEEK_KEY": "sk-deepseek-0123456789"})
    with _client(gateway) as c, pytest.raises(openai.BadRequestError) as caught:
        c.embeddings.create(model="deepseek-chat", input="hello", encoding_format="float")
    assert caught.value.status_code == 400
    assert caught.value.param == "model"
    assert "embeddings" in caught.value.message
    assert upstream.requests == []
