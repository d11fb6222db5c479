"""A non-streamed answer whose body is cut after its provider answered 2xx (short of its
content-length, a chunked body broken off, the connection reset mid-body) was generated, and the
provider bills for it: turnout never asks another deployment again, answers 502 in the client's
API's own error format, and records the attempt as a 502 row billed for what it estimates."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from aiohttp import web

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.upstream import Upstream

PRICE = {"input": "1000", "output": "2000"}
USER: Any = [{"role": "user", "content": "Tell me a story about railway switches."}]
STORY = " ".join(["The points moved and the train rolled onto the siding without a stop."] * 40)
ANSWER = json.dumps(
    {
        "id": "chatcmpl-cut",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": STORY}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 19, "completion_tokens": 600, "total_tokens": 619},
    }
).encode()


def _cut(chunked: bool) -> Callable[[web.Request], Any]:
    """200 and half the answer; then, with a content-length, the connection closed (FIN) short of
    it, or, chunked, the connection reset (RST) mid-body."""

    async def action(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if not chunked:
            response.content_length = len(ANSWER)
        await response.prepare(request)
        await response.write(ANSWER[: len(ANSWER) // 2])
        assert request.transport is not None
        if chunked:
            request.transport.abort()
        else:
            request.transport.close()
        return response

    return action


def _doc(upstream: Upstream) -> dict[str, Any]:
    provider = {"type": "openai_compatible", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"}
    return {
        "routing": {"retries": {"attempts": 3, "backoff_base": "1ms"}},
        "providers": {"first": provider, "second": provider},
        "models": {
            "gpt-4o": {
                "targets": [
                    {"provider": "first", "model": "gpt-4o-2024-08-06", "name": "first", "price": PRICE},
                    {"provider": "second", "model": "gpt-4o-2024-08-06", "name": "second", "price": PRICE},
                ],
                "strategy": "priority",
            }
        },
    }


def _deployments(gateway: Gateway) -> dict[str, dict[str, Any]]:
    ready = httpx.get(
        gateway.root_url + "/health/ready", headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )
    return {d["deployment"]: d for d in ready.json()["deployments"]}


def _openai(gateway: Gateway) -> openai.OpenAI:
    # the SDK's own retries on: a cut answer must tell it not to send the request again
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=2, timeout=20)


def _check_accounted(gateway: Gateway, data: Path, upstream: Upstream, request_id: str) -> None:
    """One upstream request, counted as the first deployment's failure, and one 502 row billed
    for the prompt and the text that arrived (estimated)."""
    assert len(upstream.requests) == 1  # never asked again: not on the second deployment either
    deployments = _deployments(gateway)
    assert deployments["first"]["failures"] == 1
    assert deployments["second"]["failures"] == deployments["second"]["successes"] == 0
    gateway.stop()
    rows = [r for r in ledger_rows(data) if r["request_id"] == request_id]
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["deployment"], row["attempt"], row["attempts"]) == (502, "first", 1, 1)
    assert row["estimated"]
    assert row["input_tokens"] > 0
    assert 0 < row["output_tokens"] < 600  # what arrived: about half the story, not all of it
    assert row["cost_micros"] == 1000 * row["input_tokens"] + 2000 * row["output_tokens"] > 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length-closed", "chunked-reset"])
def test_a_cut_chat_answer_is_not_retried_and_is_billed(
    upstream: Upstream, start_gateway: Callable[..., Gateway], tmp_path: Path, chunked: bool
) -> None:
    gateway = start_gateway(_doc(upstream), {"UPSTREAM_KEY": UPSTREAM_KEY})
    upstream.then(_cut(chunked))
    with _openai(gateway) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    error = caught.value
    assert error.status_code == 502
    assert error.response.headers["x-turnout-attempts"] == "1"
    assert error.response.headers["x-should-retry"] == "false"
    body: Any = error.body
    assert body["code"] == "upstream_answer_cut"
    assert body["type"] == "upstream_error"
    assert "cut off before it was complete" in body["message"]
    assert "did not send the request again" in body["message"]
    assert upstream.base_url not in body["message"] and "127.0.0.1" not in body["message"]
    _check_accounted(gateway, tmp_path / "data0", upstream, error.response.headers["x-request-id"])


def test_a_cut_answer_to_a_messages_request_is_an_anthropic_error(
    upstream: Upstream, start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    gateway = start_gateway(_doc(upstream), {"UPSTREAM_KEY": UPSTREAM_KEY})
    upstream.then(_cut(chunked=False))
    with (
        anthropic.Anthropic(base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c,
        pytest.raises(anthropic.InternalServerError) as caught,
    ):
        c.messages.create(model="gpt-4o", max_tokens=1000, messages=USER)
    error = caught.value
    assert error.status_code == 502
    body: Any = error.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert "cut off before it was complete" in body["error"]["message"]
    _check_accounted(gateway, tmp_path / "data0", upstream, error.response.headers["x-request-id"])


def test_a_cut_answer_to_a_responses_request_is_a_responses_error(
    upstream: Upstream, start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    gateway = start_gateway(_doc(upstream), {"UPSTREAM_KEY": UPSTREAM_KEY})
    upstream.then(_cut(chunked=True))
    with _openai(gateway) as client, pytest.raises(openai.InternalServerError) as caught:
        client.responses.create(model="gpt-4o", input=USER[0]["content"])
    error = caught.value
    assert error.status_code == 502
    body: Any = error.body
    assert body["code"] == "upstream_answer_cut"
    assert "cut off before it was complete" in body["message"]
    _check_accounted(gateway, tmp_path / "data0", upstream, error.response.headers["x-request-id"])


def test_a_reset_before_any_byte_of_the_answer_is_still_tried_elsewhere(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    # Nothing was answered: the provider may never have seen the request, so the next
    # deployment is asked (the counterpart of the cut answers above).
    gateway = start_gateway(_doc(upstream), {"UPSTREAM_KEY": UPSTREAM_KEY})
    upstream.reset()
    with _openai(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-turnout-attempts"] == "2"
    assert len(upstream.requests) == 2
