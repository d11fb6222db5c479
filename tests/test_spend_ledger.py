"""The spend ledger: every request a key makes lands in it once, keyed by turnout's request id,
with the deployment that served it, its tokens by kind and its cost in micro-dollars — through
every API, streamed or not, failed or not — and survives the gateway being killed."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from turnout.config.loader import ConfigError
from turnout.domain.ledger_entry import LedgerEntry
from turnout.spend.journal import Journal
from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for
from support.process import start_serve
from support.upstream import Upstream, fixture_bytes

USER = [{"role": "user", "content": "Hello"}]


def doc(upstream: Upstream, data_dir: Path, unknown_prices: str = "reject") -> dict[str, Any]:
    out: dict[str, Any] = {
        "routing": {"retries": {"attempts": 1}},
        "storage": {"data_dir": str(data_dir)},
        "providers": {
            "fake": {"type": "fake", "fake": {"chunks": 4}},
            "oa": {"type": "openai", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"},
            "local": {"type": "openai_compatible", "base_url": upstream.base_url},
        },
        "models": {
            "free": {"provider": "fake", "model": "m"},
            "down": {"provider": "fake", "model": "m?fail=503"},
            "gpt": {"provider": "oa", "model": "gpt-4o-2024-08-06"},
            "mine": {"provider": "local", "model": "my-model", "price": {"input": "1.00", "output": "2"}},
        },
    }
    out["spend"] = {"unknown_prices": unknown_prices}
    return out


@pytest.fixture
def client_for() -> Iterator[Callable[[Gateway], openai.OpenAI]]:
    clients: list[openai.OpenAI] = []

    def make(gateway: Gateway) -> openai.OpenAI:
        clients.append(
            openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)
        )
        return clients[-1]

    yield make
    for c in clients:
        c.close()


def test_every_request_lands_once_with_its_tokens_and_cost(
    upstream: Upstream, tmp_path: Path, client_for: Callable[[Gateway], openai.OpenAI]
) -> None:
    data = tmp_path / "data"
    gateway = Gateway(settings_for(doc(upstream, data), data, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    client = client_for(gateway)
    ids: dict[str, str] = {}
    upstream.reply_json(fixture_bytes("chat_completion.json"))  # 19 prompt + 10 completion tokens
    ids["gpt"] = client.chat.completions.with_raw_response.create(model="gpt", messages=USER).headers[
        "x-request-id"
    ]
    upstream.reply_json(fixture_bytes("chat_completion.json"))
    ids["mine"] = client.chat.completions.with_raw_response.create(model="mine", messages=USER).headers[
        "x-request-id"
    ]
    with client.chat.completions.with_streaming_response.create(
        model="free", messages=USER, stream=True, stream_options={"include_usage": True}
    ) as streamed:
        ids["stream"] = streamed.headers["x-request-id"]
        list(streamed.iter_lines())
    with anthropic.Anthropic(base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0) as claude:
        ids["messages"] = claude.messages.with_raw_response.create(
            model="free", max_tokens=50, messages=USER
        ).headers["x-request-id"]
    ids["responses"] = client.responses.with_raw_response.create(model="free", input="Hi").headers[
        "x-request-id"
    ]
    ids["embeddings"] = client.embeddings.with_raw_response.create(model="free", input="Hi").headers[
        "x-request-id"
    ]
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="down", messages=USER)
    ids["down"] = failed.value.response.headers["x-request-id"]
    gateway.stop()  # a graceful stop moves the journal into the database

    rows = {row["request_id"]: row for row in ledger_rows(data)}
    assert set(rows) == set(ids.values())  # every request, each once
    gpt = rows[ids["gpt"]]
    assert (gpt["api"], gpt["alias"], gpt["provider"], gpt["model"], gpt["status"]) == (
        "chat",
        "gpt",
        "oa",
        "gpt-4o-2024-08-06",
        200,
    )
    assert (gpt["input_tokens"], gpt["output_tokens"], gpt["key_id"]) == (19, 10, "master")
    assert gpt["cost_micros"] == 148  # gpt-4o: 19 * 2.50 + 10 * 10.00 = 147.5 µ$, rounded half up
    assert rows[ids["mine"]]["cost_micros"] == 19 * 1 + 10 * 2  # the configured price
    stream = rows[ids["stream"]]
    assert stream["stream"] and stream["output_tokens"] > 0 and stream["cost_micros"] == 0
    assert not stream["estimated"]
    assert rows[ids["messages"]]["api"] == "messages"
    assert rows[ids["responses"]]["api"] == "responses"
    assert rows[ids["embeddings"]]["api"] == "embeddings" and rows[ids["embeddings"]]["input_tokens"] > 0
    down = rows[ids["down"]]
    # its one attempt, under the deployment that failed it, for nothing
    assert (down["status"], down["deployment"], down["cost_micros"], down["output_tokens"]) == (
        503,
        "fake/m?fail=503",
        0,
        0,
    )
    assert down["attempt"] == 1


def test_a_model_without_a_price_is_refused_at_load_or_recorded_as_unknown(
    upstream: Upstream, tmp_path: Path, client_for: Callable[[Gateway], openai.OpenAI]
) -> None:
    unpriced = doc(upstream, tmp_path / "a", unknown_prices="reject")  # the default
    unpriced["models"]["mystery"] = {"provider": "local", "model": "mystery-13b"}
    with pytest.raises(ConfigError) as refused:
        settings_for(unpriced, tmp_path / "a", {"UPSTREAM_KEY": UPSTREAM_KEY})
    assert "models.mystery.price: no price is known for model 'mystery-13b'" in str(refused.value)

    data = tmp_path / "b"
    recorded = doc(upstream, data, unknown_prices="record")
    recorded["models"]["mystery"] = {"provider": "local", "model": "mystery-13b"}
    gateway = Gateway(settings_for(recorded, data, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    upstream.reply_json(fixture_bytes("chat_completion.json"))
    request_id = (
        client_for(gateway)
        .chat.completions.with_raw_response.create(model="mystery", messages=USER)
        .headers["x-request-id"]
    )
    gateway.stop()
    [row] = [r for r in ledger_rows(data) if r["request_id"] == request_id]
    assert row["cost_micros"] is None and row["input_tokens"] == 19  # unknown, never a silent $0


def test_nothing_completed_is_lost_when_the_gateway_is_killed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "turnout.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": {"data_dir": str(data)},
                "providers": {"local": {"type": "fake"}},
                "models": {"free": {"provider": "local", "model": "m"}},
            }
        )
    )
    env = {"TURNOUT_MASTER_KEY": MASTER_KEY, "TURNOUT_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"}
    served = start_serve(config, env)
    ids = []
    with httpx.Client(base_url=served.base_url, headers={"authorization": f"Bearer {MASTER_KEY}"}) as http:
        for i in range(25):
            body = {"model": "free", "messages": [{"role": "user", "content": f"n{i}"}], "stream": i % 2 == 1}
            response = http.post("/chat/completions", json=body)
            assert response.status_code == 200
            ids.append(response.headers["x-request-id"])
    assert served.stop(signal.SIGKILL) == -signal.SIGKILL  # no chance to flush anything

    again = start_serve(config, env)  # moves what the killed process journaled
    assert again.stop(signal.SIGTERM) == 0
    rows = ledger_rows(data)
    assert sorted(r["request_id"] for r in rows) == sorted(ids)  # all of them, exactly once
    assert not list((data / "journal").glob("*.journal"))


def entry(request_id: str, **fields: Any) -> LedgerEntry:
    return LedgerEntry(request_id=request_id, at=time.time(), api="chat", key_id="k1", **fields)


def test_replaying_a_journal_never_counts_twice(tmp_path: Path) -> None:
    async def scenario() -> list[dict[str, Any]]:
        database = await Database.open(f"sqlite+aiosqlite:///{tmp_path}/ledger.db")
        store = LedgerStore(database)
        try:
            first = Journal(tmp_path / "journal")
            for i in range(3):
                first.append(entry(f"req-{i}", input_tokens=i, cost_micros=10 * i))
            first.seal()
            assert await first.move(store.insert) == 3
            # a crash after the insert but before the segment was removed: the same entries again,
            # with one new one, and a torn last line
            (tmp_path / "journal" / "ledger-0000000009.journal").write_bytes(
                b"".join(
                    json.dumps({"request_id": f"req-{i}", "at": 1.0, "api": "chat", "key_id": "k1"}).encode()
                    + b"\n"
                    for i in range(4)
                )
                + b'{"request_id": "req-torn", "at": 1'
            )
            first.close()
            second = Journal(tmp_path / "journal")
            assert await second.move(store.insert) == 4
            second.close()
            return await store.entries()
        finally:
            await database.close()

    rows = asyncio.run(scenario())
    by_id = {r["request_id"]: r for r in rows}
    assert sorted(by_id) == ["req-0", "req-1", "req-2", "req-3"]  # each once; the torn line skipped
    assert [by_id[f"req-{i}"]["cost_micros"] for i in range(3)] == [0, 10, 20]  # the first insert stands
    assert not list((tmp_path / "journal").glob("*.journal"))


def test_spend_report_groups_and_totals(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from turnout.cli.main import main

    data = tmp_path / "data"
    config = tmp_path / "turnout.yaml"
    config.write_text(yaml.safe_dump({"storage": {"data_dir": str(data)}}))

    async def fill() -> None:
        database = await Database.open(f"sqlite+aiosqlite:///{data}/turnout.db")
        store = LedgerStore(database)
        await store.insert(
            [
                entry(
                    "a1",
                    team_id="red",
                    model="gpt-4o",
                    input_tokens=100,
                    output_tokens=10,
                    cost_micros=350,
                    customer_price_micros=420,  # a 1.2 markup
                ),
                entry(
                    "a2",
                    team_id="red",
                    model="gpt-4o",
                    input_tokens=50,
                    output_tokens=5,
                    cost_micros=175,
                    customer_price_micros=210,
                ),
                entry("b1", team_id="blue", model="claude", input_tokens=10, cost_micros=None),
                entry("b2", team_id="blue", model="claude", status=503, cost_micros=0),
                LedgerEntry(
                    request_id="old", at=0.0, api="chat", key_id="k1", team_id="red", cost_micros=999
                ),
            ]
        )
        await database.close()

    asyncio.run(fill())
    runner = CliRunner()
    result = runner.invoke(
        main, ["spend", "report", "-c", str(config), "--by", "team", "--since", "1d", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == (
        "team,requests,failed,input tokens,cached,output tokens,search units,images,audio seconds,"
        "characters,cost USD,charged USD,unpriced,estimated"
    )
    assert lines[1:] == [
        "red,2,0,150,0,15,0,0,0,0,0.000525,0.000630,0,0",
        "blue,2,1,10,0,0,0,0,0,0,0.000000,0.000000,1,0",
        "total,4,1,160,0,15,0,0,0,0,0.000525,0.000630,1,0",
    ]
    table = runner.invoke(
        main, ["spend", "report", "-c", str(config), "--by", "model", "--since", "1970-01-01"]
    )
    assert table.exit_code == 0 and "gpt-4o" in table.output and "(none)" in table.output
    assert "0.001524" in table.output.splitlines()[-1]  # the total includes the oldest entry
    bad = runner.invoke(main, ["spend", "report", "-c", str(config), "--since", "last tuesday"])
    assert bad.exit_code == 2 and "Invalid value" in bad.output


def test_a_client_that_leaves_mid_stream_is_billed_for_what_it_was_sent(
    upstream: Upstream, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = doc(upstream, data)
    config["models"]["slow"] = {
        "provider": "fake",
        "model": "m?chunks=200&gap=20ms",
        "price": {"input": "1000", "output": "1000"},  # a token costs a milli-dollar: visible
    }
    gateway = Gateway(settings_for(config, data, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    question = "Tell me a very long story about railway switches and the people who throw them."
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": question}]}
    received = ""
    with (
        httpx.Client(timeout=20) as http,
        http.stream(
            "POST",
            gateway.base_url + "/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {MASTER_KEY}"},
        ) as response,
    ):
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("data: {"):
                received += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            if len(received) > 40:
                break  # the client goes away mid-answer
    gateway.stop()
    [row] = [r for r in ledger_rows(data) if r["request_id"] == request_id]
    assert row["estimated"] and row["stream"] and row["status"] == 499  # the client left
    assert row["input_tokens"] == 16 + 3 + 1 + 3  # the question by o200k_base, framing and role
    # what it was sent: at least the 41 characters it read (10 tokens), not the whole answer (19)
    assert 10 <= row["output_tokens"] < 19
    assert row["cost_micros"] == 1000 * (row["input_tokens"] + row["output_tokens"])
