"""Client-chosen names cannot grow the gateway's memory: twice `MAX_REACHED` requests, each for a model
name never seen before, through a wildcard alias leave at most `MAX_REACHED` deployment states behind (and a
/health/ready detail of bounded size), while the states that matter survive the flood: a configured
deployment's open breaker, a wildcard-reached deployment's open breaker, and a deployment with a
request in flight."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from turnout.providers.link import MAX_CACHED_ENDPOINTS
from turnout.routing.deployments import MAX_REACHED

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.upstream import Upstream, fixture_bytes, fixture_json

NAMES = 2 * MAX_REACHED  # (1,000 kept at most: half the names must have been let go)
CONCURRENCY = 32
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
FAILURE = {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}


def _doc(upstream: Upstream) -> dict[str, Any]:
    doc = openai_doc(upstream)
    doc["routing"]["breaker"] = {
        "consecutive_failures": 2,
        "min_requests": 10000,
        "open_for": "10m",  # open for the whole test
        "max_open_for": "10m",
    }
    doc["models"]["steady"] = {"provider": "up", "model": "steady-model"}
    doc["server"] = {"shutdown_grace": "1s"}
    return doc


def _chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def _flood(url: str) -> list[int]:
    statuses: list[int] = []
    names = iter(range(NAMES))
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=AUTH) as client:

        async def worker() -> None:
            for i in names:
                answer = await client.post(url, json=_chat(f"up/model-{i:05d}"))
                statuses.append(answer.status_code)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


def _open_breaker(gateway: Gateway, upstream: Upstream, model: str, label: str) -> None:
    upstream.reply_json(FAILURE, status=500, times=2)
    for _ in range(2):
        failed = httpx.post(f"{gateway.base_url}/chat/completions", json=_chat(model), headers=AUTH)
        assert failed.status_code == 502, failed.text
    assert _breaker_states(gateway)[label] == "open"


def _breaker_states(gateway: Gateway) -> dict[str, str]:
    """What /health/ready reports of each deployment's breaker."""
    return {d["deployment"]: d["state"] for d in _ready(gateway).json()["deployments"]}


def _ready(gateway: Gateway) -> httpx.Response:
    ready = httpx.get(f"{gateway.root_url}/health/ready", headers=AUTH, timeout=20)
    assert ready.status_code == 200
    return ready


def test_unique_wildcard_names_leave_bounded_state_and_keep_what_matters(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(_doc(upstream), {"UPSTREAM_KEY": UPSTREAM_KEY})
    router = gateway.services.pipeline.router
    _open_breaker(gateway, upstream, "steady", "up/steady-model")  # a configured deployment
    _open_breaker(gateway, upstream, "up/dead", "up/dead")  # one a wildcard reached

    released = threading.Event()  # a request held upstream until the flood is over

    async def held(request: web.Request) -> web.StreamResponse:
        await asyncio.get_running_loop().run_in_executor(None, released.wait)
        return web.json_response(fixture_json("chat_completion.json"))

    upstream.then(held)
    answers: list[httpx.Response] = []
    url = f"{gateway.base_url}/chat/completions"
    sender = threading.Thread(
        target=lambda: answers.append(httpx.post(url, json=_chat("up/held"), headers=AUTH, timeout=600))
    )
    sender.start()
    try:
        deadline = time.monotonic() + 10
        while not any(r.json.get("model") == "held" for r in list(upstream.requests)):
            assert time.monotonic() < deadline, "the held request never reached the upstream"
            time.sleep(0.01)

        statuses = asyncio.run(_flood(f"{gateway.base_url}/chat/completions"))
        assert statuses == [200] * NAMES

        kept = {s.label: s for s in gateway.call(router.deployments.all)}
        assert len(kept) <= MAX_REACHED + 3  # the configured ones (gpt-4o's is not even used yet)
        assert kept["up/held"].in_flight == 1
        assert kept["up/dead"].breaker.state.value == "open"
        assert kept["up/steady-model"].breaker.state.value == "open"

        ready = _ready(gateway)
        detail = ready.json()
        assert detail["deployments_total"] <= MAX_REACHED + 3
        assert len(ready.content) < 400 * 1024  # about 250 bytes a deployment (7.7 MB before)
        shown = {d["deployment"]: d for d in detail["deployments"]}
        assert shown["up/dead"]["state"] == "open" and shown["up/steady-model"]["state"] == "open"
        assert shown["up/gpt-4o-2024-08-06"]["successes"] == 0  # configured: always listed
    finally:
        released.set()
        sender.join(30)
    assert answers and answers[0].status_code == 200  # the held request was answered all the same


@pytest.mark.parametrize("kind", ["azure", "gemini"])
def test_per_model_endpoints_of_a_provider_stay_bounded(
    upstream: Upstream, start_gateway: Callable[..., Gateway], kind: str
) -> None:
    """Azure and Gemini (like Bedrock) put the model in the URL: the adapter's prepared endpoints
    are a cache that a wildcard alias must not let grow with every name."""
    count = MAX_CACHED_ENDPOINTS + 100
    base_url = upstream.root_url if kind == "azure" else upstream.base_url
    doc = {
        "providers": {"p": {"type": kind, "base_url": base_url, "api_key": "env:UPSTREAM_KEY"}},
        "models": {"p/*": {"provider": "p", "model": "*"}},
    }
    if kind == "gemini":
        upstream.reply_json(fixture_bytes("generate_content.json", "gemini"), times=count)
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    adapter: Any = gateway.services.registry["p"]

    async def send() -> list[int]:
        async with httpx.AsyncClient(timeout=60, headers=AUTH) as client:
            sem = asyncio.Semaphore(CONCURRENCY)

            async def one(i: int) -> int:
                async with sem:
                    answer = await client.post(f"{gateway.base_url}/chat/completions", json=_chat(f"p/d{i}"))
                    return answer.status_code

            return await asyncio.gather(*(one(i) for i in range(count)))

    assert asyncio.run(send()) == [200] * count
    assert "/d" in upstream.requests[-1].path  # the model was in the URL
    assert 0 < gateway.call(lambda: len(adapter._endpoints)) <= MAX_CACHED_ENDPOINTS
