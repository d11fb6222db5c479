"""Budgets, exact under concurrency: the maximum cost is reserved before any provider is called,
so 50 requests at once against a budget worth 5 send exactly 5 upstream; the rest get 429
`insufficient_quota` (what OpenAI's clients expect), and the spend recorded never exceeds it."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any

import httpx
import openai

from turnout.providers.fake.responses import count_tokens
from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.gateway import MASTER_KEY, Gateway, settings_for

REPLY = "one two three four"
TOKENS = count_tokens(REPLY)  # the fake's count of its answer: what max_tokens must allow


def doc(data: Path) -> dict[str, Any]:
    return {
        "storage": {"data_dir": str(data)},
        "providers": {"fake": {"type": "fake"}},
        "models": {
            "paid": {
                "provider": "fake",
                "model": f"m?latency=300ms&reply={REPLY.replace(' ', '+')}",
                "price": {"input": "0", "output": "1000"},  # a milli-dollar an output token
            }
        },
    }


def ask(gateway: Gateway, key: str) -> str:
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20) as client:
        try:
            client.chat.completions.create(
                model="paid", messages=[{"role": "user", "content": "hi"}], max_tokens=TOKENS
            )
            return "ok"
        except openai.RateLimitError as error:
            return str(error.body["code"])  # type: ignore[index]


def test_fifty_at_once_against_a_budget_worth_five(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gateway = Gateway(settings_for(doc(data), data)).start()
    per_request = TOKENS * 1000  # µ$: reserved and charged alike
    with httpx.Client(timeout=20) as http:
        key = http.post(
            gateway.root_url + "/admin/keys",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            json={"name": "capped", "max_budget": str(5 * per_request / 1_000_000)},
        ).json()
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: ask(gateway, key["key"]), range(50)))
    assert results.count("ok") == 5
    assert results.count("insufficient_quota") == 45
    gateway.stop()

    async def spent() -> list[dict[str, Any]]:
        database = await Database.open(f"sqlite+aiosqlite:///{data}/turnout.db")
        try:
            return await LedgerStore(database).entries(key_id=key["id"])
        finally:
            await database.close()

    rows = asyncio.run(spent())
    assert len(rows) == 5 and sum(r["cost_micros"] for r in rows) == 5 * per_request  # never more

    again = Gateway(settings_for(doc(data), data)).start()  # the spend is remembered
    try:
        assert ask(again, key["key"]) == "insufficient_quota"
        assert ask(again, MASTER_KEY) == "ok"  # an unbudgeted key is not held back
    finally:
        again.stop()
