"""Budgets shared by every instance of a deployment (`storage.redis_url`): two real gateways on one
PostgreSQL database and the Redis server at 127.0.0.1:6379. Fifty requests at once, half through
each instance, against a team budget worth five: five are served in all, the spend recorded never
exceeds the budget. Without Redis (not configured, or unreachable) each instance enforces its share
of the budget (the instances register in the database), so together they never overspend; what
an instance spent while Redis was away reaches Redis when it answers again. A counter Redis lost is
seeded from the ledger; a killed instance's reservations lapse; windows follow Redis's clock, not
an instance's; drift between counters and ledger is corrected."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import yaml

from turnout.spend.budget_counters import APPLY
from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
from support.gateway import MASTER_KEY, Gateway, settings_for
from support.paid_model import PER_REQUEST, REPLY, ask, paid_models
from support.process import start_serve
from support.tcp_forwarder import TcpForwarder

REDIS = (os.environ.get("TURNOUT_TEST_REDIS_HOST", "127.0.0.1"), 6379)
PROPAGATION = 10.0  # s: budgets set on one instance are read by the others every 5 s


ENVIRON = {"TURNOUT_KEY_HASH_SECRET": "shared-secret-of-the-pair"}
SLOW = "slow"  # an alias whose answers take a minute: its requests hold their reservations


def doc(database: str, redis_port: int | None, **storage: Any) -> dict[str, Any]:
    redis_url = {} if redis_port is None else {"redis_url": f"redis://{REDIS[0]}:{redis_port}/0"}
    return {
        "storage": {
            "database_url": f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{database}",
            **redis_url,
            **storage,
        },
        "providers": {"fake": {"type": "fake"}},
        "models": {
            **paid_models(),
            SLOW: {**paid_models()["paid"], "model": f"m?latency=60s&reply={REPLY.replace(' ', '+')}"},
        },
    }


def admin(gateway: Gateway, method: str, path: str, **body: Any) -> dict[str, Any]:
    response = httpx.request(
        method,
        gateway.root_url + path,
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json=body or None,
        timeout=20,
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def status(gateway: Gateway, budget: str) -> dict[str, Any]:
    """A budget's current window as an instance shows it (with Redis: every instance's use)."""
    return admin(gateway, "GET", f"/admin/budgets/{budget}")


class Pair:
    """Two gateways on one fresh database; each reaches Redis through its own forwarder, which a
    test can cut (what a Redis outage looks like to that instance) — or no Redis at all."""

    def __init__(self, tmp_path: Path, *, with_redis: bool = True, **storage: Any) -> None:
        self.database = asyncio.run(create_postgres_database())
        self.forwarders = [TcpForwarder(*REDIS).start() for _ in range(2)] if with_redis else []
        ports = [f.port for f in self.forwarders] or [None, None]
        self.docs = [doc(self.database, port, **storage) for port in ports]
        self.gateways = [
            Gateway(settings_for(d, tmp_path / name, ENVIRON))
            for d, name in zip(self.docs, ("a", "b"), strict=True)
        ]
        for gateway in self.gateways:
            gateway.start()
        # the first learns of the second at its next beat (every 5 s)
        until(
            lambda: all(g.services.instances.live == 2 for g in self.gateways),
            15,
            "the instances did not see each other",
        )

    def admin(self, method: str, path: str, **body: Any) -> dict[str, Any]:
        return admin(self.gateways[0], method, path, **body)

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

    def status(self, budget: str, on: int = 0) -> dict[str, Any]:
        return status(self.gateways[on], budget)

    def ledger_spent(self, team: str) -> int:
        async def spent() -> int:
            database = await Database.open(f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{self.database}")
            try:
                return sum(r["cost_micros"] for r in await LedgerStore(database).entries(team_id=team))
            finally:
                await database.close()

        return asyncio.run(spent())


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    pair = Pair(tmp_path)
    yield pair
    pair.close()


def until(condition: Any, seconds: float, what: str) -> None:
    """Wait for something the gateways do on their own timers (a deadline, not a guess)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def ready(gateway: Gateway) -> dict[str, Any]:
    return httpx.get(gateway.root_url + "/health/ready", timeout=20).json()  # type: ignore[no-any-return]


