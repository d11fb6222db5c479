"""GET /metrics after a known workload, read with Prometheus's own parser: a failover, streams,
plain answers and a budget refusal give exact counts, token sums, costs and histogram counts;
the deployment registry, the journal and the database are read at the scrape; the endpoint
answers only to admins and the metrics key, and is absent when metrics are off."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from turnout.config.loader import ConfigError
from turnout.providers.config_loader import build_settings
from turnout.spend.ledger_store import LedgerStore

from support.gateway import MASTER_KEY, Gateway, settings_for
from support.tcp_forwarder import TcpForwarder

REDIS_HOST = os.environ.get("TURNOUT_TEST_REDIS_HOST", "127.0.0.1")
METRICS_KEY = "sk-metrics-read-only-4t0RgXq2Vb7pZcLwS9eJ1nHd"
USER = [{"role": "user", "content": "Where does the train go?"}]
NO_BREAKER = {"consecutive_failures": 10000, "min_requests": 10000}
PRICE = {"input": "1", "output": "2"}  # USD per million tokens


def doc(**extra: Any) -> dict[str, Any]:
    return {
        "routing": {"breaker": NO_BREAKER},
        "providers": {"alpha": {"type": "fake"}, "beta": {"type": "fake", "fake": {"chunks": 4}}},
        "models": {
            "chat": {
                "targets": [
                    {"provider": "alpha", "model": "m?fail=500", "name": "alpha", "price": PRICE},
                    {"provider": "beta", "model": "m", "name": "beta", "price": PRICE},
                ]
            },
            "solo": {"provider": "beta", "model": "m", "price": PRICE},
        },
        "metrics": {"key": "env:METRICS_KEY"},
        **extra,
    }


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(gateway: Gateway, key: str = MASTER_KEY) -> Samples:
    answer = httpx.get(gateway.root_url + "/metrics", headers={"authorization": f"Bearer {key}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def usage_of(usage: Any) -> tuple[int, int]:
    return usage.prompt_tokens, usage.completion_tokens


def test_a_known_workload_is_counted_exactly(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(doc(), {"METRICS_KEY": METRICS_KEY})
    used: dict[str, list[tuple[int, int]]] = {"chat": [], "solo": []}
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
        assert raw.headers["x-turnout-deployment"] == "beta" and raw.headers["x-turnout-attempts"] == "2"
        used["chat"].append(usage_of(raw.parse().usage))
        for _ in range(2):
            chunks = list(
                client.chat.completions.create(
                    model="solo", messages=USER, stream=True, stream_options={"include_usage": True}
                )
            )
            used["solo"].append(usage_of(chunks[-1].usage))
        used["solo"].append(usage_of(client.chat.completions.create(model="solo", messages=USER).usage))
    with httpx.Client(base_url=gateway.root_url, timeout=10) as http:
        capped = http.post(
            "/admin/keys",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            json={"name": "capped", "max_budget": "0.000001"},
        ).json()["key"]
    with (
        openai.OpenAI(base_url=gateway.base_url, api_key=capped, max_retries=0) as client,
        pytest.raises(openai.RateLimitError),
    ):
        client.chat.completions.create(model="solo", messages=USER, max_tokens=1000)

    samples = scrape(gateway)

    common = {"api": "chat", "status_class": "2xx"}
    assert series(samples, "turnout_requests_total") == {
        labels(alias="chat", deployment="beta", provider="beta", stream="false", **common): 1,
        labels(alias="solo", deployment="beta/m", provider="beta", stream="true", **common): 2,
        labels(alias="solo", deployment="beta/m", provider="beta", stream="false", **common): 1,
    }
    assert series(samples, "turnout_upstream_attempts_total") == {
        labels(alias="chat", deployment="alpha", provider="alpha", status_class="5xx"): 1,
        labels(alias="chat", deployment="beta", provider="beta", status_class="2xx"): 1,
        labels(alias="solo", deployment="beta/m", provider="beta", status_class="2xx"): 3,
    }
    assert series(samples, "turnout_failovers_total") == {
        labels(alias="chat", deployment="alpha", provider="alpha", cause="upstream_server_error"): 1
    }
    assert series(samples, "turnout_refusals_total") == {labels(kind="budget"): 1}

    for alias, deployment in (("chat", "beta"), ("solo", "beta/m")):
        place = {"alias": alias, "deployment": deployment, "provider": "beta"}
        prompt = sum(p for p, _ in used[alias])
        answer = sum(c for _, c in used[alias])
        assert prompt > 0 and answer > 0
        tokens = series(samples, "turnout_tokens_total")
        assert tokens[labels(kind="input", **place)] == prompt
        assert tokens[labels(kind="output", **place)] == answer
        assert tokens[labels(kind="reasoning", **place)] == 0
        cost = series(samples, "turnout_cost_usd_total")[labels(**place)]
        assert cost == pytest.approx((prompt * 1 + answer * 2) / 1e6, abs=1e-12)
        charge = series(samples, "turnout_customer_charge_usd_total")[labels(**place)]
        assert charge == pytest.approx(cost, abs=1e-12)  # no plan: the customer pays the cost
    failed = {"alias": "chat", "deployment": "alpha", "provider": "alpha"}
    assert series(samples, "turnout_tokens_total")[labels(kind="input", **failed)] == 0
    assert series(samples, "turnout_cost_usd_total")[labels(**failed)] == 0

    durations = series(samples, "turnout_request_duration_seconds_count")
    assert durations == {
        labels(alias="chat", api="chat", stream="false"): 1,
        labels(alias="solo", api="chat", stream="true"): 2,
        labels(alias="solo", api="chat", stream="false"): 1,
    }
    infinite = series(samples, "turnout_request_duration_seconds_bucket")
    assert infinite[labels(alias="solo", api="chat", stream="true", le="+Inf")] == 2
    assert infinite[labels(alias="solo", api="chat", stream="true", le="0.001")] <= 2
    first_tokens = series(samples, "turnout_time_to_first_token_seconds_count")
    assert first_tokens == {labels(alias="solo", deployment="beta/m", provider="beta"): 2}
    solo = {"alias": "solo", "deployment": "beta/m", "provider": "beta"}
    first_token_seconds = series(samples, "turnout_time_to_first_token_seconds_sum")[labels(**solo)]
    stream_seconds = series(samples, "turnout_request_duration_seconds_sum")
    assert 0 < first_token_seconds < stream_seconds[labels(alias="solo", api="chat", stream="true")]


def test_deployments_journal_and_database_are_read_at_the_scrape(
    start_gateway: Callable[..., Gateway],
) -> None:
    gateway = start_gateway(doc(), {"METRICS_KEY": METRICS_KEY})
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        client.chat.completions.create(model="chat", messages=USER)
    assert gateway.loop is not None
    asyncio.run_coroutine_threadsafe(gateway.services.spend.flush(), gateway.loop).result(10)

    samples = scrape(gateway, METRICS_KEY)

    states = series(samples, "turnout_deployment_breaker_state")
    for name in ("alpha", "beta"):
        place = {"deployment": name, "provider": name, "model": "m?fail=500" if name == "alpha" else "m"}
        assert states[labels(state="closed", **place)] == 1
        assert states[labels(state="open", **place)] == 0
        assert series(samples, "turnout_deployment_in_flight")[labels(**place)] == 0
    assert samples[("turnout_ledger_journal_backlog_entries", frozenset())] == 0  # all moved
    assert samples[("turnout_ledger_journal_lag_seconds", frozenset())] == 0
    assert samples[("turnout_ledger_journal_writable", frozenset())] == 1
    assert samples[("turnout_database_up", frozenset())] == 1
    assert ("turnout_redis_up", frozenset()) not in samples  # no Redis configured
    assert any(name == "turnout_build_info" for name, _ in samples)
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)

    # the counts are the ledger's: the same attempts, tokens and cost as its rows
    store = LedgerStore(gateway.services.database)
    rows = asyncio.run_coroutine_threadsafe(store.entries(), gateway.loop).result(10)
    assert len(rows) == sum(series(samples, "turnout_upstream_attempts_total").values()) == 2
    tokens = series(samples, "turnout_tokens_total")
    for kind, column in (("input", "input_tokens"), ("output", "output_tokens")):
        assert sum(v for k, v in tokens.items() if ("kind", kind) in k) == sum(r[column] for r in rows)
    cost = sum(series(samples, "turnout_cost_usd_total").values())
    assert cost == pytest.approx(sum(r["cost_micros"] for r in rows) / 1e6, abs=1e-12)


def test_a_breaker_that_opened_shows_open(start_gateway: Callable[..., Gateway]) -> None:
    breaker = {"consecutive_failures": 1, "min_requests": 10000, "open_for": "60s"}
    gateway = start_gateway(doc(routing={"breaker": breaker}), {"METRICS_KEY": METRICS_KEY})
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        client.chat.completions.create(model="chat", messages=USER)  # alpha fails: its breaker opens
    states = series(scrape(gateway), "turnout_deployment_breaker_state")
    alpha = {"deployment": "alpha", "provider": "alpha", "model": "m?fail=500"}
    assert states[labels(state="open", **alpha)] == 1
    assert states[labels(state="closed", **alpha)] == 0


def test_only_admins_and_the_metrics_key_read_metrics(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(doc(), {"METRICS_KEY": METRICS_KEY})
    with httpx.Client(base_url=gateway.root_url, timeout=10) as http:
        master = {"authorization": f"Bearer {MASTER_KEY}"}
        team = http.post("/admin/teams", headers=master, json={"name": "red"}).json()["id"]
        member = http.post("/admin/keys", headers=master, json={"name": "m", "team_id": team}).json()["key"]
        assert http.get("/metrics").status_code == 401
        junk = http.get("/metrics", headers={"authorization": "Bearer sk-nothing-of-ours"})
        assert junk.status_code == 401 and junk.json()["error"]["code"] == "invalid_api_key"
        refused = http.get("/metrics", headers={"authorization": f"Bearer {member}"})
        assert refused.status_code == 403 and "metrics" in refused.json()["error"]["message"]
        assert http.get("/metrics", headers={"authorization": f"Bearer {METRICS_KEY}"}).status_code == 200
        # the metrics key opens nothing else
        models = http.get("/v1/models", headers={"authorization": f"Bearer {METRICS_KEY}"})
        assert models.status_code == 401
        assert METRICS_KEY not in http.get("/metrics", headers=master).text
        open_metrics = http.get("/metrics", headers={**master, "accept": "application/openmetrics-text"})
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.endswith("# EOF\n")


def test_metrics_off_means_no_endpoint(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(doc(metrics={"enabled": False}))
    with httpx.Client(base_url=gateway.root_url, timeout=10) as http:
        answer = http.get("/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert answer.status_code == 404
    assert gateway.services.metrics is None


def test_team_label_and_failed_authentications_refusals(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(
        doc(
            metrics={"team_label": True, "key": "env:METRICS_KEY"},
            auth={"failed_attempts": {"limit": 1, "window": "60s"}},
            # the refused client is another address (forwarded by a proxy on loopback) than the scraper
            server={"trusted_proxies": ["127.0.0.1/32"]},
        ),
        {"METRICS_KEY": METRICS_KEY},
    )
    with httpx.Client(base_url=gateway.root_url, timeout=10) as http:
        master = {"authorization": f"Bearer {MASTER_KEY}"}
        team = http.post("/admin/teams", headers=master, json={"name": "red"}).json()["id"]
        key = http.post("/admin/keys", headers=master, json={"name": "k", "team_id": team}).json()["key"]
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0) as client:
        client.chat.completions.create(model="solo", messages=USER)
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        client.chat.completions.create(model="solo", messages=USER)
    with httpx.Client(base_url=gateway.root_url, timeout=10) as http:
        bad = {"authorization": "Bearer sk-wrong-key-123456", "x-forwarded-for": "203.0.113.9"}
        body = {"model": "solo", "messages": USER}
        assert http.post("/v1/chat/completions", headers=bad, json=body).status_code == 401
        assert http.post("/v1/chat/completions", headers=bad, json=body).status_code == 429

    samples = scrape(gateway, METRICS_KEY)
    place = {"alias": "solo", "deployment": "beta/m", "provider": "beta", "api": "chat", "stream": "false"}
    assert series(samples, "turnout_requests_total") == {
        labels(status_class="2xx", team=team, **place): 1,
        labels(status_class="2xx", team="", **place): 1,  # the master key is in no team
    }
    spend = {"alias": "solo", "deployment": "beta/m", "provider": "beta"}
    assert labels(team=team, **spend) in series(samples, "turnout_cost_usd_total")
    assert series(samples, "turnout_refusals_total") == {labels(kind="failed_authentications"): 1}


def test_metrics_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.key") as weak:
        build_settings({"metrics": {"key": "env:K"}}, {"K": "Weakling7"}, source="test")
    assert "Weakling7" not in str(weak.value)  # named by where it came from, never shown
    with pytest.raises(ConfigError, match=r"metrics\.key: metrics are disabled"):
        build_settings({"metrics": {"enabled": False, "key": "env:K"}}, {"K": METRICS_KEY}, source="test")
    with pytest.raises(ConfigError, match=r"metrics\.colour"):
        build_settings({"metrics": {"colour": "blue"}}, {}, source="test")


def test_a_metrics_listener_of_its_own_needs_no_key(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(doc(metrics={"listen": "127.0.0.1:0"}))
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        client.chat.completions.create(model="solo", messages=USER)
    assert gateway.server is not None and gateway.server.metrics_port
    with httpx.Client(base_url=f"http://127.0.0.1:{gateway.server.metrics_port}", timeout=10) as http:
        answer = http.get("/metrics")
        assert answer.status_code == 200
        samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples
        }
        assert sum(series(samples, "turnout_requests_total").values()) == 1
        # it serves nothing else
        assert http.get("/v1/models").status_code == 404
        assert http.post("/v1/chat/completions", json={}).status_code == 404
        assert http.post("/metrics").status_code == 405
    # and the gateway's own /metrics still wants a key
    assert httpx.get(gateway.root_url + "/metrics", timeout=10).status_code == 401


def test_a_metrics_listener_whose_address_is_taken_stops_the_start(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = settings_for(doc(metrics={"listen": f"127.0.0.1:{port}"}), tmp_path)
        with pytest.raises(OSError, match=rf"metrics\.listen: cannot listen on 127\.0\.0\.1:{port}"):
            Gateway(settings).start()
    with pytest.raises(ConfigError, match=r"metrics\.listen: must be host:port"):
        build_settings({"metrics": {"listen": "9464"}}, {}, source="test")


@pytest.mark.redis
def test_redis_health_is_pinged_at_each_scrape(start_gateway: Callable[..., Gateway]) -> None:
    forwarder = TcpForwarder(REDIS_HOST, 6379).start()
    try:
        storage = {"redis_url": f"redis://127.0.0.1:{forwarder.port}/13"}
        gateway = start_gateway(doc(storage=storage), {"METRICS_KEY": METRICS_KEY})
        assert scrape(gateway)[("turnout_redis_up", frozenset())] == 1
        forwarder.cut()
        assert scrape(gateway)[("turnout_redis_up", frozenset())] == 0
        forwarder.reopen()
        assert scrape(gateway)[("turnout_redis_up", frozenset())] == 1
    finally:
        forwarder.stop()
