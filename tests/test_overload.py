"""Admission control (`server.overload`) through a real `turnout serve` process and a slow fake
upstream: the excess is refused at once with 503 + Retry-After in each API's own error format while
admitted requests complete, health and admin keep answering, `batch` keys are shed before
`critical` ones (which also go first in the queue), and the limit follows the measured latency."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from support.gateway import UPSTREAM_KEY
from support.process import Served, start_serve
from support.upstream import Upstream, fixture_bytes

MASTER = "sk-master-for-overload-Qw3eR5tY7uI9oP1aS3dF5gH7jK9lZ1xC3vB5nM7q"
ANSWER = fixture_bytes("chat_completion.json")
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def auth(key: str = MASTER) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


class Held:
    """Scripts the upstream to hold the next `times` chat requests: each says it arrived, then
    waits for a release (one per `release()` token) before answering."""

    def __init__(self, upstream: Upstream, times: int) -> None:
        self.arrivals = threading.Semaphore(0)
        self.tokens = threading.Semaphore(0)

        async def action(request: web.Request) -> web.StreamResponse:
            self.arrivals.release()
            await asyncio.to_thread(self.tokens.acquire, True, 60)  # (bounded: a failed test must end)
            return web.Response(body=ANSWER, content_type="application/json")

        upstream.then(action, times)

    async def arrived(self, count: int) -> None:
        for _ in range(count):
            assert await asyncio.to_thread(self.arrivals.acquire, True, 20), "the upstream got no request"

    def release(self, count: int) -> None:
        self.tokens.release(count)


@pytest.fixture
def serve(tmp_path: Path, upstream: Upstream) -> Iterator[Any]:
    started: list[Served] = []

    def start(**overload: Any) -> Served:
        doc = {
            "server": {"overload": overload},
            "storage": {"data_dir": str(tmp_path / "data")},
            "spend": {"unknown_prices": "record"},
            "routing": {"retries": {"attempts": 1}},
            "providers": {
                "up": {
                    "type": "openai_compatible",
                    "base_url": upstream.base_url,
                    "api_key": "env:UPSTREAM_KEY",
                    "passthrough": ["/files"],
                }
            },
            "models": {"gpt-4o": {"provider": "up", "model": "gpt-4o-2024-08-06"}},
        }
        config = tmp_path / "turnout.yaml"
        config.write_text(yaml.safe_dump(doc))
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "OPENAI_"))}
        env = {
            **clean,
            "TURNOUT_LOG_LEVEL": "warning",
            "TURNOUT_MASTER_KEY": MASTER,
            "UPSTREAM_KEY": UPSTREAM_KEY,
        }
        served = start_serve(config, env)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop(signal.SIGKILL)


def root(served: Served) -> str:
    return f"http://127.0.0.1:{served.port}"


async def state(http: httpx.AsyncClient, served: Served) -> dict[str, Any]:
    """The gate's state as /health/ready shows it to an admin."""
    answer = await http.get(root(served) + "/health/ready", headers=auth())
    assert answer.status_code == 200
    overload: dict[str, Any] = answer.json()["overload"]
    return overload


async def until_queued(http: httpx.AsyncClient, served: Served, count: int) -> None:
    for _ in range(500):
        if (await state(http, served))["queued"] == count:
            return
    raise AssertionError(f"{count} requests never waited in the queue")


async def key_with(http: httpx.AsyncClient, served: Served, priority: str) -> str:
    made = await http.post(
        root(served) + "/admin/keys",
        headers=auth(),
        json={"name": f"{priority} traffic", "metadata": {"priority": priority}},
    )
    assert made.status_code == 200, made.text
    assert made.json()["metadata"] == {"priority": priority}
    key: str = made.json()["key"]
    return key


def chat(http: httpx.AsyncClient, served: Served, key: str = MASTER, user: str = "") -> Any:
    body = {**CHAT, "user": user} if user else CHAT
    return asyncio.ensure_future(
        http.post(root(served) + "/v1/chat/completions", headers=auth(key), json=body)
    )


FIXED_FOUR = {"initial_limit": 4, "min_limit": 4, "max_limit": 4}
FIXED_TWO = {"initial_limit": 2, "min_limit": 2, "max_limit": 2, "queue_ratio": 0}


