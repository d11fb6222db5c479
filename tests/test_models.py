"""GET /v1/models and /v1/models/{id} through the official OpenAI SDK: the configured aliases, the
upstream's own models behind wildcard aliases, ids with slashes, 404s and authentication."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.spec import validate_openai
from support.upstream import Upstream, fixture_json

EXACT = ["gpt-4o", "embed"]
UPSTREAM_MODELS = [m["id"] for m in fixture_json("models.json")["data"]]  # model-id-0 ... model-id-2


def _client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def _list(gateway: Gateway) -> list[str]:
    with _client(gateway) as c:
        raw = c.models.with_raw_response.list()
    body = json.loads(raw.content)
    validate_openai("ListModelsResponse", body)
    return [m["id"] for m in body["data"]]


def test_aliases_and_wildcard_models_are_listed(client: openai.OpenAI, upstream: Upstream) -> None:
    raw = client.models.with_raw_response.list()
    assert raw.status_code == 200
    body = json.loads(raw.content)
    validate_openai("ListModelsResponse", body)
    for entry in body["data"]:
        validate_openai("Model", entry)

    ids = [m.id for m in raw.parse()]
    assert set(ids) == {*EXACT, *(f"up/{m}" for m in UPSTREAM_MODELS)}
    assert len(ids) == len(set(ids))
    assert not any("*" in i for i in ids)  # the wildcard itself is not a model
    # the wildcard's models came from the upstream's own list, asked with turnout's key
    listing = [r for r in upstream.requests if r.path == "/v1/models"]
    assert len(listing) == 1
    assert listing[0].method == "GET"
    assert listing[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_every_listed_model_can_be_retrieved(client: openai.OpenAI) -> None:
    for model in client.models.list():
        retrieved = client.models.retrieve(model.id)
        assert retrieved.id == model.id
        assert retrieved.object == "model"


def test_the_upstream_list_is_not_fetched_on_every_request(gateway: Gateway, upstream: Upstream) -> None:
    first = _list(gateway)
    second = _list(gateway)
    assert first == second
    assert len([r for r in upstream.requests if r.path == "/v1/models"]) == 1


@pytest.mark.parametrize("failure", ["500", "503", "401", "malformed", "reset"])
def test_a_failing_upstream_list_still_leaves_the_aliases(
    gateway: Gateway, upstream: Upstream, failure: str
) -> None:
    if failure == "malformed":
        upstream.reply_raw(b'{"object": "list", "data": [{"id": ', content_type="application/json")
    elif failure == "reset":
        upstream.reset(times=2)  # a retry on a fresh connection is reset too
    else:
        upstream.reply_json(
            {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}},
            status=int(failure),
        )
    ids = _list(gateway)
    assert sorted(ids) == sorted(EXACT)


def test_retrieve_an_alias(client: openai.OpenAI, gateway: Gateway) -> None:
    raw = client.models.with_raw_response.retrieve("gpt-4o")
    assert raw.status_code == 200
    body = json.loads(raw.content)
    validate_openai("Model", body)
    assert body["id"] == "gpt-4o"
    assert body["object"] == "model"
    assert isinstance(body["created"], int)
    model = raw.parse()
    assert model.id == "gpt-4o"
    assert model.owned_by


@pytest.mark.parametrize("name", ["up/meta-llama/Llama-3.1-8B", "up/model-id-1", "up/a b"])
def test_retrieve_a_wildcard_model_with_slashes(client: openai.OpenAI, name: str) -> None:
    raw = client.models.with_raw_response.retrieve(name)  # the SDK escapes the slashes
    validate_openai("Model", json.loads(raw.content))
    assert raw.parse().id == name


def test_retrieve_with_unescaped_slashes_and_without_v1(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    for url in (
        gateway.base_url + "/models/up/meta-llama/Llama-3.1-8B",
        gateway.root_url + "/models/up/meta-llama/Llama-3.1-8B",
        gateway.base_url + "/models/up%2Fmeta-llama%2FLlama-3.1-8B",
    ):
        response = httpx.get(url, headers=headers, timeout=10)
        assert response.status_code == 200, url
        assert response.json()["id"] == "up/meta-llama/Llama-3.1-8B"


@pytest.mark.parametrize("name", ["gpt-5-does-not-exist", "up/", "up/*", "*", "gpt-4o/extra", "GPT-4O"])
def test_unknown_model_is_404(client: openai.OpenAI, name: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve(name)
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    validate_openai("ErrorResponse", caught.value.response.json())


def test_listing_needs_a_key(gateway: Gateway) -> None:
    for url in (gateway.base_url + "/models", gateway.base_url + "/models/gpt-4o"):
        response = httpx.get(url, timeout=10)
        assert response.status_code == 401, url
        validate_openai("ErrorResponse", response.json())
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_wrong_key_is_refused(gateway: Gateway) -> None:
    with openai.OpenAI(base_url=gateway.base_url, api_key="sk-wrong-key", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
        with pytest.raises(openai.AuthenticationError):
            c.models.retrieve("gpt-4o")


def test_models_is_read_only(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    response = httpx.post(gateway.base_url + "/models", headers=headers, json={}, timeout=10)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    response = httpx.delete(gateway.base_url + "/models/gpt-4o", headers=headers, timeout=10)
    assert response.status_code == 405


def test_no_wildcard_no_upstream_call(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> None:
    doc = openai_doc(upstream)
    del doc["models"]["up/*"]
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    assert sorted(_list(gateway)) == sorted(EXACT)
    assert upstream.requests == []
