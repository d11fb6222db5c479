"""Budget alerts delivered to webhooks, against receivers over HTTP on 127.0.0.1: a soft limit
reached and a budget exhausted each reach the receiver once, signed (HMAC-SHA256 over the
timestamp and the body, verified here as a receiver would); a receiver that fails (5xx) and then
recovers gets the alert delivered once; a dead one is given up after the configured attempts; a
webhook that resolves to a loopback address not listed in `allow_private` is refused without a
byte sent; two instances on one PostgreSQL database raise and deliver each event once; and every
step is in the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from turnout.spend.destinations import refused_address

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
from support.gateway import MASTER_KEY, Gateway, settings_for
from support.paid_model import PER_REQUEST, ask, paid_models

SECRET = "whsec-test-0123456789abcdef"
BOUND = 20.0  # seconds an alert may take to arrive (deliveries are retried every 20-100 ms here)


class Receiver:
    """A webhook receiver answering `statuses` in turn (the last one from then on)."""

    def __init__(self, statuses: list[int], port: int = 0) -> None:
        self.statuses = statuses
        self.calls: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                status = receiver.statuses[min(len(receiver.calls), len(receiver.statuses) - 1)]
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/turnout?token=t0k3n"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verified(headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: recompute the signature over `<t>.<body>` and compare."""
    fields = dict(part.split("=", 1) for part in headers["turnout-signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) < 300


def start(
    tmp_path: Path,
    receiver: Receiver,
    *,
    allow_private: bool = True,
    attempts: int = 4,
    copies: int = 1,
    queue: int = 100,
    database: str | None = None,
    name: str = "data",
) -> Gateway:
    alerts: dict[str, Any] = {
        "webhooks": [
            {"url": receiver.url + "&copy=" * i, "secret": "env:ALERT_SECRET"} for i in range(copies)
        ],
        "attempts": attempts,
        "queue": queue,
        "backoff": "20ms",
        "max_backoff": "100ms",
        "timeout": "5s",
    }
    if allow_private:
        alerts["allow_private"] = ["127.0.0.0/8"]
    doc: dict[str, Any] = {
        "providers": {"fake": {"type": "fake"}},
        "models": paid_models(),
        "spend": {"alerts": alerts},
    }
    environ = {"ALERT_SECRET": SECRET}
    if database is not None:  # instances sharing a PostgreSQL database (and their key-hash secret)
        doc["storage"] = {"database_url": f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{database}"}
        environ["TURNOUT_KEY_HASH_SECRET"] = "shared-secret-of-the-alerting-pair"
    return Gateway(settings_for(doc, tmp_path / name, environ)).start()


def admin(gateway: Gateway, method: str, path: str, **body: Any) -> Any:
    answer = httpx.request(
        method,
        gateway.root_url + path,
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json=body or None,
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def budgeted_key(gateway: Gateway, limit: str, soft_limit: str | None = None) -> tuple[str, str, str]:
    """A fresh key with a budget: (its key, its id, the budget's id)."""
    made = admin(gateway, "POST", "/admin/keys", name="alerted")
    body = {"scope": "key", "subject_id": made["id"], "limit": limit}
    if soft_limit is not None:
        body["soft_limit"] = soft_limit
    budget = admin(gateway, "POST", "/admin/budgets", **body)
    return made["key"], made["id"], budget["id"]


def audited(gateway: Gateway, action: str, budget_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The audit events `action` of the budget, once there are `count` of them."""
    deadline = time.monotonic() + BOUND
    while True:
        events = admin(gateway, "GET", f"/admin/audit?action={action}&target_id={budget_id}")["data"]
        if len(events) >= count:
            return events  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"no {action} for {budget_id} in the audit log"
        time.sleep(0.05)


def another_round(gateway: Gateway) -> None:
    """Have the gateway look at its alert queue once more, now."""
    assert gateway.loop is not None and gateway.services.alert_delivery is not None
    asyncio.run_coroutine_threadsafe(gateway.services.alert_delivery.round(), gateway.loop).result(10)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def test_a_soft_limit_and_an_exhaustion_reach_the_webhook_once_each_signed(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    receiver = Receiver([204])
    receivers.append(receiver)
    gateway = start(tmp_path, receiver)
    try:
        key, key_id, budget = budgeted_key(gateway, limit=f"{2 * PER_REQUEST / 1e6}", soft_limit="0.000001")
        assert ask(gateway, key) == "ok"  # spends past the soft limit
        assert ask(gateway, key) == "ok"  # the soft limit was raised once
        assert ask(gateway, key) == "insufficient_quota"  # exhausted
        assert ask(gateway, key) == "insufficient_quota"  # (still: one exhaustion a window)
        raised = audited(gateway, "budget.soft_limit_reached", budget)
        audited(gateway, "budget.exhausted", budget)
        delivered = audited(gateway, "alert.delivered", budget, count=2)
    finally:
        gateway.stop()
    assert len(raised) == 1 and len(delivered) == 2
    events = [json.loads(body) for _, body, _ in receiver.calls]
    assert sorted(e["type"] for e in events) == ["budget.exhausted", "budget.soft_limit"]
    for (headers, body, _), event in zip(receiver.calls, events, strict=True):
        assert verified(headers, body)
        assert headers["turnout-event"] == event["type"]
        assert event["budget"]["id"] == budget and event["budget"]["subject_id"] == key_id
        assert event["budget"]["limit_micros"] == 2 * PER_REQUEST
    soft = next(e for e in events if e["type"] == "budget.soft_limit")
    assert soft["spent_micros"] >= 1
    # the audit log names the webhook by its origin, never its path or query (they may hold a token)
    assert "t0k3n" not in json.dumps(delivered) and delivered[0]["after"]["webhook"].startswith(
        "http://127.0.0.1:"
    )


def test_two_instances_on_one_database_raise_and_deliver_each_alert_once(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    """Both instances see the soft limit crossed and the budget used up (each spends and refuses
    through it), and both look at the one queue: the receiver still gets each event once."""
    receiver = Receiver([204])
    receivers.append(receiver)
    database = asyncio.run(create_postgres_database())
    pair: list[Gateway] = []
    try:
        pair += [start(tmp_path, receiver, database=database, name=n) for n in ("a", "b")]
        key, key_id, budget = budgeted_key(pair[0], limit=f"{4 * PER_REQUEST / 1e6}", soft_limit="0.000001")
        deadline = time.monotonic() + BOUND
        while not all(("key", key_id) in g.services.budgets.rules for g in pair):
            assert time.monotonic() < deadline, "the budget did not reach the second instance"
            time.sleep(0.1)
        answers = [ask(pair[i % 2], key) for i in range(10)]
        assert "ok" in answers and answers[-2:] == ["insufficient_quota"] * 2, answers
        audited(pair[0], "budget.soft_limit_reached", budget)
        audited(pair[0], "budget.exhausted", budget)
        delivered = audited(pair[0], "alert.delivered", budget, count=2)
        for gateway in pair:  # every instance looks at the queue once more: nothing is left to send
            another_round(gateway)
    finally:
        for gateway in pair:
            gateway.stop()
        asyncio.run(drop_postgres_database(database))
    assert len(delivered) == 2
    events = sorted(json.loads(body)["type"] for _, body, _ in receiver.calls)
    assert events == ["budget.exhausted", "budget.soft_limit"]
    assert len({headers["turnout-delivery"] for headers, _, _ in receiver.calls}) == 2


def test_a_failing_receiver_gets_the_alert_once_it_recovers(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    receiver = Receiver([500, 503, 200])
    receivers.append(receiver)
    gateway = start(tmp_path, receiver)
    try:
        key, _, budget = budgeted_key(gateway, limit="0.000001")
        assert ask(gateway, key) == "insufficient_quota"
        delivered = audited(gateway, "alert.delivered", budget)
        another_round(gateway)  # a delivered alert is not sent again
        assert admin(gateway, "GET", f"/admin/audit?action=alert.failed&target_id={budget}")["data"] == []
    finally:
        gateway.stop()
    assert [status for _, _, status in receiver.calls] == [500, 503, 200]  # delivered once
    assert delivered[0]["after"]["attempts"] == 3
    ids = {headers["turnout-delivery"] for headers, _, _ in receiver.calls}
    assert len(ids) == 1  # a retry is the same delivery
    assert all(verified(headers, body) for headers, body, _ in receiver.calls)
    assert len({body for _, body, _ in receiver.calls}) == 1


def test_a_dead_receiver_is_given_up_after_the_attempts_and_audited(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    receiver = Receiver([502])
    receivers.append(receiver)
    gateway = start(tmp_path, receiver, attempts=3)
    try:
        key, _, budget = budgeted_key(gateway, limit="0.000001")
        assert ask(gateway, key) == "insufficient_quota"
        failed = audited(gateway, "alert.failed", budget)
    finally:
        gateway.stop()
    assert len(receiver.calls) == 3
    assert failed[0]["after"]["attempts"] == 3 and failed[0]["after"]["error"] == "answered HTTP 502"


def test_a_webhook_on_a_private_address_is_refused_unless_allowed(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    receiver = Receiver([200])
    receivers.append(receiver)
    gateway = start(tmp_path, receiver, allow_private=False)
    try:
        key, _, budget = budgeted_key(gateway, limit="0.000001")
        assert ask(gateway, key) == "insufficient_quota"
        failed = audited(gateway, "alert.failed", budget)
    finally:
        gateway.stop()
    assert receiver.calls == []  # not a byte sent
    assert failed[0]["after"]["attempts"] == 1  # never retried
    assert "127.0.0.1" in failed[0]["after"]["error"] and "allow_private" in failed[0]["after"]["error"]


def test_an_alert_queued_before_a_restart_is_delivered_after_it(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    receiver = Receiver([200])
    port = receiver.port
    receiver.close()  # the receiver is down: every delivery is refused a connection
    gateway = start(tmp_path, receiver, attempts=1000)
    try:
        key, _, budget = budgeted_key(gateway, limit="0.000001")
        assert ask(gateway, key) == "insufficient_quota"
        audited(gateway, "budget.exhausted", budget)  # queued in the same transaction
    finally:
        gateway.stop()
    back = Receiver([200], port=port)
    receivers.append(back)
    again = start(tmp_path, back, attempts=1000)  # the same database
    try:
        audited(again, "alert.delivered", budget)
        raised = audited(again, "budget.exhausted", budget)
    finally:
        again.stop()
    assert len(raised) == 1  # raised once, before the restart: what was delivered was queued then
    assert [json.loads(body)["type"] for _, body, _ in back.calls] == ["budget.exhausted"]


def test_alerts_beyond_the_queue_are_dropped_and_audited(tmp_path: Path, receivers: list[Receiver]) -> None:
    receiver = Receiver([200])
    receivers.append(receiver)
    gateway = start(tmp_path, receiver, copies=2, queue=1)  # two webhooks, room for one alert
    try:
        key, _, budget = budgeted_key(gateway, limit="0.000001")
        assert ask(gateway, key) == "insufficient_quota"
        dropped = audited(gateway, "alert.dropped", budget)
        audited(gateway, "budget.exhausted", budget)  # the event itself is in the audit log
        another_round(gateway)
    finally:
        gateway.stop()
    assert receiver.calls == []
    assert dropped[0]["after"]["why"] == "queue full" and len(dropped[0]["after"]["webhooks"]) == 2


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),  # cloud metadata
        ("100.64.0.1", True),  # carrier-grade NAT
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fe80::1%eth0", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped loopback
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_which_addresses_a_webhook_may_reach(address: str, refused: bool) -> None:
    assert refused_address(address, ()) is refused


def test_allow_private_lists_the_networks_let_through() -> None:
    from ipaddress import ip_network

    allowed = (ip_network("10.0.0.0/8"),)
    assert refused_address("10.9.9.9", allowed) is False
    assert refused_address("192.168.0.1", allowed) is True


@pytest.mark.parametrize(
    ("alerts", "problem"),
    [
        ({"webhooks": [{"url": "ftp://hooks.example.com", "secret": "env:ALERT_SECRET"}]}, "webhooks[0].url"),
        ({"webhooks": [{"url": "https://hooks.example.com"}]}, "secret"),
        ({"webhooks": [{"url": "https://hooks.example.com", "secret": "literal"}]}, "webhooks[0].secret"),
        ({"allow_private": ["not a network"]}, "allow_private[0]"),
        ({"attempts": 0}, "spend.alerts.attempts"),
        ({"backoff": "1m", "max_backoff": "1s"}, "spend.alerts.max_backoff"),
    ],
)
def test_alert_settings_that_cannot_work_are_refused_at_load(
    tmp_path: Path, alerts: dict[str, Any], problem: str
) -> None:
    from turnout.config.loader import ConfigError

    doc = {"providers": {"fake": {"type": "fake"}}, "models": paid_models(), "spend": {"alerts": alerts}}
    with pytest.raises(ConfigError) as refused:
        settings_for(doc, tmp_path, {"ALERT_SECRET": SECRET})
    assert problem in str(refused.value)
    assert SECRET not in str(refused.value)
