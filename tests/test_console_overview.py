"""The console's overview (its landing page): today's and this month's requests, error rate, tokens
and money from the running totals, plots over the last hour, day and 30 days, and — for readers of
the whole organisation — latency, time to first token and provider health with failovers by cause;
a team's admin sees their team's figures only."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from turnout.console.rendering import usd

from support.gateway import MASTER_KEY, Gateway, settings_for
from support.paid_model import PER_REQUEST, TOKENS, ask, paid_models

DOC: dict[str, Any] = {
    "providers": {"fake": {"type": "fake"}, "spare": {"type": "fake"}},
    "models": {
        **paid_models(),
        "flaky": {
            "targets": [
                {"provider": "fake", "model": "broken?fail=500", "name": "broken"},
                {"provider": "spare", "model": "m", "name": "spare"},
            ],
            "strategy": "priority",
        },
    },
    "auth": {"failed_attempts": {"limit": 0}},
    "routing": {"breaker": {"consecutive_failures": 1, "open_for": "60s"}},  # one failure opens it
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(settings_for(DOC, Path(tmp_path_factory.mktemp("console-overview")))).start()
    yield gateway
    gateway.stop()


def admin(gateway: Gateway, method: str, path: str, **body: Any) -> Any:
    answer = httpx.request(
        method, gateway.root_url + path, headers={"authorization": f"Bearer {MASTER_KEY}"}, json=body or None
    )
    assert answer.status_code in (200, 202), answer.text
    return answer.json()


CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while CLIENTS:
        CLIENTS.pop().close()


def signed_in(gateway: Gateway, key: str) -> httpx.Client:
    client = httpx.Client(base_url=gateway.root_url, timeout=30)
    CLIENTS.append(client)
    form = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token
    answer = client.post("/ui/login", data={"key": key, "csrf": token.group(1)})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui", answer.text
    return client


def flushed(gateway: Gateway) -> None:
    assert gateway.loop is not None
    asyncio.run_coroutine_threadsafe(gateway.services.spend.flush(), gateway.loop).result(30)


def row(html: str, row_id: str) -> list[str]:
    found = re.search(rf'<tr id="{row_id}">(.*?)</tr>', html, re.DOTALL)
    assert found, html
    return re.findall(r"<td>(.*?)</td>", found.group(1))


def test_the_overview_shows_traffic_spend_latency_and_failovers_and_a_team_admin_only_theirs(
    gateway: Gateway,
) -> None:
    red = admin(gateway, "POST", "/admin/teams", name="red")["id"]
    blue = admin(gateway, "POST", "/admin/teams", name="blue")["id"]
    red_key = admin(gateway, "POST", "/admin/keys", name="red-spender", team_id=red)["key"]
    blue_key = admin(gateway, "POST", "/admin/keys", name="blue-spender", team_id=blue)["key"]
    red_admin = admin(gateway, "POST", "/admin/keys", name="red-admin", team_id=red, role="admin")["key"]
    for _ in range(3):
        assert ask(gateway, red_key) == "ok"
    with openai.OpenAI(base_url=gateway.base_url, api_key=blue_key, max_retries=0) as client:
        client.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "hi"}])
        stream = client.chat.completions.create(
            model="paid", messages=[{"role": "user", "content": "hi"}], max_tokens=TOKENS, stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    flushed(gateway)

    everything = signed_in(gateway, MASTER_KEY)
    page = everything.get("/ui")
    assert page.status_code == 200, page.text
    html = unescape(page.text)
    today = row(html, "today")
    assert today[0] == "5"  # 3 of red's and blue's 2 that reached a provider
    assert today[4] == usd(4 * PER_REQUEST)  # four paid answers
    assert row(html, "month")[0] == "5"
    assert 'aria-label="Requests over the day"' in html and '<rect class="s0"' in page.text
    latency = re.search(r'<table class="list figures" id="latency">(.*?)</table>', html, re.DOTALL)
    assert latency and " ms" in latency.group(1)  # p50 and p95 measured
    failovers = re.search(r'<table class="list" id="failovers">(.*?)</table>', html, re.DOTALL)
    assert failovers and "<td>fake</td><td>upstream_server_error</td><td>1</td>" in failovers.group(1)
    broken = re.search(r"<tr><td>broken</td>(.*?)</tr>", html, re.DOTALL)
    assert broken and '<td class="state-open">open (retry in' in broken.group(1)  # its breaker, now
    assert '<span class="state-open">open</span>' in broken.group(1)  # and when it opened

    for window, buckets in (("hour", 4), ("day", 24), ("month", 30)):
        plotted = everything.get("/ui", params={"window": window})
        assert plotted.status_code == 200
        assert plotted.text.count(f'data-buckets="{buckets}"') == 4  # requests, tokens, cost, charged
    wrong = everything.get("/ui", params={"window": "year"})
    assert wrong.status_code == 400 and "window" in wrong.text

    team = unescape(signed_in(gateway, red_admin).get("/ui").text)
    assert row(team, "today")[0] == "3"  # red's only
    assert row(team, "today")[4] == usd(3 * PER_REQUEST)
    assert 'id="latency"' not in team and 'id="failovers"' not in team  # the organisation's
