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
import pytest

from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.gateway import MASTER_KEY, Gateway, settings_for
from support.paid_model import PER_REQUEST, ask, paid_models


def doc(data: Path) -> dict[str, Any]:
    return {
        "storage": {"data_dir": str(data)},
        "providers": {"fake": {"type": "fake"}},
        "models": paid_models(),
    }


def test_fifty_at_once_against_a_budget_worth_five(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gateway = Gateway(settings_for(doc(data), data)).start()
    with httpx.Client(timeout=20) as http:
        key = http.post(
            gateway.root_url + "/admin/keys",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            json={"name": "capped", "max_budget": str(5 * PER_REQUEST / 1_000_000)},
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
    assert len(rows) == 5 and sum(r["cost_micros"] for r in rows) == 5 * PER_REQUEST  # never more

    again = Gateway(settings_for(doc(data), data)).start()  # the spend is remembered
    try:
        assert ask(again, key["key"]) == "insufficient_quota"
        assert ask(again, MASTER_KEY) == "ok"  # an unbudgeted key is not held back
    finally:
        again.stop()


def test_a_team_budget_holds_all_of_its_keys_together(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gateway = Gateway(settings_for(doc(data), data)).start()
    try:
        with httpx.Client(base_url=gateway.root_url, timeout=20) as http:

            def post(path: str, **body: Any) -> dict[str, Any]:
                response = http.post(path, headers={"authorization": f"Bearer {MASTER_KEY}"}, json=body)
                assert response.status_code == 200, response.text
                return response.json()  # type: ignore[no-any-return]

            team = post("/admin/teams", name="red")["id"]
            keys = [post("/admin/keys", name=f"k{i}", team_id=team)["key"] for i in range(2)]
            budget = post(
                "/admin/budgets",
                scope="team",
                subject_id=team,
                period="daily",
                timezone="Europe/Paris",
                limit=str(5 * PER_REQUEST / 1_000_000),
                soft_limit=str(3 * PER_REQUEST / 1_000_000),
            )
            assert budget["spent_micros"] == 0 and budget["soft_limit_reached"] is False
            with concurrent.futures.ThreadPoolExecutor(50) as pool:
                results = list(pool.map(lambda i: ask(gateway, keys[i % 2]), range(50)))
            assert results.count("ok") == 5 and results.count("insufficient_quota") == 45
            status = http.get(
                f"/admin/budgets/{budget['id']}", headers={"authorization": f"Bearer {MASTER_KEY}"}
            ).json()
            assert status["spent_micros"] == 5 * PER_REQUEST and status["reserved_micros"] == 0
            assert status["remaining_micros"] == 0 and status["soft_limit_reached"] is True
            with (
                openai.OpenAI(base_url=gateway.base_url, api_key=keys[0], max_retries=0) as client,
                pytest.raises(openai.RateLimitError, match=f"team '{team}' daily budget"),
            ):
                client.chat.completions.create(model="paid", messages=[{"role": "user", "content": "hi"}])
            assert ask(gateway, MASTER_KEY) == "ok"  # outside the team: not held back
    finally:
        gateway.stop()
