"""Liveness and readiness: open to load balancers without a key, JSON with a `status`, and readiness
turns to 503 "draining" as soon as a graceful shutdown begins, while the gateway keeps serving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.upstream import Upstream


def _status(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("status"), str)
    return body


def test_live_needs_no_key(gateway: Gateway) -> None:
    response = httpx.get(gateway.root_url + "/health/live", timeout=10)
    assert response.status_code == 200
    assert _status(response)["status"] == "alive"
    assert response.headers["x-request-id"].startswith("req_")


def test_ready_needs_no_key_and_reports_the_configuration(gateway: Gateway) -> None:
    response = httpx.get(gateway.root_url + "/health/ready", timeout=10)
    assert response.status_code == 200
    body = _status(response)
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["models"] == 3  # gpt-4o, embed, up/*
    assert body["providers"] == 1


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/health/live/", "/health/ready/"])
def test_head_and_trailing_slash(gateway: Gateway, path: str) -> None:
    assert httpx.get(gateway.root_url + path, timeout=10).status_code == 200
    head = httpx.head(gateway.root_url + path, timeout=10)
    assert head.status_code == 200


def test_a_wrong_key_does_not_matter(gateway: Gateway) -> None:
    headers = {"Authorization": "Bearer sk-not-a-key"}
    assert httpx.get(gateway.root_url + "/health/live", headers=headers, timeout=10).status_code == 200
    assert httpx.get(gateway.root_url + "/health/ready", headers=headers, timeout=10).status_code == 200


def test_health_is_read_only(gateway: Gateway) -> None:
    response = httpx.post(gateway.root_url + "/health/ready", timeout=10)
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_ready_turns_503_draining_when_draining(gateway: Gateway) -> None:
    assert httpx.get(gateway.root_url + "/health/ready", timeout=10).status_code == 200
    gateway.call(lambda: setattr(gateway.services, "draining", True))

    ready = httpx.get(gateway.root_url + "/health/ready", timeout=10)
    assert ready.status_code == 503
    body = _status(ready)
    assert body["status"] == "draining"
    assert body["models"] == 3 and body["providers"] == 1
    # still alive: a liveness probe must not get the process killed while it drains
    live = httpx.get(gateway.root_url + "/health/live", timeout=10)
    assert live.status_code == 200
    assert _status(live)["status"] == "alive"


def test_graceful_shutdown_drains_before_it_stops(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    doc = {**openai_doc(upstream), "server": {"drain_delay": "30s"}}
    gateway = start_gateway(doc, {"UPSTREAM_KEY": UPSTREAM_KEY})
    server = gateway.server
    assert server is not None
    gateway.call(server.request_stop)  # what SIGTERM does
    try:
        ready = httpx.get(gateway.root_url + "/health/ready", timeout=10)
        assert ready.status_code == 503
        assert _status(ready)["status"] == "draining"
        assert httpx.get(gateway.root_url + "/health/live", timeout=10).status_code == 200
        # during the drain delay requests are still served, so load balancers can move away first
        with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
            completion = c.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Hello!"}]
            )
        assert completion.choices[0].message.content
    finally:
        gateway.finish_now()  # end the 30 s drain now and wait for the server to finish
