"""Breaker state where operators look: `/health/ready` with the master key, and `turnout status`."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import openai
from click.testing import CliRunner

from turnout.cli.main import main

from support.gateway import MASTER_KEY, Gateway

DOC: dict[str, Any] = {
    "routing": {"breaker": {"consecutive_failures": 2, "open_for": "1m"}},
    "providers": {"fake": {"type": "fake"}},
    "models": {
        "chat": {
            "targets": [
                {"provider": "fake", "model": "x?fail=500", "name": "flaky"},
                {"provider": "fake", "model": "y", "name": "steady"},
            ]
        },
        "spare": {"provider": "fake", "model": "z"},
    },
}


def _with_an_open_breaker(start_gateway: Callable[..., Gateway]) -> Gateway:
    gateway = start_gateway(DOC)
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        for _ in range(3):
            client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    return gateway


def test_ready_shows_deployments_only_to_the_master_key(start_gateway: Callable[..., Gateway]) -> None:
    gateway = _with_an_open_breaker(start_gateway)
    anonymous = httpx.get(gateway.root_url + "/health/ready", timeout=10).json()
    assert anonymous["status"] == "ready" and "deployments" not in anonymous
    wrong = httpx.get(
        gateway.root_url + "/health/ready", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert wrong.status_code == 200 and "deployments" not in wrong.json()
    response = httpx.get(
        gateway.root_url + "/health/ready", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )
    assert response.status_code == 200  # a provider being down does not make the gateway unready
    body = response.json()
    by_name = {d["deployment"]: d for d in body["deployments"]}
    assert set(by_name) == {"flaky", "steady", "fake/z"}  # configured ones, used or not
    assert by_name["flaky"]["state"] == "open" and 50 < by_name["flaky"]["retry_in_s"] <= 60
    assert by_name["flaky"]["failures"] == 2 and "500" in by_name["flaky"]["last_failure"]
    assert by_name["steady"]["state"] == "closed" and by_name["steady"]["successes"] == 3
    assert by_name["fake/z"]["aliases"] == ["spare"]
    assert (body["deployments_available"], body["deployments_total"]) == (2, 3)


def test_turnout_status_prints_each_deployments_breaker(start_gateway: Callable[..., Gateway]) -> None:
    gateway = _with_an_open_breaker(start_gateway)
    runner = CliRunner()
    shown = runner.invoke(main, ["status", "--url", gateway.root_url], env={"TURNOUT_MASTER_KEY": MASTER_KEY})
    assert shown.exit_code == 0, shown.output
    assert "2 of 3 deployments taking requests" in shown.output
    lines = {line.split()[0]: line for line in shown.output.splitlines() if line.strip()}
    assert " open " in lines["flaky"] and " closed " in lines["steady"]
    assert MASTER_KEY not in shown.output
    refused = runner.invoke(main, ["status", "--url", gateway.root_url, "--key", "sk-wrong"])
    assert refused.exit_code == 2
    as_json = runner.invoke(main, ["status", "--url", gateway.root_url, "--json", "--key", MASTER_KEY])
    assert as_json.exit_code == 0 and '"deployments"' in as_json.output


def test_turnout_status_says_when_the_gateway_cannot_be_reached() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        result = CliRunner().invoke(main, ["status", "--url", f"http://127.0.0.1:{port}", "--key", "k"])
    assert result.exit_code == 1
    assert "cannot reach turnout" in result.output
    assert CliRunner().invoke(main, ["status"], env={"TURNOUT_MASTER_KEY": ""}).exit_code == 2
