"""Rehearsals across instances sharing one PostgreSQL database: a game day started on one instance
takes its provider out on the other too, and when its affected requests fail on one, it is rolled
back on both; a mirror's rehearsal budget spent through one instance stops the other's shadows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
from support.gateway import MASTER_KEY, Gateway, settings_for

PROPAGATION = 10.0  # seconds: game days are read every second, rehearsal spend every 5
HASH_SECRET = "test-key-hash-secret-shared-by-both-instances"


class Pair:
    def __init__(self, tmp_path: Path, models: dict[str, Any]) -> None:
        self.database = asyncio.run(create_postgres_database())
        doc = {
            "storage": {"database_url": f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{self.database}"},
            "governance": {"two_person_rule": []},
            "providers": {"alpha": {"type": "fake"}, "beta": {"type": "fake"}},
            "models": models,
        }
        environ = {"TURNOUT_KEY_HASH_SECRET": HASH_SECRET}
        self.a = Gateway(settings_for(doc, tmp_path / "a", environ))
        self.b = Gateway(settings_for(doc, tmp_path / "b", environ))
        try:
            self.a.start()
            self.b.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for gateway in (self.b, self.a):
            gateway.stop()
        asyncio.run(drop_postgres_database(self.database))


def answer(gateway: Gateway, model: str) -> str:
    """The deployment that answered, or the status of the error."""
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as sdk:
        try:
            raw = sdk.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "hi"}]
            )
        except openai.APIStatusError as error:
            return str(error.status_code)
    return raw.headers["x-turnout-deployment"]


def admin(gateway: Gateway, method: str, path: str, **body: Any) -> Any:
    response = httpx.request(
        method,
        gateway.root_url + path,
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json=body or None,
        timeout=20,
    )
    assert response.status_code == 200, response.text
    return response.json()


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PROPAGATION
    while not condition():
        assert time.monotonic() < deadline, "never propagated"
        time.sleep(0.05)


@pytest.fixture
def game_day_pair(tmp_path: Path) -> Iterator[Pair]:
    pair = Pair(tmp_path, {"solo": {"provider": "alpha", "model": "m"}})
    yield pair
    pair.close()


def test_a_game_day_and_its_rollback_reach_every_instance(game_day_pair: Pair) -> None:
    a, b = game_day_pair.a, game_day_pair.b
    body = {"provider": "alpha", "share": 1.0, "duration": "1h", "error_rate": 0.5, "min_requests": 2}
    game_day = admin(a, "POST", "/admin/game-days", **body)
    assert answer(a, "solo") == "503"  # at once on the instance that started it
    until(lambda: answer(b, "solo") == "503")  # within a second or so on the other
    # a second affected request fails on a: past its threshold there, a rolls the game day back at
    # once, and b follows
    assert answer(a, "solo") == "503"
    assert answer(a, "solo") == "alpha/m"
    until(lambda: answer(b, "solo") == "alpha/m")
    (listed,) = admin(b, "GET", "/admin/game-days")["data"]
    assert listed["id"] == game_day["id"] and listed["state"] == "rolled_back"


def test_a_rehearsal_budget_spent_through_one_instance_stops_the_others_shadows(tmp_path: Path) -> None:
    models = {
        "chat": {
            "provider": "alpha",
            "model": "m",
            "price": {"input": "1000", "output": "2000"},
            "mirror": {
                "to": {
                    "provider": "beta",
                    "model": "candidate",
                    "price": {"input": "1000", "output": "2000"},
                },
                "share": 1.0,
                "budget": {"limit": "0.001", "period": "monthly"},
            },
        }
    }
    pair = Pair(tmp_path, models)
    try:
        a, b = pair.a, pair.b

        def shadows(gateway: Gateway) -> dict[str, float]:
            text = httpx.get(
                gateway.root_url + "/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10
            ).text
            found: dict[str, float] = {}
            for line in text.splitlines():
                if line.startswith("turnout_shadow_requests_total{"):
                    outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
                    found[outcome] = found.get(outcome, 0) + float(line.rsplit(" ", 1)[1])
            return found

        assert answer(a, "chat") == "alpha/m"
        until(lambda: shadows(a).get("answered") == 1)  # its cost is past the budget

        def b_stopped() -> bool:  # once b has read the rehearsal spend a recorded
            assert answer(b, "chat") == "alpha/m"
            return shadows(b).get("budget", 0) > 0

        until(b_stopped)
        assert shadows(b).get("answered", 0) <= 1  # at most the one it sent before it knew
    finally:
        pair.close()
