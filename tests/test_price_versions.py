"""The ledger tells which price a request was charged: the version in force when it arrived (a
price change dated in the future does not apply yet), at the service tier the provider says it
served (a priority request OpenAI served at `default` is billed at standard rates), and each row
records both."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway
from support.upstream import Upstream, fixture_json

PRICE = [
    {
        "since": "2000-01-01",
        "input": "1000",
        "output": "1000",
        "service_tiers": {"flex": {"input": "500", "output": "500"}},
    },
    {"since": "2999-01-01", "input": "9000", "output": "9000"},  # announced, not yet in force
]
MESSAGES = [{"role": "user", "content": "Hello!"}]


def answer(served_at: str) -> dict[str, Any]:
    body = fixture_json("chat_completion.json")  # 19 prompt tokens, 10 completion tokens
    return {**body, "service_tier": served_at}


def test_each_row_records_the_price_version_and_tier_it_was_charged(
    upstream: Upstream, start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    doc = {
        "providers": {
            "openai": {"type": "openai", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"}
        },
        "models": {"mini": {"provider": "openai", "model": "gpt-4o-mini", "price": PRICE}},
    }
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    upstream.reply_json(answer("flex")).reply_json(answer("default")).reply_json(answer("default"))
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        client.chat.completions.create(model="mini", messages=MESSAGES, service_tier="flex")  # type: ignore[arg-type]
        client.chat.completions.create(model="mini", messages=MESSAGES, service_tier="priority")  # type: ignore[arg-type]
        client.chat.completions.create(model="mini", messages=MESSAGES)  # type: ignore[arg-type]
    gateway.stop()
    rows = ledger_rows(tmp_path / "data0")
    assert [(r["service_tier"], r["price_version"], r["cost_micros"]) for r in rows] == [
        ("flex", "2000-01-01", 29 * 500),  # served at flex: flex rates
        ("default", "2000-01-01", 29 * 1000),  # asked for priority, served at default: standard
        ("default", "2000-01-01", 29 * 1000),
    ]


def test_an_hour_long_cache_write_is_billed_at_its_own_price(
    upstream: Upstream, start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    provider = {"type": "anthropic", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"}
    doc = {
        "providers": {"claude": provider},
        "models": {"sonnet": {"provider": "claude", "model": "claude-sonnet-4-5-20250929"}},
    }
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    message = fixture_json("message.json", "anthropic")
    usage = {
        "input_tokens": 2095,
        "output_tokens": 503,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 60},
        "service_tier": "standard",
    }
    upstream.reply_json({**message, "usage": usage})
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        client.chat.completions.create(model="sonnet", messages=MESSAGES)  # type: ignore[arg-type]
    gateway.stop()
    [row] = ledger_rows(tmp_path / "data0")
    assert (row["cache_write_tokens"], row["cache_write_1h_tokens"], row["service_tier"]) == (
        100,
        60,
        "standard",
    )
    # the table's Claude Sonnet 4.5: $3 in, $0.30 a cache read, $3.75 a 5-minute write, $6 an
    # hour-long one, $15 out
    assert row["cost_micros"] == round(2095 * 3 + 1000 * 0.3 + 40 * 3.75 + 60 * 6 + 503 * 15)
    assert row["price_version"] == "2025-11-24"  # the table's date
