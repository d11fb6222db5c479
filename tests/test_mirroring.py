"""Shadow traffic (routing/mirror.py): a share of an alias's requests also goes to a candidate
deployment in the background. The client's answer never depends on it — a hung shadow and a failing
one leave every answer whole and correct — and a hung shadow never holds the gateway's shutdown up.
Its spend is rehearsal spend: in the ledger under the `rehearsal` key, in no customer budget and no
customer charge, and capped by the mirror's own budget; slow candidates cannot pile shadows up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from turnout.config.loader import ConfigError
from turnout.providers.config_loader import build_settings

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for
from support.upstream import Upstream

USER = [{"role": "user", "content": "Say hello."}]
PRICE = {"input": "1000", "output": "2000"}  # a token costs a milli-dollar or two: visible
WAIT = 20.0  # the longest a test waits for a background shadow to be recorded


@pytest.fixture
def candidate() -> Iterator[Upstream]:
    upstream = Upstream().start()
    yield upstream
    upstream.stop()


def config(data: Path, candidate: Upstream, **mirror: Any) -> dict[str, Any]:
    return {
        "storage": {"data_dir": str(data)},
        "server": {"shutdown_grace": "2s"},
        "routing": {"retries": {"attempts": 1}},
        "providers": {
            "main": {"type": "fake"},
            "cand": {
                "type": "openai_compatible",
                "base_url": candidate.base_url,
                "api_key": "env:UPSTREAM_KEY",
            },
        },
        "models": {
            "chat": {
                "provider": "main",
                "model": "m?reply=the+real+answer",
                "price": PRICE,
                "mirror": {
                    "to": {"provider": "cand", "model": "candidate-model", "price": PRICE},
                    "share": 1.0,
                    "budget": {"limit": "100.00"},
                    **mirror,
                },
            }
        },
    }


def start(data: Path, candidate: Upstream, **mirror: Any) -> Gateway:
    doc = config(data, candidate, **mirror)
    return Gateway(settings_for(doc, data, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()


def ask(gateway: Gateway, key: str = MASTER_KEY, stream: bool = False) -> str:
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20) as sdk:
        if stream:
            chunks = sdk.chat.completions.create(model="chat", messages=USER, stream=True)  # type: ignore[arg-type]
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        answer = sdk.chat.completions.create(model="chat", messages=USER)  # type: ignore[arg-type]
    return answer.choices[0].message.content or ""


def shadow_counts(gateway: Gateway) -> dict[str, float]:
    """turnout_shadow_requests by outcome, as /metrics shows them."""
    text = httpx.get(
        gateway.root_url + "/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    ).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("turnout_shadow_requests_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = counts.get(outcome, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def until(condition: Callable[[], bool]) -> None:
    """Wait for a background shadow to have happened (polling what a user can see)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the shadow was never recorded"
        time.sleep(0.02)


def test_a_hung_shadow_costs_the_client_nothing_and_is_cut_short_at_shutdown(
    tmp_path: Path, candidate: Upstream
) -> None:
    arrived = threading.Event()
    candidate.hang(arrived=arrived)
    candidate.mode = "hang"
    gateway = start(tmp_path, candidate, timeout="10m")
    try:
        assert ask(gateway) == "the real answer"
        assert ask(gateway, stream=True) == "the real answer"
        assert arrived.wait(WAIT)
        assert candidate.requests[0].json["model"] == "candidate-model"
        assert candidate.requests[0].json.get("stream") in (None, False)  # a shadow reads its answer whole
    finally:
        gateway.stop()  # does not wait out the shadow's ten minutes (the test would fail)
    rows = ledger_rows(tmp_path)
    shadows = [r for r in rows if r["rehearsal"]]
    customers = [r for r in rows if not r["rehearsal"]]
    assert [r["status"] for r in customers] == [200, 200]
    assert {r["key_id"] for r in shadows} == {"rehearsal"}
    assert sorted(r["reason"] or "" for r in shadows) == ["gateway_shutdown"] * len(shadows)
    assert {r["request_id"] for r in shadows} <= {r["request_id"] + "-shadow" for r in customers}


def test_a_shadow_that_times_out_is_ended_by_the_mirrors_timeout(tmp_path: Path, candidate: Upstream) -> None:
    candidate.mode = "hang"
    gateway = start(tmp_path, candidate, timeout="200ms")
    try:
        assert ask(gateway) == "the real answer"
        until(lambda: shadow_counts(gateway).get("timeout") == 1)
    finally:
        gateway.stop()
    (shadow,) = [r for r in ledger_rows(tmp_path) if r["rehearsal"]]
    assert (shadow["status"], shadow["reason"]) == (504, "upstream_timeout")


