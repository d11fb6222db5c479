"""Every upstream attempt is accounted, as the ledger shows after the gateway stops: a client that
leaves a stream stops it (nothing continues it for nobody) and is billed for what it was sent; a
resumed stream is two rows, each under its own deployment and price; a hedge is two rows; an
answer the provider did not count is counted by turnout — any stream, any `n`, any body."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, Gateway, settings_for

USER = [{"role": "user", "content": "Tell me a very long story about railway switches."}]
PRICE = {"input": "1000", "output": "2000"}  # a token costs a milli-dollar or two: visible


def start(data: Path, models: dict[str, Any], routing: dict[str, Any] | None = None) -> Gateway:
    config = {
        "routing": routing or {},
        "storage": {"data_dir": str(data)},
        "providers": {name: {"type": "fake", "fake": {"chunks": 8}} for name in ("alpha", "beta")},
        "models": models,
    }
    return Gateway(settings_for(config, data, {})).start()


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def test_a_client_that_leaves_a_stream_stops_it_and_nothing_continues_it(tmp_path: Path) -> None:
    models = {
        "story": {
            "targets": [
                {"provider": "alpha", "model": "m?chunks=400&gap=10ms", "name": "alpha", "price": PRICE},
                {"provider": "beta", "model": "m", "name": "beta", "price": PRICE},
            ],
            "strategy": "priority",
        }
    }
    gateway = start(tmp_path, models)
    fakes = gateway.services.registry.fakes
    body = {"model": "story", "stream": True, "messages": USER}
    ids = []
    for _ in range(10):
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
            ids.append(response.headers["x-request-id"])
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    received += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                if len(received) > 20:
                    break  # the client goes away mid-answer
    gateway.stop()  # waits for what is in flight: every disconnect has been handled
    assert fakes["alpha"].requests == 10 and fakes["beta"].requests == 0  # no continuation for nobody
    ledger = [r for r in ledger_rows(tmp_path) if r["request_id"] in ids]
    assert len(ledger) == 10  # one row each: the attempt the client left
    for row in ledger:
        assert (row["status"], row["deployment"], row["attempt"]) == (499, "alpha", 1)
        assert row["estimated"] and 0 < row["output_tokens"] < 60  # what it was sent, not the whole story
        assert row["cost_micros"] == 1000 * row["input_tokens"] + 2000 * row["output_tokens"]


def test_a_resumed_stream_is_two_rows_each_under_its_own_deployment_and_price(tmp_path: Path) -> None:
    models = {
        "story": {
            "targets": [
                {
                    "provider": "alpha",
                    "model": "m?fail=truncate&after=4&usage=false",
                    "name": "alpha",
                    "price": {"input": "1000", "output": "1000"},
                },
                {
                    "provider": "beta",
                    "model": "m",
                    "name": "beta",
                    "price": {"input": "5000", "output": "5000"},
                },
            ],
            "strategy": "priority",
        }
    }
    gateway = start(tmp_path, models)
    with sdk(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="story", messages=USER, stream=True)
        request_id = raw.headers["x-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    gateway.stop()
    assert text
    first, second = sorted(
        (r for r in ledger_rows(tmp_path) if r["request_id"] == request_id), key=lambda r: r["attempt"]
    )
    assert (first["attempt"], first["deployment"], second["attempt"], second["deployment"]) == (
        1,
        "alpha",
        2,
        "beta",
    )
    assert first["status"] >= 500 and second["status"] == 200
    # the broken attempt's own tokens, counted (it reported none), at its own price
    assert first["estimated"] and first["output_tokens"] > 0
    assert first["cost_micros"] == 1000 * (first["input_tokens"] + first["output_tokens"])
    assert second["cost_micros"] == 5000 * (second["input_tokens"] + second["output_tokens"])


def test_a_hedged_request_is_two_rows(tmp_path: Path) -> None:
    models = {
        "chat": {
            "targets": [
                {"provider": "alpha", "model": "m?latency=3s", "name": "slow", "price": PRICE},
                {"provider": "beta", "model": "m", "name": "fast", "price": PRICE},
            ],
            "strategy": "priority",
            "hedge_after": "50ms",
        }
    }
    gateway = start(tmp_path, models)
    with sdk(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
        request_id = raw.headers["x-request-id"]
    assert raw.headers["x-turnout-deployment"] == "fast"
    gateway.stop()
    by_deployment = {r["deployment"]: r for r in ledger_rows(tmp_path) if r["request_id"] == request_id}
    assert set(by_deployment) == {"slow", "fast"}
    assert by_deployment["fast"]["status"] == 200
    loser = by_deployment["slow"]
    assert loser["status"] == 499 and loser["estimated"] and loser["input_tokens"] > 0  # it had the prompt


def test_answers_the_provider_did_not_count_are_counted(tmp_path: Path) -> None:
    models = {"quiet": {"provider": "alpha", "model": "m?usage=false", "price": PRICE}}
    gateway = start(tmp_path, models)
    with sdk(gateway) as client:
        plain = client.chat.completions.with_raw_response.create(model="quiet", messages=USER, n=2)
        several = client.chat.completions.with_raw_response.create(
            model="quiet", messages=USER, n=2, stream=True
        )
        chunks = list(several.parse())
    gateway.stop()
    assert any(c.choices for c in chunks)
    ledger = {r["request_id"]: r for r in ledger_rows(tmp_path)}
    for raw in (plain, several):
        row = ledger[raw.headers["x-request-id"]]
        assert row["estimated"] and row["input_tokens"] > 0 and row["output_tokens"] > 0
