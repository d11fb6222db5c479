"""Budgets shared by every instance of a deployment (`storage.redis_url`): two real gateways on one
PostgreSQL database and the Redis server at 127.0.0.1:6379. Fifty requests at once, half through
each instance, against a team budget worth five: five are served in all, the spend recorded never
exceeds the budget. When Redis cannot be reached, each instance enforces the budget on its own
(nothing is refused for want of Redis); when it answers again, the instances share again."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
from support.gateway import MASTER_KEY, Gateway, settings_for
from support.paid_model import PER_REQUEST, ask, paid_models
from support.tcp_forwarder import TcpForwarder

REDIS = (os.environ.get("TURNOUT_TEST_REDIS_HOST", "127.0.0.1"), 6379)
PROPAGATION = 10.0  # s: budgets set on one instance are read by the others every 5 s


def doc(database: str, redis_port: int) -> dict[str, Any]:
    return {
        "storage": {
            "database_url": f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{database}",
            "redis_url": f"redis://{REDIS[0]}:{redis_port}/0",
        },
        "providers": {"fake": {"type": "fake"}},
        "models": paid_models(),
    }


class Pair:
    """Two gateways on one fresh database; each reaches Redis through its own forwarder, which a
    test can cut (what a Redis outage looks like to that instance)."""

    def __init__(self, tmp_path: Path) -> None:
        self.database = asyncio.run(create_postgres_database())
        self.forwarders = [TcpForwarder(*REDIS).start() for _ in range(2)]
        environ = {"TURNOUT_KEY_HASH_SECRET": "shared-secret-of-the-pair"}
        self.gateways = [
            Gateway(settings_for(doc(self.database, f.port), tmp_path / name, environ))
            for f, name in zip(self.forwarders, ("a", "b"), strict=True)
        ]
        for gateway in self.gateways:
            gateway.start()

    def admin(self, method: str, path: str, **body: Any) -> dict[str, Any]:
        response = httpx.request(
            method,
            self.gateways[0].root_url + path,
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            json=body or None,
            timeout=20,
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def team_budget(self, requests: int) -> tuple[str, list[str], str]:
        """A team with a key, a budget worth `requests` requests, known to both instances."""
        team = self.admin("POST", "/admin/teams", name=f"team-{time.monotonic_ns()}")["id"]
        key = self.admin("POST", "/admin/keys", name="k", team_id=team)["key"]
        limit = str(requests * PER_REQUEST / 1_000_000)
        budget = self.admin(
            "POST", "/admin/budgets", scope="team", subject_id=team, period="daily", limit=limit
        )
        deadline = time.monotonic() + PROPAGATION
        while not all(("team", team) in g.services.budgets.rules for g in self.gateways):
            assert time.monotonic() < deadline, "the budget did not reach the second instance"
            time.sleep(0.1)
        return budget["id"], [key, key], team

    def close(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        for forwarder in self.forwarders:
            forwarder.stop()
        asyncio.run(drop_postgres_database(self.database))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    pair = Pair(tmp_path)
    yield pair
    pair.close()


def burst(pair: Pair, key: str, n: int) -> list[str]:
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: ask(pair.gateways[i % 2], key), range(n)))


def test_fifty_at_once_on_two_instances_against_a_budget_worth_five(pair: Pair) -> None:
    budget, (key, _), team = pair.team_budget(5)
    results = burst(pair, key, 50)
    assert results.count("ok") == 5 and results.count("insufficient_quota") == 45
    status = pair.admin("GET", f"/admin/budgets/{budget}")
    assert status["spent_micros"] == 5 * PER_REQUEST and status["remaining_micros"] == 0
    for gateway in pair.gateways:
        gateway.stop()  # the ledger: every instance's journal moved into the database

    async def spent() -> int:
        database = await Database.open(f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{pair.database}")
        try:
            return sum(r["cost_micros"] for r in await LedgerStore(database).entries(team_id=team))
        finally:
            await database.close()

    assert asyncio.run(spent()) == 5 * PER_REQUEST  # never more than the budget


def test_without_redis_each_instance_enforces_the_budget_alone(pair: Pair) -> None:
    _, (key, _), _ = pair.team_budget(3)
    for forwarder in pair.forwarders:
        forwarder.cut()
    results = burst(pair, key, 20)
    # nothing refused for want of Redis: each instance holds the budget by itself (3 each at most)
    assert 3 <= results.count("ok") <= 6 and results.count("insufficient_quota") == 20 - results.count("ok")
    assert all(
        g.services.budgets.shared is not None and g.services.budgets.shared.down for g in pair.gateways
    )


def test_prepaid_credit_is_held_across_instances(pair: Pair) -> None:
    team = pair.admin("POST", "/admin/teams", name="prepaid")["id"]
    key = pair.admin("POST", "/admin/keys", name="k", team_id=team)["key"]
    pair.admin("POST", f"/admin/teams/{team}/billing", prepaid=True)
    pair.admin("POST", f"/admin/teams/{team}/credits", amount=str(5 * PER_REQUEST / 1_000_000))
    deadline = time.monotonic() + PROPAGATION
    while not all(g.services.billing.credited.get(team) == 5 * PER_REQUEST for g in pair.gateways):
        assert time.monotonic() < deadline, "the top-up did not reach the second instance"
        time.sleep(0.1)
    results = burst(pair, key, 50)
    # (were Redis to time out on a busy machine, each instance would decide alone: say so)
    redis_down = [g.services.billing.shared.down for g in pair.gateways if g.services.billing.shared]
    assert results.count("ok") == 5 and results.count("insufficient_quota") == 45, (results, redis_down)
    account = pair.admin("GET", f"/admin/teams/{team}/billing")
    assert account["balance_micros"] >= 0