def counters(budget: str) -> list[str]:
    """The Redis keys of a budget's windows (the test's own view of Redis)."""
    with redis.Redis(*REDIS) as client:
        return [k.decode() for k in client.scan_iter(f"turnout:budget:{budget}:*")]


def burst(pair: Pair, key: str, n: int) -> list[str]:
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: ask(pair.gateways[i % 2], key), range(n)))


def test_fifty_at_once_on_two_instances_against_a_budget_worth_five(pair: Pair) -> None:
    budget, (key, _), team = pair.team_budget(5)
    results = burst(pair, key, 50)
    assert results.count("ok") == 5 and results.count("insufficient_quota") == 45
    shown = pair.status(budget)
    assert shown["spent_micros"] == 5 * PER_REQUEST and shown["remaining_micros"] == 0
    for gateway in pair.gateways:
        gateway.stop()  # the ledger: every instance's journal moved into the database

    async def spent() -> int:
        database = await Database.open(f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{pair.database}")
        try:
            return sum(r["cost_micros"] for r in await LedgerStore(database).entries(team_id=team))
        finally:
            await database.close()

    assert asyncio.run(spent()) == 5 * PER_REQUEST  # never more than the budget


def test_while_redis_is_unreachable_each_instance_enforces_its_share(pair: Pair) -> None:
    _, (key, _), _ = pair.team_budget(3)
    for forwarder in pair.forwarders:
        forwarder.cut()
    results = burst(pair, key, 20)
    # nothing refused for want of Redis, and never more than the budget: each instance holds its
    # half (1.5 requests' worth: one request each)
    assert results.count("ok") == 2 and results.count("insufficient_quota") == 18, results
    assert all(
        g.services.budgets.shared is not None and g.services.budgets.shared.down for g in pair.gateways
    )
    assert "Redis is unreachable" in ready(pair.gateways[0])["warnings"][0]


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


def test_without_redis_instances_on_one_database_each_enforce_their_share(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="turnout"):
        pair = Pair(tmp_path, with_redis=False)
    try:
        assert "2 turnout instances share this database without storage.redis_url" in caplog.text
        for gateway in pair.gateways:
            state = ready(gateway)
            assert state["status"] == "ready" and state["instances"] == 2
            assert "set storage.redis_url to share them exactly" in state["warnings"][0]
        _, (key, _), team = pair.team_budget(5)
        results = burst(pair, key, 50)
        # each instance holds half of a budget worth five (two requests each): never more in all
        assert results.count("ok") == 4 and results.count("insufficient_quota") == 46, results
        for gateway in pair.gateways:
            gateway.stop()
        assert pair.ledger_spent(team) == 4 * PER_REQUEST
    finally:
        pair.close()


def test_spend_while_redis_was_unreachable_is_added_to_redis_when_it_answers(pair: Pair) -> None:
    budget, (key, _), team = pair.team_budget(6)
    assert ask(pair.gateways[1], key) == "ok"  # the window's counter is in Redis
    pair.forwarders[0].cut()  # the first instance loses Redis; the second keeps it
    assert [ask(pair.gateways[0], key) for _ in range(2)] == ["ok", "ok"]  # within its half
    assert pair.gateways[0].services.budgets.shared.down  # type: ignore[union-attr]
    pair.forwarders[0].reopen()
    until(
        lambda: pair.status(budget, on=1)["spent_micros"] == 3 * PER_REQUEST,
        20,
        "the spend made without Redis did not reach it",
    )
    results = burst(pair, key, 50)
    assert results.count("ok") == 3, results  # 1 + 2 + 3: the budget, and no more
    for gateway in pair.gateways:
        gateway.stop()
    assert pair.ledger_spent(team) == 6 * PER_REQUEST


def test_a_settlement_whose_answer_was_lost_is_not_counted_twice(pair: Pair) -> None:
    """Redis applies a batch of settlements but its answer never comes back (the client times out):
    the batch is sent again, and Redis, which knows it applied that batch, does not count it twice."""
    budget, (key, _), _team = pair.team_budget(5)
    gateway = pair.gateways[0]
    settling = gateway.services.budgets.sharing.settling  # type: ignore[union-attr]
    pair.forwarders[0].lose_answer_to(hashlib.sha1(APPLY.encode()).hexdigest().encode())
    assert ask(gateway, key) == "ok"
    until(lambda: gateway.call(lambda: settling.pending) == 0, 30, "the settlement was never sent again")
    (window,) = [k for k in counters(budget) if not k.endswith((":due", ":lock"))]
    with redis.Redis(*REDIS) as client:
        assert client.hmget(window, "spent", "held") == [str(PER_REQUEST).encode(), b"0"]
    assert pair.status(budget)["remaining_micros"] == 4 * PER_REQUEST
    assert ask(gateway, key) == "ok"  # and later batches count as ever
    until(lambda: gateway.call(lambda: settling.pending) == 0, 30, "the next settlement was not sent")
    assert pair.status(budget)["spent_micros"] == 2 * PER_REQUEST


def test_a_counter_redis_lost_is_seeded_from_the_ledger(pair: Pair) -> None:
    budget, (key, _), team = pair.team_budget(5)
    assert [ask(pair.gateways[i % 2], key) for i in range(3)] == ["ok"] * 3
    until(lambda: pair.ledger_spent(team) == 3 * PER_REQUEST, 20, "the ledger did not get the spend")
    with redis.Redis(*REDIS) as client:
        assert client.delete(*counters(budget))  # flushed, or evicted under memory pressure
    results = burst(pair, key, 50)
    # not either instance's own view (one or two requests): the ledger's three
    assert results.count("ok") == 2, results
    for gateway in pair.gateways:
        gateway.stop()
    assert pair.ledger_spent(team) == 5 * PER_REQUEST


def credit_held(team: str) -> int:
    """What a prepaid team's shared credit counter holds for requests in flight (unpruned)."""
    with redis.Redis(*REDIS) as client:
        return int(client.hget(f"turnout:budget:credit:{team}:0", "held") or 0)


@pytest.mark.parametrize("holder", ["budget", "credit"])
def test_reservations_of_a_killed_instance_lapse(tmp_path: Path, holder: str) -> None:
    """An instance killed with requests in flight: what they reserved in a budget or in a prepaid
    team's credit is free again within the reservations' lapse (2 s here), not at the end of the
    window (never, for credit)."""
    database = asyncio.run(create_postgres_database())
    storage = {"reservation_lapse": "2s"}
    survivor = Gateway(settings_for(doc(database, REDIS[1], **storage), tmp_path / "b", ENVIRON)).start()
    killed = None
    try:
        team = admin(survivor, "POST", "/admin/teams", name="t")["id"]
        key = admin(survivor, "POST", "/admin/keys", name="k", team_id=team)["key"]
        limit = str(5 * PER_REQUEST / 1_000_000)
        if holder == "budget":
            budget = admin(
                survivor, "POST", "/admin/budgets", scope="team", subject_id=team, period="daily", limit=limit
            )["id"]
            held_all = lambda: status(survivor, budget)["remaining_micros"] == 0  # noqa: E731
        else:
            admin(survivor, "POST", f"/admin/teams/{team}/billing", prepaid=True)
            admin(survivor, "POST", f"/admin/teams/{team}/credits", amount=limit)
            held_all = lambda: credit_held(team) == 5 * PER_REQUEST  # noqa: E731
        config = tmp_path / "a.yaml"
        config.write_text(yaml.safe_dump(doc(database, REDIS[1], **storage, data_dir=str(tmp_path / "a"))))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "OPENAI_"))}
        env |= {**ENVIRON, "TURNOUT_MASTER_KEY": MASTER_KEY, "TURNOUT_LOG_LEVEL": "warning"}
        killed = start_serve(config, env)
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            held = [pool.submit(ask, killed, key, SLOW, 90) for _ in range(5)]
            until(held_all, 20, "nothing was reserved")
            assert ask(survivor, key) == "insufficient_quota"  # all of it is held
            killed.stop(signal.SIGKILL)
            for request in held:
                with pytest.raises(openai.APIConnectionError):  # it died with the process
                    request.result()
        if holder == "budget":
            until(
                lambda: status(survivor, budget)["remaining_micros"] == 5 * PER_REQUEST,
                15,
                "the killed instance's reservations did not lapse",
            )
            assert [ask(survivor, key) for _ in range(6)] == ["ok"] * 5 + ["insufficient_quota"]
        else:  # (a refusal spends nothing: asking until one is served takes one request's worth)
            until(lambda: ask(survivor, key) == "ok", 15, "the killed instance's holds did not lapse")
            assert [ask(survivor, key) for _ in range(5)] == ["ok"] * 4 + ["insufficient_quota"]
    finally:
        if killed is not None:
            killed.stop(signal.SIGKILL)
        survivor.stop()
        asyncio.run(drop_postgres_database(database))


