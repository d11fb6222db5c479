"""The console's billing and presets pages over plain HTTP: plans created and teams' terms, credit
and top-ups set through the admin API's rules (only the organisation's owners and admins), a team's
admin kept to their team's account, and presets published from the console with what each earned
its team, read from the running totals."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from turnout.console.rendering import usd

from support.gateway import MASTER_KEY, Gateway, settings_for
from support.paid_model import PER_REQUEST, ask, paid_models

DOC: dict[str, Any] = {
    "providers": {"fake": {"type": "fake"}},
    "models": paid_models(),
    "auth": {"failed_attempts": {"limit": 0}},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(settings_for(DOC, Path(tmp_path_factory.mktemp("console-billing")))).start()
    yield gateway
    gateway.stop()


CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while CLIENTS:
        CLIENTS.pop().close()


def admin(gateway: Gateway, method: str, path: str, **body: Any) -> Any:
    answer = httpx.request(
        method, gateway.root_url + path, headers={"authorization": f"Bearer {MASTER_KEY}"}, json=body or None
    )
    assert answer.status_code in (200, 202), answer.text
    return answer.json()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def signed_in(gateway: Gateway, key: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=gateway.root_url, timeout=30)
    CLIENTS.append(client)
    form = client.get("/ui/login")
    assert client.post("/ui/login", data={"key": key, "csrf": csrf_of(form.text)}).status_code == 303
    return client, csrf_of(client.get("/ui/billing").text)


def team_and_admin(gateway: Gateway, name: str) -> tuple[str, str]:
    team = admin(gateway, "POST", "/admin/teams", name=name)["id"]
    return team, admin(gateway, "POST", "/admin/keys", name=f"{name}-admin", role="admin", team_id=team)[
        "key"
    ]


def test_plans_terms_and_top_ups_are_the_organisation_s_and_a_team_admin_reads_their_own(
    gateway: Gateway,
) -> None:
    red, red_admin = team_and_admin(gateway, "red")
    blue, _ = team_and_admin(gateway, "blue")
    client, token = signed_in(gateway, MASTER_KEY)
    made = client.post(
        "/ui/plans", data={"name": "resell", "pricing": "markup", "markup": "1.5", "csrf": token}
    )
    assert made.status_code == 303
    plan = next(p for p in admin(gateway, "GET", "/admin/plans")["data"] if p["name"] == "resell")
    both = client.post(
        "/ui/plans", data={"name": "priced", "pricing": "prices", "input_price": "x", "csrf": token}
    )
    assert both.status_code == 400 and "prices.input" in unescape(both.text)
    terms = client.post(
        f"/ui/teams/{red}/billing", data={"plan_id": plan["id"], "prepaid": "on", "csrf": token}
    )
    assert terms.status_code == 303
    topped = client.post(
        f"/ui/teams/{red}/credits", data={"kind": "topup", "amount": "25.00", "note": "first", "csrf": token}
    )
    assert topped.status_code == 303
    negative = client.post(f"/ui/teams/{red}/credits", data={"kind": "topup", "amount": "-5", "csrf": token})
    assert negative.status_code == 400 and "adjustment" in unescape(negative.text)
    account = admin(gateway, "GET", f"/admin/teams/{red}/billing")
    assert account["plan_id"] == plan["id"] and account["prepaid"] and account["balance_micros"] == 25_000_000

    page = unescape(client.get(f"/ui/teams/{red}/billing").text)
    assert '<td id="balance">$25.00</td>' in page and "<td>topup</td><td>$25.00</td><td>first</td>" in page
    listed = unescape(client.get("/ui/billing").text)
    assert "resell" in listed and re.search(r"cost \S 1\.5", listed) and f'data-team-id="{red}"' in listed

    team, team_token = signed_in(gateway, red_admin)
    own = unescape(team.get("/ui/billing").text)
    assert f'data-team-id="{red}"' in own and f'data-team-id="{blue}"' not in own
    assert team.get(f"/ui/teams/{red}/billing").status_code == 200
    assert team.get(f"/ui/teams/{blue}/billing").status_code == 404  # another team's: not found
    for path, form in (
        (f"/ui/teams/{red}/credits", {"amount": "100.00"}),
        (f"/ui/teams/{red}/billing", {"prepaid": ""}),
        ("/ui/plans", {"name": "free", "markup": "0.01"}),
    ):
        assert team.post(path, data={**form, "csrf": team_token}).status_code == 403, path
    after = admin(gateway, "GET", f"/admin/teams/{red}/billing")
    assert after["balance_micros"] == 25_000_000 and after["prepaid"]


def test_a_preset_published_in_the_console_shows_what_it_earned_its_team(gateway: Gateway) -> None:
    maker, maker_admin = team_and_admin(gateway, "maker")
    caller, _ = team_and_admin(gateway, "caller")
    caller_key = admin(gateway, "POST", "/admin/keys", name="caller-app", team_id=caller)["key"]
    team, token = signed_in(gateway, maker_admin)
    shared = team.post(
        "/ui/presets",
        data={"name": "tutor", "model": "paid", "revenue_share": "0.5", "csrf": token},
    )
    assert shared.status_code == 403  # a revenue share is the organisation's to grant
    plain = team.post(
        "/ui/presets",
        data={"name": "helper", "model": "paid", "system_prompt": "Be <b>brief</b>.", "csrf": token},
    )
    assert plain.status_code == 303
    master, master_token = signed_in(gateway, MASTER_KEY)
    granted = master.post(
        "/ui/presets",
        data={
            "name": "tutor",
            "team": "maker",
            "model": "paid",
            "revenue_share": "0.5",
            "csrf": master_token,
        },
    )
    assert granted.status_code == 303
    bad = master.post(
        "/ui/presets", data={"name": "x y", "team": maker, "model": "paid", "csrf": master_token}
    )
    assert bad.status_code == 400
    for _ in range(2):
        assert ask(gateway, caller_key, "preset/tutor") == "ok"
    assert gateway.loop is not None
    asyncio.run_coroutine_threadsafe(gateway.services.spend.flush(), gateway.loop).result(30)

    html = unescape(team.get("/ui/presets").text)
    row = re.search(r'<tr data-preset="tutor">(.*?)</tr>', html, re.DOTALL)
    assert row, html
    earned = usd(PER_REQUEST)  # half of two calls' charge
    assert "<td>2 / 2</td>" in row.group(1)
    assert f'<td class="earned">{earned} / {earned}</td>' in row.group(1)
    assert "Be <b>brief</b>." not in team.get("/ui/presets").text  # escaped, and never in the list

    outsider, _ = signed_in(
        gateway, admin(gateway, "POST", "/admin/keys", name="c-admin", role="admin", team_id=caller)["key"]
    )
    theirs = unescape(outsider.get("/ui/presets").text)
    other = re.search(r'<tr data-preset="tutor">(.*?)</tr>', theirs, re.DOTALL)
    assert other and "earned" not in other.group(1) and "Withdraw" not in other.group(1)  # not theirs

    withdrawn = team.post("/ui/presets/helper/withdraw", data={"csrf": token})
    assert withdrawn.status_code == 303
    assert 'data-preset="helper"' not in team.get("/ui/presets").text
    assert team.post("/ui/presets/tutor/withdraw", data={"csrf": "wrong"}).status_code == 403
