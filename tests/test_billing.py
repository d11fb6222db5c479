"""Customer billing, end to end through the official SDK: the ledger carries what each team pays
(a markup, or a plan's fixed prices after its included tokens), prepaid teams stop at a zero
balance and start again when topped up, monthly fees are charged once a month, and a preset's
callers pay while its creator is credited a share, up to a monthly cap.

The upstream answers every chat with the same recorded completion: 19 prompt and 10 completion
tokens. At $1,000 per 1M tokens each way, one request costs 29,000 micro-dollars."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database

from support.gateway import MASTER_KEY, Gateway, openai_doc, settings_for
from support.upstream import Upstream

COST = 29 * 1000  # µ$ per request: 29 tokens at $1,000 per 1M tokens
USER = [{"role": "user", "content": "Hello!"}]

Admin = Callable[..., dict[str, Any]]


def doc(upstream: Upstream, data: Path) -> dict[str, Any]:
    d = openai_doc(upstream)
    d["storage"] = {"data_dir": str(data)}
    d["models"] = {"chat": {"provider": "up", "model": "gpt-x", "price": {"input": "1000", "output": "1000"}}}
    d["governance"] = {"two_person_rule": []}
    return d


@pytest.fixture
def gateway(upstream: Upstream, tmp_path: Path) -> Iterator[Gateway]:
    gateway = Gateway(
        settings_for(doc(upstream, tmp_path / "data"), tmp_path / "data", {"UPSTREAM_KEY": "sk-up"})
    )
    yield gateway.start()
    gateway.stop()


@pytest.fixture
def admin(gateway: Gateway) -> Iterator[Admin]:
    with httpx.Client(base_url=gateway.root_url, timeout=20) as http:

        def call(
            method: str, path: str, key: str = MASTER_KEY, status: int = 200, **body: Any
        ) -> dict[str, Any]:
            response = http.request(
                method, path, headers={"authorization": f"Bearer {key}"}, json=body or None
            )
            assert response.status_code == status, response.text
            return response.json()  # type: ignore[no-any-return]

        yield call


def team_with_key(admin: Admin, name: str, role: str = "member", **billing: Any) -> tuple[str, str]:
    team = admin("POST", "/admin/teams", name=name)["id"]
    if billing:
        admin("POST", f"/admin/teams/{team}/billing", **billing)
    return team, admin("POST", "/admin/keys", name=name, team_id=team, role=role)["key"]


def ask(gateway: Gateway, key: str, model: str = "chat", **extra: Any) -> str:
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20) as sdk:
        try:
            sdk.chat.completions.create(model=model, messages=USER, max_tokens=10, **extra)  # type: ignore[arg-type]
            return "ok"
        except openai.RateLimitError as error:
            return str(error.body["code"])  # type: ignore[index]


def ledger(gateway: Gateway, data: Path) -> list[dict[str, Any]]:
    gateway.stop()  # moves the journal into the database

    async def read() -> list[dict[str, Any]]:
        database = await Database.open(f"sqlite+aiosqlite:///{data}/turnout.db")
        try:
            return await LedgerStore(database).entries()
        finally:
            await database.close()

    return asyncio.run(read())


def test_the_ledger_carries_what_each_team_pays(gateway: Gateway, admin: Admin, tmp_path: Path) -> None:
    plan = admin("POST", "/admin/plans", name="resell", markup="1.5")
    marked, marked_key = team_with_key(admin, "marked", plan_id=plan["id"])
    own, own_key = team_with_key(admin, "own", plan_id=plan["id"], markup="2")  # its own markup wins
    plain, plain_key = team_with_key(admin, "plain")
    for key in (marked_key, own_key, plain_key):
        assert ask(gateway, key) == "ok"
    paid = {
        r["team_id"]: (r["cost_micros"], r["customer_price_micros"])
        for r in ledger(gateway, tmp_path / "data")
    }
    assert paid == {marked: (COST, COST * 3 // 2), own: (COST, COST * 2), plain: (COST, COST)}


def test_a_plans_included_tokens_are_free_until_used_up(
    gateway: Gateway, admin: Admin, tmp_path: Path
) -> None:
    # $2,000 per 1M tokens either way, whatever the model; 40 tokens a month included
    plan = admin(
        "POST", "/admin/plans", name="starter", prices={"input": "2000", "output": "2000"}, included_tokens=40
    )
    team, key = team_with_key(admin, "starter", plan_id=plan["id"])
    for _ in range(3):
        assert ask(gateway, key) == "ok"
    account = admin("GET", f"/admin/teams/{team}/billing")
    assert account["included_tokens"] == 40 and account["included_tokens_used"] == 87
    prices = [r["customer_price_micros"] for r in ledger(gateway, tmp_path / "data")]
    full = 29 * 2000
    # 29 free; then 11 of 29 free (18 paid); then all 29 paid
    assert prices == [0, round(full * 18 / 29), full]


def test_a_prepaid_team_stops_at_zero_and_starts_again_when_topped_up(
    gateway: Gateway, admin: Admin, tmp_path: Path
) -> None:
    team, key = team_with_key(admin, "prepaid", prepaid=True)
    assert ask(gateway, key) == "insufficient_quota"  # no credit yet
    # the most a request can cost at $1,000 per 1M tokens: 6 prompt characters, framing (16 for
    # the request, 8 for its message) and 10 output tokens
    worst = (6 + 16 + 8 + 10) * 1000
    account = admin("POST", f"/admin/teams/{team}/credits", amount=str(5 * worst / 1_000_000), note="PO 17")
    assert account["balance_micros"] == 5 * worst
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: ask(gateway, key), range(20)))
    # each reserves `worst` (40,000) and is charged what it cost (29,000): 5 fit at once, a 6th
    # if it asked after 5 were charged; never more, and the balance never goes below zero
    served = results.count("ok")
    assert served in (5, 6) and results.count("insufficient_quota") == 20 - served
    balance = admin("GET", f"/admin/teams/{team}/billing")["balance_micros"]
    assert balance == 5 * worst - served * COST >= 0
    admin("POST", f"/admin/teams/{team}/credits", amount="1.00")
    assert ask(gateway, key) == "ok"
    entries = admin("GET", f"/admin/teams/{team}/credits")["data"]
    assert [(e["kind"], e["amount_micros"]) for e in entries] == [("topup", 1_000_000), ("topup", 5 * worst)]


def test_only_organisation_admins_move_money(gateway: Gateway, admin: Admin) -> None:
    team, team_admin = team_with_key(admin, "red", role="admin", prepaid=True)
    admin("POST", f"/admin/teams/{team}/credits", team_admin, 403, amount="100")
    admin("POST", f"/admin/teams/{team}/billing", team_admin, 403, prepaid=False)
    admin("POST", "/admin/plans", team_admin, 403, name="free", markup="0.01")
    assert admin("GET", f"/admin/teams/{team}/billing", team_admin)["prepaid"] is True  # but may read
    admin("POST", f"/admin/teams/{team}/credits", amount="-5", status=400)  # a top-up is positive
    admin("POST", f"/admin/teams/{team}/credits", amount="ten", status=400)


def test_monthly_fees_are_charged_once_a_month(upstream: Upstream, tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = settings_for(doc(upstream, data), data, {"UPSTREAM_KEY": "sk-up"})
    for restart in range(2):  # a restart (or a second instance) charges nothing more
        gateway = Gateway(settings).start()
        with httpx.Client(
            base_url=gateway.root_url, headers={"authorization": f"Bearer {MASTER_KEY}"}
        ) as http:
            if restart == 0:
                plan = http.post(
                    "/admin/plans", json={"name": "pro", "markup": "1", "monthly_fee": "49"}
                ).json()
                team = http.post("/admin/teams", json={"name": "pro"}).json()["id"]
                http.post(f"/admin/teams/{team}/billing", json={"plan_id": plan["id"]})
            credits = http.get(f"/admin/teams/{team}/credits").json()
        gateway.stop()
        assert [(e["kind"], e["amount_micros"]) for e in credits["data"]] == [("monthly_fee", -49_000_000)]
        assert credits["account"]["balance_micros"] == -49_000_000


def test_a_preset_charges_its_callers_and_credits_its_creator(
    gateway: Gateway, admin: Admin, upstream: Upstream, tmp_path: Path
) -> None:
    creator, creator_admin = team_with_key(admin, "creator", role="admin")
    caller, caller_key = team_with_key(admin, "caller")
    # a team admin publishes for their team, but only the organisation sets a revenue share
    admin(
        "POST",
        "/admin/presets",
        creator_admin,
        403,
        name="x",
        team_id=creator,
        model="chat",
        revenue_share="0.5",
    )
    preset = admin(
        "POST",
        "/admin/presets",
        name="tutor",
        team_id=creator,
        model="chat",
        system_prompt="You are a patient maths tutor.",
        params={"temperature": 0.2},
        revenue_share="0.3",
        share_cap=str(2 * COST * 0.3 / 1_000_000),  # the share of two calls a month
    )
    assert preset["model"] == "preset/tutor"
    admin(
        "POST",
        "/admin/presets",
        name="bad",
        team_id=creator,
        model="chat",
        params={"messages": []},
        status=400,
    )
    admin("POST", "/admin/presets", name="bad", team_id=creator, model="nope", status=400)
    for _ in range(3):
        assert ask(gateway, caller_key, "preset/tutor", temperature=0.9) == "ok"
    sent = upstream.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "You are a patient maths tutor."}
    assert sent["messages"][1:] == USER and sent["temperature"] == 0.9  # the caller's own wins
    assert admin("GET", f"/admin/teams/{creator}/billing")["balance_micros"] == 2 * round(COST * 0.3)
    with pytest.raises(openai.NotFoundError):
        ask(gateway, caller_key, "preset/none")
    rows = ledger(gateway, tmp_path / "data")
    assert [(r["team_id"], r["preset"], r["preset_team_id"]) for r in rows] == [
        (caller, "tutor", creator)
    ] * 3
    assert [r["revenue_share_micros"] for r in rows] == [round(COST * 0.3)] * 2 + [0]  # capped
    assert all(r["customer_price_micros"] == COST for r in rows)
