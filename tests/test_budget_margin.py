"""Exact at the margin: a budget worth five requests serves five of fifty sent at once, although
each request is first reserved at a cheap bound (its prompt at a token a byte) well above what it
costs. Before refusing, turnout counts the prompt exactly (o200k_base with OpenAI's documented
framing: the API reference's example is 19 prompt tokens, as the recorded answer reports), and
shrinks the cheap reservations it holds in that budget to their exact counts. Never more than the
budget is spent. On one instance (SQLite), and on two sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database, ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for
from support.upstream import Upstream, fixture_bytes

# The API reference's example request; its recorded answer (chat_completion.json) reports 19
# prompt tokens and 10 completion tokens.
MESSAGES = [
    {"role": "developer", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello!"},
]
PER_REQUEST = (19 + 10) * 1000  # µ$: a milli-dollar a token, in and out
SENT = 50
REDIS = (os.environ.get("TURNOUT_TEST_REDIS_HOST", "127.0.0.1"), 6379)
DEADLINE = 60.0


class HeldUpstream:
    """The OpenAI-format upstream, holding every answer until every request of the burst was
    either refused by turnout or received here (so the admitted ones are all in flight at once)."""

    def __init__(self) -> None:
        self.upstream = Upstream().start()
        self.gate = threading.Event()

        async def held(request: web.Request) -> web.StreamResponse:
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, DEADLINE)
            return web.Response(body=fixture_bytes("chat_completion.json"), content_type="application/json")

        self.upstream.then(held, times=SENT)

    def provider(self) -> dict[str, Any]:
        return {"type": "openai", "base_url": self.upstream.base_url, "api_key": "env:UPSTREAM_KEY"}

    def stop(self) -> None:
        self.gate.set()
        self.upstream.stop()


def models() -> dict[str, Any]:
    return {
        "mini": {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "price": {"input": "1000", "output": "1000"},  # a milli-dollar a token
        }
    }


def ask(gateway: Gateway, key: str) -> str:
    """'ok', or the error code of a 429 (insufficient_quota when a budget refused)."""
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=DEADLINE) as client:
        try:
            client.chat.completions.create(model="mini", messages=MESSAGES, max_tokens=10)  # type: ignore[arg-type]
            return "ok"
        except openai.RateLimitError as error:
            return str(error.body["code"])  # type: ignore[index]


def burst(held: HeldUpstream, gateways: list[Gateway], key: str) -> list[str]:
    """Fifty requests at once, spread over `gateways`; the upstream answers once each was refused
    or reached it."""
    with concurrent.futures.ThreadPoolExecutor(SENT) as pool:
        futures = [pool.submit(ask, gateways[i % len(gateways)], key) for i in range(SENT)]
        deadline = time.monotonic() + DEADLINE
        while sum(f.done() for f in futures) + len(held.upstream.requests) < SENT:
            assert time.monotonic() < deadline, "requests neither refused nor sent upstream"
            concurrent.futures.wait(futures, timeout=0.05)
        held.gate.set()
        return [f.result() for f in futures]


def capped_key(gateway: Gateway, requests: int) -> dict[str, Any]:
    response = httpx.post(
        gateway.root_url + "/admin/keys",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"name": "capped", "max_budget": str(requests * PER_REQUEST / 1_000_000)},
        timeout=20,
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def held() -> Iterator[HeldUpstream]:
    server = HeldUpstream()
    yield server
    server.stop()


def test_fifty_at_once_against_a_budget_worth_five_of_a_priced_prompt(
    tmp_path: Path, held: HeldUpstream
) -> None:
    data = tmp_path / "data"
    doc = {"providers": {"openai": held.provider()}, "models": models()}
    gateway = Gateway(settings_for(doc, data, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    try:
        key = capped_key(gateway, 5)
        results = burst(held, [gateway], key["key"])
    finally:
        gateway.stop()
    assert results.count("ok") == 5, results
    assert results.count("insufficient_quota") == SENT - 5
    rows = [r for r in ledger_rows(data) if r["key_id"] == key["id"]]
    assert [r["input_tokens"] for r in rows] == [19] * 5  # what the provider reported
    assert sum(r["cost_micros"] for r in rows) == 5 * PER_REQUEST  # the whole budget, never more


def test_fifty_at_once_on_two_instances_with_redis(tmp_path: Path, held: HeldUpstream) -> None:
    database = asyncio.run(create_postgres_database())
    url = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{database}"
    doc = {
        "storage": {"database_url": url, "redis_url": f"redis://{REDIS[0]}:{REDIS[1]}/0"},
        "providers": {"openai": held.provider()},
        "models": models(),
    }
    environ = {"UPSTREAM_KEY": UPSTREAM_KEY, "TURNOUT_KEY_HASH_SECRET": "shared-secret-of-the-pair"}
    gateways = [Gateway(settings_for(doc, tmp_path / name, environ)) for name in ("a", "b")]
    try:
        for gateway in gateways:
            gateway.start()
        key = capped_key(gateways[0], 5)
        results = burst(held, gateways, key["key"])
    finally:
        for gateway in gateways:
            gateway.stop()  # every instance's journal moved into the database

    async def spent() -> int:
        opened = await Database.open(url)
        try:
            return sum(r["cost_micros"] for r in await LedgerStore(opened).entries(key_id=key["id"]))
        finally:
            await opened.close()
            await drop_postgres_database(database)

    total = asyncio.run(spent())
    assert results.count("ok") == 5, results
    assert total == 5 * PER_REQUEST  # never more than the budget