def test_excess_requests_are_refused_with_retry_after_while_admitted_ones_complete(
    serve: Any, upstream: Upstream
) -> None:
    held = Held(upstream, 2)
    served = serve(**FIXED_TWO)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            admitted = [chat(http, served), chat(http, served)]
            await held.arrived(2)

            refused = await http.post(root(served) + "/v1/chat/completions", headers=auth(), json=CHAT)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.headers.get("connection") != "close"  # the client may retry on it
            error = refused.json()["error"]
            assert error["code"] == "overloaded" and error["type"] == "service_unavailable"
            assert "Retry-After" in error["message"]

            anthropic = await http.post(
                root(served) + "/v1/messages",
                headers={"x-api-key": MASTER, "anthropic-version": "2023-06-01"},
                json={"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
            )
            assert anthropic.status_code == 503 and anthropic.headers["retry-after"] == "1"
            assert anthropic.json()["type"] == "error"
            assert anthropic.json()["error"]["type"] == "overloaded_error"
            cohere = await http.post(  # Cohere's v2 rerank: Cohere's error shape
                root(served) + "/v2/rerank",
                headers=auth(),
                json={"model": "gpt-4o", "query": "hi", "documents": ["hi"]},
            )
            assert cohere.status_code == 503 and cohere.headers["retry-after"] == "1"
            assert set(cohere.json()) == {"id", "message"} and "Retry-After" in cohere.json()["message"]

            # health and admin always answer
            assert (await http.get(root(served) + "/health/live")).status_code == 200
            assert (await http.get(root(served) + "/health/ready")).status_code == 200
            assert (await http.get(root(served) + "/admin/keys", headers=auth())).status_code == 200
            shown = await state(http, served)
            assert shown["in_flight"] == 2 and shown["limit"] == 2
            assert shown["refused"]["standard"] == 3

            held.release(2)
            answers = await asyncio.gather(*admitted)
            assert [a.status_code for a in answers] == [200, 200]
            assert answers[0].json()["choices"][0]["message"]["content"]
            # the slots are free again
            again = await http.post(root(served) + "/v1/chat/completions", headers=auth(), json=CHAT)
            assert again.status_code == 200

    asyncio.run(scenario())
    assert len(upstream.requests) == 3  # the refused requests never reached the provider


def test_batch_is_shed_first_and_critical_last(serve: Any, upstream: Upstream) -> None:
    held = Held(upstream, 4)
    # a limit of 4: batch keys may hold 2 of it, standard ones 3, critical ones all 4
    served = serve(
        initial_limit=4, min_limit=4, max_limit=4, queue_ratio=0, standard_share=0.75, batch_share=0.5
    )

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            batch = await key_with(http, served, "batch")
            critical = await key_with(http, served, "critical")
            running = [chat(http, served, batch), chat(http, served, batch)]
            await held.arrived(2)
            third_batch = await http.post(
                root(served) + "/v1/chat/completions", headers=auth(batch), json=CHAT
            )
            assert third_batch.status_code == 503

            running.append(chat(http, served, critical))
            await held.arrived(1)
            standard = await http.post(root(served) + "/v1/chat/completions", headers=auth(), json=CHAT)
            assert standard.status_code == 503  # the master key is of the default class

            running.append(chat(http, served, critical))
            await held.arrived(1)  # critical still gets the last slot
            assert (await state(http, served))["refused"] == {"critical": 0, "standard": 1, "batch": 1}
            held.release(4)
            assert [a.status_code for a in await asyncio.gather(*running)] == [200] * 4

    asyncio.run(scenario())


def test_critical_requests_overtake_batch_ones_in_the_queue(serve: Any, upstream: Upstream) -> None:
    held = Held(upstream, 6)
    # a limit of 4, a queue of 2 (half the limit) that is waited in for up to 30 s
    served = serve(**FIXED_FOUR, queue_ratio=0.5, queue_timeout="30s")

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            batch = await key_with(http, served, "batch")
            critical = await key_with(http, served, "critical")
            running = [chat(http, served, critical, user=f"first-{i}") for i in range(4)]
            await held.arrived(4)
            early_batch = chat(http, served, batch, user="early-batch")
            await until_queued(http, served, 1)
            late_batch = chat(http, served, batch, user="late-batch")
            await until_queued(http, served, 2)
            # the queue is full: the newest batch request gives its place to the critical one
            late_critical = chat(http, served, critical, user="late-critical")
            evicted = await late_batch
            assert evicted.status_code == 503 and evicted.headers["retry-after"] == "1"

            held.release(1)  # one slot frees: it goes to the critical request, queued last
            await held.arrived(1)
            assert upstream.requests[-1].json["user"] == "late-critical"
            held.release(5)
            answers = await asyncio.gather(*running, early_batch, late_critical)
            assert [a.status_code for a in answers] == [200] * 6
            assert upstream.requests[-1].json["user"] == "early-batch"

    asyncio.run(scenario())


def test_a_request_waits_in_the_queue_at_most_queue_timeout(serve: Any, upstream: Upstream) -> None:
    held = Held(upstream, 1)
    served = serve(initial_limit=1, min_limit=1, max_limit=1, queue_ratio=1, queue_timeout="200ms")

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            running = chat(http, served)
            await held.arrived(1)
            waited = await http.post(root(served) + "/v1/chat/completions", headers=auth(), json=CHAT)
            assert waited.status_code == 503 and waited.json()["error"]["code"] == "overloaded"
            shown = await state(http, served)
            assert shown["queued"] == 0 and shown["in_flight"] == 1
            held.release(1)
            assert (await running).status_code == 200

    asyncio.run(scenario())
    assert len(upstream.requests) == 1


def test_a_priority_must_be_a_class(serve: Any, upstream: Upstream) -> None:
    served = serve()

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            wrong = await http.post(
                root(served) + "/admin/keys",
                headers=auth(),
                json={"name": "x", "metadata": {"priority": "urgent"}},
            )
            assert wrong.status_code == 400
            assert wrong.json()["error"]["param"] == "metadata.priority"
            assert "critical, standard, batch" in wrong.json()["error"]["message"]
            key = await http.post(
                root(served) + "/admin/keys", headers=auth(), json={"name": "x", "metadata": {"team": "data"}}
            )
            key_id = key.json()["id"]
            patched = await http.patch(
                root(served) + f"/admin/keys/{key_id}", headers=auth(), json={"metadata": {"priority": 3}}
            )
            assert patched.status_code == 400 and patched.json()["error"]["param"] == "metadata.priority"
            for shape in (["critical"], {"class": "critical"}):  # not a name at all: 400, not 500
                for wrong in (
                    await http.post(
                        root(served) + "/admin/keys",
                        headers=auth(),
                        json={"name": "x", "metadata": {"priority": shape}},
                    ),
                    await http.patch(
                        root(served) + f"/admin/keys/{key_id}",
                        headers=auth(),
                        json={"metadata": {"priority": shape}},
                    ),
                ):
                    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_priority"
            patched = await http.patch(
                root(served) + f"/admin/keys/{key_id}",
                headers=auth(),
                json={"metadata": {"priority": "batch"}},
            )
            assert patched.status_code == 200
            shown = await http.get(root(served) + f"/admin/keys/{key_id}", headers=auth())
            assert shown.json()["metadata"] == {"priority": "batch"}

    asyncio.run(scenario())


def test_overload_settings_are_checked(tmp_path: Path) -> None:
    from turnout.config.loader import ConfigError
    from turnout.providers.config_loader import build_settings

    doc = {
        "storage": {"data_dir": str(tmp_path)},
        "server": {"overload": {"min_limit": 50, "initial_limit": 10, "batch_share": 0.95, "tolerance": 0.5}},
    }
    with pytest.raises(ConfigError) as refused:
        build_settings(doc, {}, source="test")
    shown = str(refused.value)
    assert (
        "server.overload.initial_limit: must be between min_limit (50) and max_limit (1000), got 10" in shown
    )
    assert "server.overload.batch_share: must not be more than standard_share" in shown
    assert "server.overload.tolerance: must be between 1 and 10, got 0.5" in shown


def test_the_limit_grows_while_latency_is_low_and_shrinks_when_it_rises(
    serve: Any, upstream: Upstream
) -> None:
    served = serve(initial_limit=10, min_limit=2, max_limit=200, window="10ms", queue_ratio=0)

    async def rounds(http: httpx.AsyncClient, clients: int) -> None:
        answers = await asyncio.gather(*[chat(http, served) for _ in range(clients)])
        assert {a.status_code for a in answers} <= {200, 503}

    def answering_after(seconds: float) -> Any:
        async def action(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(seconds)  # the upstream's latency
            return web.Response(body=ANSWER, content_type="application/json")

        return action

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as http:
            # answers in 20 ms, and enough requests in flight to use the limit: it grows
            upstream.then(answering_after(0.02), 20000)
            for _ in range(400):
                await rounds(http, 16)
                grown = (await state(http, served))["limit"]
                if grown >= 20:
                    break
            assert grown >= 20

            # the upstream slows down to 200 ms an answer: the limit shrinks
            upstream.clear()
            upstream.then(answering_after(0.2), 20000)
            for _ in range(100):
                await rounds(http, 24)
                shrunk = (await state(http, served))["limit"]
                if shrunk < grown * 0.7:
                    break
            assert shrunk < grown * 0.7

    asyncio.run(scenario())


async def team_key(http: httpx.AsyncClient, served: Served, team: str, priority: str | None) -> str:
    """A key of a new team whose class is `priority`; the key itself has none unless asked."""
    made = await http.post(root(served) + "/admin/teams", headers=auth(), json={"name": team})
    assert made.status_code == 200, made.text
    team_id = made.json()["id"]
    classed = await http.patch(
        root(served) + f"/admin/teams/{team_id}", headers=auth(), json={"priority": priority}
    )
    assert classed.status_code == 200 and classed.json()["priority"] == priority, classed.text
    key = await http.post(
        root(served) + "/admin/keys", headers=auth(), json={"name": f"{team} key", "team_id": team_id}
    )
    assert key.status_code == 200 and key.json()["metadata"] == {}, key.text
    value: str = key.json()["key"]
    return value


def test_a_critical_teams_traffic_is_admitted_while_a_batch_teams_is_shed(
    serve: Any, upstream: Upstream
) -> None:
    held = Held(upstream, 4)
    # a limit of 4: batch may hold 2 of it, standard 3, critical all 4
    served = serve(
        initial_limit=4, min_limit=4, max_limit=4, queue_ratio=0, standard_share=0.75, batch_share=0.5
    )

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            batch = await team_key(http, served, "etl", "batch")
            critical = await team_key(http, served, "checkout", "critical")
            running = [chat(http, served, batch), chat(http, served, batch)]
            await held.arrived(2)
            shed = await http.post(root(served) + "/v1/chat/completions", headers=auth(batch), json=CHAT)
            assert shed.status_code == 503 and shed.json()["error"]["code"] == "overloaded"

            running += [chat(http, served, critical), chat(http, served, critical)]
            await held.arrived(2)  # the critical team takes the headroom batch may not use
            assert (await state(http, served))["refused"] == {"critical": 0, "standard": 0, "batch": 1}
            held.release(4)
            assert [a.status_code for a in await asyncio.gather(*running)] == [200] * 4

    asyncio.run(scenario())


def test_a_keys_own_class_overrides_its_teams(serve: Any, upstream: Upstream) -> None:
    held = Held(upstream, 3)
    served = serve(
        initial_limit=4, min_limit=4, max_limit=4, queue_ratio=0, standard_share=0.75, batch_share=0.5
    )

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            batch = await team_key(http, served, "etl", "batch")
            team_id = (await http.get(root(served) + "/admin/teams", headers=auth())).json()["data"][0]["id"]
            own = await http.post(
                root(served) + "/admin/keys",
                headers=auth(),
                json={"name": "urgent", "team_id": team_id, "metadata": {"priority": "standard"}},
            )
            standard = own.json()["key"]
            running = [chat(http, served, batch), chat(http, served, batch)]
            await held.arrived(2)
            assert (
                await http.post(root(served) + "/v1/chat/completions", headers=auth(batch), json=CHAT)
            ).status_code == 503
            running.append(chat(http, served, standard))  # the same team, but the key is standard
            await held.arrived(1)
            assert (await state(http, served))["refused"]["batch"] == 1
            held.release(3)
            assert [a.status_code for a in await asyncio.gather(*running)] == [200] * 3

    asyncio.run(scenario())


def test_token_counting_and_the_passthrough_are_shed_under_overload(serve: Any, upstream: Upstream) -> None:
    held = Held(upstream, 1)
    served = serve(initial_limit=1, min_limit=1, max_limit=1, queue_ratio=0)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            running = chat(http, served)
            await held.arrived(1)
            passed = await http.get(root(served) + "/passthrough/up/files", headers=auth())
            assert passed.status_code == 503 and passed.headers["retry-after"] == "1"
            assert passed.json()["error"]["code"] == "overloaded"
            counted = await http.post(
                root(served) + "/v1/messages/count_tokens",
                headers={"x-api-key": MASTER, "anthropic-version": "2023-06-01"},
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert counted.status_code == 503 and counted.headers["retry-after"] == "1"
            assert counted.json()["type"] == "error"
            assert counted.json()["error"]["type"] == "overloaded_error"
            assert (await state(http, served))["refused"]["standard"] == 2
            held.release(1)
            assert (await running).status_code == 200

            upstream.reply_json({"object": "list", "data": [], "has_more": False})
            assert (await http.get(root(served) + "/passthrough/up/files", headers=auth())).status_code == 200
            again = await http.post(
                root(served) + "/v1/messages/count_tokens",
                headers={"x-api-key": MASTER, "anthropic-version": "2023-06-01"},
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert again.status_code == 200 and again.json()["input_tokens"] > 0

    asyncio.run(scenario())
    assert len(upstream.requests) == 2  # the chat and the pass-through after the overload