def test_a_failing_shadow_leaves_the_answer_whole_and_is_never_the_customers_spend(
    tmp_path: Path, candidate: Upstream
) -> None:
    candidate.mode = "500"
    gateway = start(tmp_path, candidate)
    try:
        with httpx.Client(base_url=gateway.root_url, timeout=20) as http:

            def post(path: str, **body: Any) -> dict[str, Any]:
                response = http.post(path, headers={"authorization": f"Bearer {MASTER_KEY}"}, json=body)
                assert response.status_code == 200, response.text
                return response.json()  # type: ignore[no-any-return]

            team = post("/admin/teams", name="red")["id"]
            key = post("/admin/keys", name="k", team_id=team)["key"]
            budget = post("/admin/budgets", scope="team", subject_id=team, period="daily", limit="50.00")
            for _ in range(3):
                assert ask(gateway, key) == "the real answer"
            until(lambda: shadow_counts(gateway).get("failed") == 3)
            spent = http.get(
                f"/admin/budgets/{budget['id']}", headers={"authorization": f"Bearer {MASTER_KEY}"}
            ).json()["spent_micros"]
    finally:
        gateway.stop()
    rows = ledger_rows(tmp_path)
    customers = [r for r in rows if not r["rehearsal"]]
    shadows = [r for r in rows if r["rehearsal"]]
    assert spent == sum(r["cost_micros"] for r in customers) > 0  # the team's budget: its own requests
    seen = [(r["status"], r["team_id"], r["customer_price_micros"]) for r in shadows]
    assert seen == [(502, None, None)] * 3
    assert all(r["team_id"] == team for r in customers)


def test_shadows_stop_once_the_mirrors_budget_is_spent(tmp_path: Path, candidate: Upstream) -> None:
    # the candidate's answer (the fixture's usage) costs more than the budget: one shadow spends it
    gateway = start(tmp_path, candidate, budget={"limit": "0.001", "period": "daily"})
    try:
        assert ask(gateway) == "the real answer"
        until(lambda: shadow_counts(gateway).get("answered") == 1)
        for _ in range(3):
            assert ask(gateway) == "the real answer"
        until(lambda: shadow_counts(gateway).get("budget") == 3)
    finally:
        gateway.stop()
    assert len(candidate.requests) == 1
    (shadow,) = [r for r in ledger_rows(tmp_path) if r["rehearsal"]]
    assert shadow["status"] == 200 and shadow["cost_micros"] > 1000


def test_a_slow_candidate_never_piles_shadows_up(tmp_path: Path, candidate: Upstream) -> None:
    arrived = threading.Event()
    candidate.hang(arrived=arrived)
    gateway = start(tmp_path, candidate, concurrency=1, timeout="10m")
    try:
        assert ask(gateway) == "the real answer"
        assert arrived.wait(WAIT)
        for _ in range(4):
            assert ask(gateway) == "the real answer"
        assert shadow_counts(gateway).get("busy") == 4
    finally:
        gateway.stop()
    assert len(candidate.requests) == 1


def test_a_share_below_one_shadows_only_some_requests(tmp_path: Path, candidate: Upstream) -> None:
    gateway = start(tmp_path, candidate, share=0.000001)
    try:
        for _ in range(5):
            assert ask(gateway) == "the real answer"
    finally:
        gateway.stop()
    assert not [r for r in ledger_rows(tmp_path) if r["rehearsal"]]


@pytest.mark.parametrize(
    ("mirror", "problem"),
    [
        ({"share": 0}, "models.chat.mirror.share: must be more than 0 and at most 1, got 0"),
        ({"share": 1.5}, "models.chat.mirror.share: must be more than 0 and at most 1"),
        ({"budget": {"limit": "-1"}}, "models.chat.mirror.budget.limit"),
        ({"budget": {"limit": "1", "period": "hourly"}}, "models.chat.mirror.budget.period"),
        ({"concurrency": 0}, "models.chat.mirror.concurrency: must be at least 1"),
        ({"timeout": "soon"}, "models.chat.mirror.timeout"),
        ({"to": {"provider": "nope", "model": "x"}}, "models.chat.mirror.to.provider: unknown provider"),
        ({"to": {"provider": "cand", "model": "x", "weight": 2}}, "mirror.to.weight: a mirror's candidate"),
        ({"to": {"provider": "cand", "model": "x", "tags": ["a"]}}, "mirror.to.tags: a mirror's candidate"),
        ({"to": {"provider": "cand", "model": "x/*"}}, "mirror.to.model: a mirror's candidate names one"),
        ({"budget": None}, "models.chat.mirror"),
    ],
)
def test_a_mirror_that_cannot_be_enforced_is_refused(
    tmp_path: Path, candidate: Upstream, mirror: dict[str, Any], problem: str
) -> None:
    doc = config(tmp_path, candidate, **mirror)
    if mirror.get("budget", 1) is None:
        del doc["models"]["chat"]["mirror"]["budget"]
    doc["spend"] = {"unknown_prices": "record"}
    with pytest.raises(ConfigError) as caught:
        build_settings(doc, {"UPSTREAM_KEY": UPSTREAM_KEY, "TURNOUT_MASTER_KEY": MASTER_KEY}, source="test")
    assert problem in caught.value.render()


