"""GET /admin/spend over real HTTP: after a known workload its sums are the ledger's exactly, by
team and model; hour and day buckets start and end where they should; each caller reads only
what is theirs (a team's keys their team, a key of no team itself: asking beyond is 403); bad
parameters get a 400 naming them; long lists come in pages; and `turnout spend report` asks it."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from turnout.domain.ledger_entry import LedgerEntry
from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, Gateway, settings_for

PRICED = {"input": "1.00", "output": "2.00"}  # USD per million tokens
DAY = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class World:
    def __init__(self, gateway: Gateway, http: httpx.Client) -> None:
        self.gateway, self.http = gateway, http
        self.red = self.ok("POST", "/admin/teams", name="red")["id"]
        self.blue = self.ok("POST", "/admin/teams", name="blue")["id"]
        self.keys = {
            "red_member": self.key("red_member", "member", self.red),
            "red_admin": self.key("red_admin", "admin", self.red),
            "blue_admin": self.key("blue_admin", "admin", self.blue),
            "loner": self.key("loner", "member", None),
            "org_viewer": self.key("org_viewer", "viewer", None),
        }

    def ok(self, method: str, path: str, key: str = MASTER_KEY, **body: Any) -> Any:
        answer = self.call(method, path, key, body or None)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def call(self, method: str, path: str, key: str = MASTER_KEY, body: Any = None) -> httpx.Response:
        return self.http.request(method, path, headers={"authorization": f"Bearer {key}"}, json=body)

    def key(self, name: str, role: str, team: str | None) -> tuple[str, str]:
        made = self.ok("POST", "/admin/keys", name=name, role=role, team_id=team)
        return made["key"], made["id"]

    def spend(self, key: str = MASTER_KEY, **query: str) -> dict[str, Any]:
        answer = self.http.get("/admin/spend", params=query, headers={"authorization": f"Bearer {key}"})
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def chat(self, who: str, model: str, times: int) -> None:
        with openai.OpenAI(
            base_url=self.gateway.base_url, api_key=self.keys[who][0], max_retries=0, timeout=20
        ) as sdk:
            for _ in range(times):
                sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi there"}])

    def flush(self) -> None:
        """Move the ledger journal into the database now (the gateway does it every second)."""
        assert self.gateway.loop is not None
        asyncio.run_coroutine_threadsafe(self.gateway.services.spend.flush(), self.gateway.loop).result(10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("spend-api")
    doc: dict[str, Any] = {
        "providers": {"fake": {"type": "fake"}, "other": {"type": "fake"}},
        "models": {
            "chat": {"provider": "fake", "model": "m", "price": PRICED},
            "big": {"provider": "other", "model": "m?reply=a longer answer than the other", "price": PRICED},
        },
    }
    gateway = Gateway(settings_for(doc, data)).start()
    with httpx.Client(base_url=gateway.root_url, timeout=30) as http:
        w = World(gateway, http)
        w.chat("red_member", "chat", 3)
        w.chat("red_admin", "big", 1)
        w.chat("blue_admin", "chat", 2)
        w.chat("loner", "big", 1)
        w.flush()
        yield w
    gateway.stop()


def by_group(report: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(item["group"].values()): item for item in report["data"]}


def test_sums_after_a_known_workload_are_the_ledgers(world: World) -> None:
    rows = ledger_rows(Path(world.gateway.settings.storage.data_dir))
    assert len(rows) == 7
    report = world.spend(group_by="team,model", since="1h")
    groups = by_group(report)
    assert set(groups) == {
        (world.red, "m"),
        (world.red, "m?reply=a longer answer than the other"),
        (world.blue, "m"),
        (None, "m?reply=a longer answer than the other"),
    }
    for (team, model), item in groups.items():
        mine = [r for r in rows if r["team_id"] == team and r["model"] == model]
        assert item["requests"] == item["attempts"] == len(mine)
        assert item["failed"] == 0
        for figure in ("input_tokens", "output_tokens", "cost_micros"):
            assert item[figure] == sum(r[figure] for r in mine), figure
        assert item["cost_micros"] > 0 and item["cost_usd"] == f"0.{item['cost_micros']:06d}"
    assert groups[(world.red, "m")]["requests"] == 3 and groups[(world.blue, "m")]["requests"] == 2
    totals = report["totals"]
    assert totals["requests"] == 7 and totals["cost_micros"] == sum(r["cost_micros"] for r in rows)
    by_provider = by_group(world.spend(group_by="provider", since="1h"))
    assert {p: i["requests"] for (p,), i in by_provider.items()} == {"fake": 5, "other": 2}


def test_each_caller_reads_only_what_is_theirs(world: World) -> None:
    blue = world.spend(world.keys["blue_admin"][0], group_by="team", since="1h")
    assert [item["group"]["team"] for item in blue["data"]] == [world.blue]
    assert blue["totals"]["requests"] == 2 and blue["filters"] == {"team": world.blue}
    refused = world.http.get(
        "/admin/spend",
        params={"team": world.red},
        headers={"authorization": f"Bearer {world.keys['blue_admin'][0]}"},
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert refused.json()["error"]["param"] == "team"
    by_name = world.call("GET", "/admin/spend?team=red", world.keys["blue_admin"][0])  # a name: the same
    assert by_name.status_code == 403
    red = world.spend(world.keys["red_member"][0], group_by="key", since="1h")  # members read their team
    assert {item["group"]["key"]: item["requests"] for item in red["data"]} == {
        world.keys["red_member"][1]: 3,
        world.keys["red_admin"][1]: 1,
    }
    loner = world.spend(world.keys["loner"][0], group_by="team", since="1h")
    assert loner["totals"]["requests"] == 1 and loner["filters"] == {"key": world.keys["loner"][1]}
    assert (
        world.call(
            "GET", f"/admin/spend?key={world.keys['red_member'][1]}", world.keys["loner"][0]
        ).status_code
        == 403
    )
    everything = world.spend(since="1h")
    assert everything["totals"]["requests"] == 7 and everything["filters"] == {}
    viewer = world.spend(world.keys["org_viewer"][0], since="1h")  # reads what the organisation's admins read
    assert viewer["totals"]["requests"] == 7 and viewer["filters"] == {}


def test_hour_and_day_buckets_start_and_end_on_the_boundary(world: World) -> None:
    def at(text: str) -> float:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()

    def entry(n: int, when: str, cost: int) -> LedgerEntry:
        return LedgerEntry(
            request_id=f"edge-{n}",
            at=at(when),
            api="chat",
            key_id="k-edge",
            team_id="team-edge",
            model="edge",
            cost_micros=cost,
            attempts=1,
        )

    async def fill() -> None:
        database = await Database.open(world.gateway.settings.storage.database_url)
        try:
            await LedgerStore(database).insert(
                [
                    entry(1, "2026-01-01 10:29:59.999999", 1),
                    entry(2, "2026-01-01 10:59:59.999999", 10),
                    entry(3, "2026-01-01 11:00:00", 100),
                    entry(4, "2026-01-01 23:59:59.5", 1000),
                    entry(5, "2026-01-02 00:00:00", 10000),
                ]
            )
        finally:
            await database.close()

    asyncio.run(fill())
    hours = world.spend(
        team="team-edge", interval="hour", since="2026-01-01T10:30:00", until="2026-01-01T12:00:00"
    )
    assert [(item["bucket"], item["cost_micros"]) for item in hours["data"]] == [
        (at("2026-01-01 10:00:00"), 10),  # 10:29:59.999999 is before the span
        (at("2026-01-01 11:00:00"), 100),
    ]
    days = world.spend(team="team-edge", interval="day", since="2026-01-01", until="2026-01-03")
    assert [(item["bucket"], item["cost_micros"]) for item in days["data"]] == [
        (at("2026-01-01 00:00:00"), 1111),
        (at("2026-01-02 00:00:00"), 10000),
    ]
    assert days["totals"]["cost_micros"] == 11111 and days["totals"]["requests"] == 5
    until_midnight = world.spend(team="team-edge", since="2026-01-01T11:00:00", until="2026-01-02T00:00:00")
    assert until_midnight["totals"]["cost_micros"] == 1100  # until is excluded


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("group_by=colour", "group_by"),
        ("group_by=team,team", "group_by"),
        ("interval=week", "interval"),
        ("since=last%20tuesday", "since"),
        ("since=2026-01-02&until=2026-01-01", "since"),
        ("interval=hour&since=60d", "interval"),
        ("teem=red", "teem"),
        ("team=", "team"),
        ("limit=0", "limit"),
        ("after=not-a-cursor", "after"),
    ],
)
def test_bad_parameters_get_a_400_naming_them(world: World, query: str, param: str) -> None:
    answer = world.call("GET", f"/admin/spend?{query}")
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_long_lists_come_in_pages(world: World) -> None:
    whole = world.spend(group_by="key,model", since="1h")["data"]
    assert len(whole) == 4
    seen, after = [], None
    while True:
        page = world.spend(group_by="key,model", since="1h", limit="1", **({"after": after} if after else {}))
        seen += page["data"]
        if not page["has_more"]:
            break
        after = page["next_cursor"]
    assert seen == whole


def test_the_cli_report_asks_the_gateway(world: World) -> None:
    from click.testing import CliRunner

    from turnout.cli.main import main

    runner = CliRunner()
    args = [
        "spend",
        "report",
        "--url",
        world.gateway.root_url,
        "--by",
        "team",
        "--since",
        "1h",
        "--format",
        "csv",
    ]
    result = runner.invoke(main, [*args, "--key", world.keys["blue_admin"][0]])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("team,requests,failed,")
    assert lines[1].startswith(f"{world.blue},2,0,") and lines[2].startswith("total,2,0,")
    assert len(lines) == 3
    everything = runner.invoke(main, [*args[:-2], "--key", MASTER_KEY])
    assert everything.exit_code == 0 and "total" in everything.output
    assert f"{world.red} " in everything.output or world.red in everything.output
    denied = runner.invoke(main, [*args, "--key", "sk-turnout-not-a-key"])
    assert denied.exit_code == 1 and "sk-turnout-not-a-key" not in denied.output
