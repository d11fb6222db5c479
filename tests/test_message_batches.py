"""Anthropic's Message Batches through turnout (`/v1/messages/batches`, the official `anthropic` SDK):
a batch created with a turnout key on the alias's Anthropic deployment with the provider's
credential, its most reserved in the key's budget, read back until it has ended, its results
fetched through turnout, and its usage accounted once at batch prices."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from support.batch_upstream import COMPLETION_TOKENS, PROMPT_TOKENS, BatchUpstream
from support.databases import ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway

# per 1M tokens: standard 2.00 / 8.00 USD, batch 1.00 / 4.00 USD (1 and 4 micro-dollars a token)
PRICE = {"input": "2.00", "output": "8.00", "service_tiers": {"batch": {"input": "1.00", "output": "4.00"}}}
REQUESTS = 2


@pytest.fixture
def provider() -> Iterator[BatchUpstream]:
    server = BatchUpstream(UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def gateway(provider: BatchUpstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    claude = {"type": "anthropic", "base_url": provider.base_url, "api_key": "env:UPSTREAM_KEY"}
    doc = {
        "providers": {"claude": claude},
        "models": {"sonnet": {"provider": "claude", "model": "claude-sonnet-4-5-20250929", "price": PRICE}},
    }
    return start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})


def _key(gateway: Gateway, **fields: Any) -> str:
    answer = httpx.post(
        gateway.root_url + "/admin/keys",
        json={"name": "batcher", **fields},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["key"])


def _admin(gateway: Gateway, path: str, **body: Any) -> dict[str, Any]:
    answer = httpx.post(
        gateway.root_url + path, json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _sdk(gateway: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.root_url, api_key=key, max_retries=0, timeout=30)


def _requests(model: str = "sonnet", max_tokens: int = 100, count: int = REQUESTS) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"task-{i}",
            "params": {
                "model": model,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": "Hi"}],
            },
        }
        for i in range(count)
    ]


def test_a_message_batch_runs_through_turnout_and_is_accounted_once_at_batch_prices(
    gateway: Gateway, provider: BatchUpstream, tmp_path: Path
) -> None:
    key = _key(gateway)
    with _sdk(gateway, key) as client:
        batch = client.messages.batches.create(requests=_requests())  # type: ignore[arg-type]
        assert batch.processing_status == "in_progress"
        (sent,) = provider.requests
        assert sent.headers["x-api-key"] == UPSTREAM_KEY and key not in str(sent.headers)
        (_, forwarded) = provider.message_batches[batch.id]
        assert {r["params"]["model"] for r in forwarded} == {"claude-sonnet-4-5-20250929"}
        provider.finish_messages(batch.id)
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended"
        assert (
            ended.results_url == f"/v1/messages/batches/{batch.id}/results"
        )  # turnout's, never the provider's
        results = list(client.messages.batches.results(batch.id))
        assert [r.custom_id for r in results] == ["task-0", "task-1"]
        assert all(r.result.type == "succeeded" for r in results)
        assert [b.id for b in client.messages.batches.list()] == [batch.id]
    assert gateway.services.batches is not None and gateway.loop is not None
    asyncio.run_coroutine_threadsafe(gateway.services.batches.poll(), gateway.loop).result(30)
    gateway.stop()
    (row,) = [r for r in ledger_rows(tmp_path / "data0") if r["api"] == "batch"]
    assert (row["alias"], row["provider"], row["service_tier"]) == ("sonnet", "claude", "batch")
    assert (row["input_tokens"], row["output_tokens"]) == (
        REQUESTS * PROMPT_TOKENS,
        REQUESTS * COMPLETION_TOKENS,
    )
    assert row["cost_micros"] == REQUESTS * (PROMPT_TOKENS * 1 + COMPLETION_TOKENS * 4)


def test_a_message_batch_over_the_budget_is_refused_in_anthropics_error_shape(
    gateway: Gateway, provider: BatchUpstream
) -> None:
    with (
        _sdk(gateway, _key(gateway, max_budget="0.001")) as client,
        pytest.raises(anthropic.RateLimitError) as refused,
    ):
        client.messages.batches.create(requests=_requests(max_tokens=1000))  # type: ignore[arg-type]
    assert refused.value.body["type"] == "error"  # type: ignore[index]
    assert "budget" in refused.value.body["error"]["message"]  # type: ignore[index]
    assert provider.requests == []


def test_a_message_batch_the_provider_fails_to_create_holds_none_of_the_budget(
    gateway: Gateway, provider: BatchUpstream
) -> None:
    # 2 x (at most 100 output tokens at 4 micro-dollars, and the prompt) reserve about 900
    # micro-dollars: one fits in 1,000, two do not, so the second creation is accepted only if the
    # failed one gave its reservation back
    with _sdk(gateway, _key(gateway, max_budget="0.001")) as client:
        provider.failed_creations = 1
        with pytest.raises(anthropic.InternalServerError):
            client.messages.batches.create(requests=_requests())  # type: ignore[arg-type]
        batch = client.messages.batches.create(requests=_requests())  # type: ignore[arg-type]
        assert [b.id for b in client.messages.batches.list()] == [batch.id]
    assert list(provider.message_batches) == [batch.id]


@pytest.mark.parametrize(
    ("requests", "says"),
    [
        (
            [*_requests(), {**_requests(model="other")[0], "custom_id": "x"}],
            "requests.2.params.model is not 'sonnet'",
        ),
        ([{**_requests()[0], "custom_id": "bad id!"}], "custom_id must be"),
        (_requests(count=1) * 2, "unique in the batch"),
        ([{"custom_id": "a", "params": {"model": "sonnet", "messages": []}}], "max_tokens must be"),
        ([], "'requests' must hold 1-100000"),
        (
            [{"custom_id": "a", "params": {**_requests()[0]["params"], "api_key": "sk-x"}}],
            "requests.0.params.api_key cannot be set",
        ),
    ],
)
def test_a_bad_message_batch_is_refused_naming_the_request(
    gateway: Gateway, provider: BatchUpstream, requests: list[dict[str, Any]], says: str
) -> None:
    with _sdk(gateway, _key(gateway)) as client, pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert says in refused.value.body["error"]["message"]  # type: ignore[index]
    assert provider.requests == []


def test_another_team_cannot_see_cancel_delete_or_read_a_message_batch(
    gateway: Gateway, provider: BatchUpstream
) -> None:
    red = _admin(gateway, "/admin/teams", name="red")["id"]
    blue = _admin(gateway, "/admin/teams", name="blue")["id"]
    with _sdk(gateway, _key(gateway, team_id=red)) as client:
        batch_id = client.messages.batches.create(requests=_requests()).id  # type: ignore[arg-type]
    provider.finish_messages(batch_id)
    with _sdk(gateway, _key(gateway, team_id=blue)) as client:
        for call in (
            client.messages.batches.retrieve,
            client.messages.batches.cancel,
            client.messages.batches.delete,
        ):
            with pytest.raises(anthropic.NotFoundError):
                call(batch_id)
        answer = httpx.get(
            f"{gateway.root_url}/v1/messages/batches/{batch_id}/results",
            headers={"x-api-key": client.api_key},
            timeout=10,
        )
        assert answer.status_code == 404 and answer.json()["type"] == "error"
        assert list(client.messages.batches.list()) == []
    assert provider.message_batches[batch_id][0]["processing_status"] == "ended"  # untouched


def test_a_message_batch_is_cancelled_on_the_provider(gateway: Gateway, provider: BatchUpstream) -> None:
    with _sdk(gateway, _key(gateway)) as client:
        batch_id = client.messages.batches.create(requests=_requests()).id  # type: ignore[arg-type]
        assert client.messages.batches.cancel(batch_id).processing_status == "canceling"
    assert provider.message_batches[batch_id][0]["processing_status"] == "canceling"