def test_windows_follow_redis_clock_not_an_instance_clock(pair: Pair) -> None:
    """One instance's clock a day ahead (set by the test on that instance's clock source): without
    a shared clock it would spend from tomorrow's budget, and the pair would serve twice the limit."""
    budget, (key, _), team = pair.team_budget(5)
    ahead = pair.gateways[1].services.clock
    pair.gateways[1].call(lambda: setattr(ahead, "local", lambda: time.time() + 86400))
    results = burst(pair, key, 50)
    assert results.count("ok") == 5, results
    assert len([k for k in counters(budget) if not k.endswith((":due", ":lock"))]) == 1  # one window
    for gateway in pair.gateways:
        gateway.stop()
    assert pair.ledger_spent(team) == 5 * PER_REQUEST


def test_drift_between_a_counter_and_the_ledger_is_corrected_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pair = Pair(tmp_path, reconcile_interval="1s")
    try:
        budget, (key, _), team = pair.team_budget(5)
        assert [ask(pair.gateways[0], key) for _ in range(2)] == ["ok", "ok"]
        until(lambda: pair.ledger_spent(team) == 2 * PER_REQUEST, 20, "the ledger did not get the spend")
        (window,) = [k for k in counters(budget) if not k.endswith((":due", ":lock"))]
        with caplog.at_level(logging.WARNING, logger="turnout.budgets"):
            with redis.Redis(*REDIS) as client:
                client.hincrby(window, "spent", -2 * PER_REQUEST)  # spend the counter lost
            until(
                lambda: pair.status(budget)["spent_micros"] == 2 * PER_REQUEST,
                20,
                "the drift was not corrected",
            )
            corrected = f"the counter is corrected by +{2 * PER_REQUEST} µ$"
            until(lambda: corrected in caplog.text, 5, "the correction was not logged")
        results = burst(pair, key, 50)
        assert results.count("ok") == 3, results
    finally:
        pair.close()


def test_without_redis_windows_follow_the_database_clock_not_an_instance_clock(tmp_path: Path) -> None:
    """Without Redis, an instance whose clock jumps a day ahead keeps spending from today's window
    once it has read the database's clock (every 5 s), rather than from a fresh one."""
    pair = Pair(tmp_path, with_redis=False)
    try:
        _, (key, _), team = pair.team_budget(4)
        assert burst(pair, key, 10).count("ok") == 4  # two each: both shares used up
        clock = pair.gateways[1].services.clock
        pair.gateways[1].call(lambda: setattr(clock, "local", lambda: time.time() + 86400))
        until(lambda: abs(clock.offset + 86400) < 60, 15, "the database's clock was not read")
        assert burst(pair, key, 10).count("ok") == 0
        for gateway in pair.gateways:
            gateway.stop()
        assert pair.ledger_spent(team) == 4 * PER_REQUEST
    finally:
        pair.close()
