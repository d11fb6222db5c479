"""The exit-readiness report: two fake providers that differ in known ways (the backup carries no
images and has a small context window; one alias has no backup at all), a known history of
requests, and the report's figures asserted exactly — through the admin API and the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for
from support.upstream import Upstream

TURNOUT = str(Path(sys.executable).with_name("turnout"))
PRIMARY_PRICE = {"input": "2.50", "output": "10.00"}
BACKUP_PRICE = {"input": "1.00", "output": "4.00"}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def _answer(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@pytest.fixture
def gateway(tmp_path: Path) -> Any:
    primary, backup = Upstream().start(), Upstream().start()
    doc = {
        "providers": {
            "primary": {
                "type": "openai_compatible",
                "base_url": primary.base_url,
                "api_key": "env:UPSTREAM_KEY",
            },
            "backup": {
                "type": "openai_compatible",
                "base_url": backup.base_url,
                "api_key": "env:UPSTREAM_KEY",
            },
        },
        "models": {
            "chat": {
                "targets": [
                    {"provider": "primary", "model": "gpt-4o", "price": PRIMARY_PRICE},
                    {
                        "provider": "backup",
                        "model": "small",
                        "price": BACKUP_PRICE,
                        "context_window": 4096,
                        "rpm": 2,
                        "supports": {"images": False},
                    },
                ]
            },
            "solo": {"provider": "primary", "model": "gpt-4o", "price": PRIMARY_PRICE},
        },
    }
    served = Gateway(settings_for(doc, tmp_path / "data", {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    yield served, primary
    served.stop()
    primary.stop()
    backup.stop()


def _history(gateway: Gateway, primary: Upstream) -> None:
    """Nine answered requests, all served by the primary provider."""
    client = openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    text = [{"role": "user", "content": "hello"}]
    with_image: Any = [{"role": "user", "content": [{"type": "text", "text": "what is it?"}, IMAGE]}]
    for _ in range(3):  # plain: the backup can take them
        primary.reply_json(_answer(1000, 100))
        client.chat.completions.create(model="chat", messages=text)  # type: ignore[arg-type]
    primary.reply_json(_answer(1000, 100))  # tools: the backup has them
    client.chat.completions.create(model="chat", messages=text, tools=[TOOL])  # type: ignore[arg-type,list-item]
    for _ in range(2):  # images: the backup has none
        primary.reply_json(_answer(1000, 100))
        client.chat.completions.create(model="chat", messages=with_image)
    primary.reply_json(_answer(5000, 100))  # longer than the backup's window
    client.chat.completions.create(model="chat", messages=text)  # type: ignore[arg-type]
    for _ in range(2):  # no other provider serves this alias
        primary.reply_json(_answer(1000, 100))
        client.chat.completions.create(model="solo", messages=text)  # type: ignore[arg-type]
    asyncio.run_coroutine_threadsafe(gateway.services.spend.flush(), gateway.loop).result(30)


def _report(gateway: Gateway) -> dict[str, Any]:
    answer = httpx.get(
        gateway.root_url + "/admin/exit-report",
        params={"since": "2000-01-01"},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_each_providers_movable_share_the_rest_by_reason_and_the_cost_difference(
    gateway: Any, tmp_path: Path
) -> None:
    served, primary = gateway
    _history(served, primary)
    rows = [r for r in ledger_rows(tmp_path / "data") if r["status"] == 200]
    assert {r["features"] for r in rows} == {0, 2, 32}  # plain, tools, images: recorded per row
    (report,) = _report(served)["providers"]
    assert report["provider"] == "primary"
    assert report["requests"] == 9
    assert report["tokens"] == 8 * 1100 + 5100
    cost = (
        8 * (1000 * 2_500_000 + 100 * 10_000_000) // 1_000_000
        + (5000 * 2_500_000 + 100 * 10_000_000) // 1_000_000
    )
    assert report["cost_usd"] == f"{cost // 1_000_000}.{cost % 1_000_000:06d}"
    movable = report["movable"]
    assert (movable["requests"], movable["tokens"]) == (4, 4 * 1100)
    assert movable["request_share"] == round(4 / 9, 4)
    one_primary = (1000 * 2_500_000 + 100 * 10_000_000) // 1_000_000  # $0.0035
    one_backup = (1000 * 1_000_000 + 100 * 4_000_000) // 1_000_000  # $0.0014
    assert movable["cost_usd"] == f"0.{4 * one_primary:06d}"
    assert movable["cost_if_moved_usd"] == f"0.{4 * one_backup:06d}"
    assert movable["cost_difference_usd"] == f"-0.{4 * (one_primary - one_backup):06d}"
    assert {s["reason"]: s["requests"] for s in report["stuck"]} == {
        "no alternative carries images": 2,
        "longer than every alternative's context window": 1,
        "no alternative deployment on another provider": 2,
    }
    assert report["aliases_without_alternative"] == ["solo"]
    (backup,) = report["alternatives"]
    assert (backup["deployment"], backup["requests"], backup["rpm_limit"]) == ("backup/small", 4, 2)
    assert backup["peak_rpm"] >= 2  # the four within a minute or two: over its 2 rpm
    assert backup["over_capacity"] is (backup["peak_rpm"] > 2)


def test_the_cli_prints_the_report_as_a_table_json_and_a_self_contained_html_page(gateway: Any) -> None:
    served, primary = gateway
    _history(served, primary)
    base = [TURNOUT, "exit-report", "--url", served.root_url, "--key", MASTER_KEY, "--since", "2000-01-01"]

    def run(*extra: str) -> str:
        done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    table = run()
    assert "primary" in table and "44.4%" in table
    assert "stuck: 2 (22.2%) no alternative carries images" in table
    assert "aliases with no alternative: solo" in table
    assert json.loads(run("--format", "json"))["providers"][0]["movable"]["requests"] == 4
    page = run("--format", "html")
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert "http://" not in page.replace(served.root_url, "") and "<script" not in page  # nothing fetched


def test_only_the_organisations_admins_read_it_and_bad_periods_are_refused(gateway: Any) -> None:
    served, _ = gateway
    url = served.root_url + "/admin/exit-report"
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    team = httpx.post(served.root_url + "/admin/teams", json={"name": "t"}, headers=auth, timeout=10).json()[
        "id"
    ]
    member = httpx.post(
        served.root_url + "/admin/keys",
        json={"name": "m", "team_id": team, "role": "admin"},
        headers=auth,
        timeout=10,
    ).json()["key"]
    assert httpx.get(url, headers={"authorization": f"Bearer {member}"}, timeout=10).status_code == 403
    backwards = httpx.get(
        url, params={"since": "2030-01-02", "until": "2030-01-01"}, headers=auth, timeout=10
    )
    assert backwards.status_code == 400 and backwards.json()["error"]["param"] == "since"
    garbled = httpx.get(url, params={"since": "yesterday-ish"}, headers=auth, timeout=10)
    assert garbled.status_code == 400 and garbled.json()["error"]["param"] == "since"
    empty = httpx.get(url, headers=auth, timeout=10).json()
    assert empty["object"] == "exit_report" and empty["providers"] == []