def test_a_spent_rehearsal_budget_stays_spent_after_a_restart(tmp_path: Path, candidate: Upstream) -> None:
    budget = {"limit": "0.001", "period": "daily"}
    first = start(tmp_path, candidate, budget=budget)
    try:
        assert ask(first) == "the real answer"
        until(lambda: shadow_counts(first).get("answered") == 1)
    finally:
        first.stop()
    again = start(tmp_path, candidate, budget=budget)  # reads the day's rehearsal spend from the ledger
    try:
        assert ask(again) == "the real answer"
        assert shadow_counts(again) == {"budget": 1}
    finally:
        again.stop()
    assert len(candidate.requests) == 1
    larger = start(tmp_path, candidate, budget={"limit": "100.00", "period": "daily"})  # room left
    try:
        assert ask(larger) == "the real answer"
        until(lambda: shadow_counts(larger) == {"answered": 1})
    finally:
        larger.stop()


def test_a_request_in_anthropics_format_is_shadowed_in_openais(tmp_path: Path, candidate: Upstream) -> None:
    gateway = start(tmp_path, candidate)
    try:
        with anthropic.Anthropic(
            base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0, timeout=20
        ) as c:
            message = c.messages.create(model="chat", max_tokens=64, messages=USER)  # type: ignore[arg-type]
        assert message.content[0].text == "the real answer"  # type: ignore[union-attr]
        until(lambda: shadow_counts(gateway).get("answered") == 1)
    finally:
        gateway.stop()
    (shadowed,) = candidate.requests
    assert shadowed.path == "/v1/chat/completions"
    assert shadowed.json["messages"] == USER and shadowed.json["model"] == "candidate-model"
    (shadow,) = [r for r in ledger_rows(tmp_path) if r["rehearsal"]]
    assert shadow["api"] == "messages"


def test_no_shadow_goes_to_a_candidate_taken_out_of_service(tmp_path: Path, candidate: Upstream) -> None:
    doc = {**config(tmp_path, candidate), "governance": {"two_person_rule": []}}
    gateway = Gateway(settings_for(doc, tmp_path, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    try:
        removed = httpx.delete(
            gateway.root_url + "/admin/providers/cand",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            timeout=10,
        )
        assert removed.status_code == 200, removed.text
        assert ask(gateway) == "the real answer"
        assert shadow_counts(gateway) == {"out_of_service": 1}
    finally:
        gateway.stop()
    assert candidate.requests == []


def test_the_spend_api_shows_rehearsal_spend_apart_from_every_teams(
    tmp_path: Path, candidate: Upstream
) -> None:
    gateway = start(tmp_path, candidate)
    try:
        with httpx.Client(base_url=gateway.root_url, timeout=20) as http:
            admin = {"authorization": f"Bearer {MASTER_KEY}"}
            team = http.post("/admin/teams", headers=admin, json={"name": "red"}).json()["id"]
            key = http.post("/admin/keys", headers=admin, json={"name": "k", "team_id": team}).json()["key"]
            assert ask(gateway, key) == "the real answer"

            def spend(query: str, auth: dict[str, str] = admin) -> Any:
                return http.get("/admin/spend" + query, headers=auth).json()

            until(lambda: spend("")["totals"]["requests"] == 2)  # both in the database (moved each second)
            by_key = spend("?group_by=key,team")["data"]
            as_team = spend("", {"authorization": f"Bearer {key}"})
    finally:
        gateway.stop()
    rows = ledger_rows(tmp_path)
    shadow_cost = sum(r["cost_micros"] for r in rows if r["rehearsal"])
    customer_cost = sum(r["cost_micros"] for r in rows if not r["rehearsal"])
    groups = {(g["group"]["key"], g["group"]["team"]): g["cost_micros"] for g in by_key}
    assert groups[("rehearsal", None)] == shadow_cost > 0
    assert [cost for (_, t), cost in groups.items() if t == team] == [customer_cost]
    assert as_team["totals"]["cost_micros"] == customer_cost  # the team sees its own spend only


def test_the_clients_error_is_its_own_whatever_the_shadow_answers(
    tmp_path: Path, candidate: Upstream
) -> None:
    doc = config(tmp_path, candidate)
    doc["models"]["chat"]["model"] = "m?fail=503"  # the primary deployment fails; the candidate answers
    gateway = Gateway(settings_for(doc, tmp_path, {"UPSTREAM_KEY": UPSTREAM_KEY})).start()
    try:
        with (
            openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as sdk,
            pytest.raises(openai.APIStatusError) as failed,
        ):
            sdk.chat.completions.create(model="chat", messages=USER)  # type: ignore[arg-type]
        assert failed.value.status_code >= 500
        until(lambda: shadow_counts(gateway).get("answered") == 1)
    finally:
        gateway.stop()
    rows = ledger_rows(tmp_path)
    assert [r["status"] for r in rows if not r["rehearsal"]] == [failed.value.status_code]
    assert [r["status"] for r in rows if r["rehearsal"]] == [200]
