"""The console's budgets, request log, key changes and provider controls over plain HTTP
(tests/test_console_browser.py drives them in a real browser): what each shows, that each change
goes through the admin API's rules, that a team's admin is kept to their team even by URL, and that
every one of these changes is refused without the session's CSRF token."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gateway import MASTER_KEY, Gateway, settings_for
from support.paid_model import PER_REQUEST, ask, paid_models

DOC: dict[str, Any] = {
    "providers": {"fake": {"type": "fake"}, "spare": {"type": "fake"}},
    "models": {**paid_models(), "chat": {"provider": "fake", "model": "m"}},
    "governance": {"piecewise_revocations": 100_000},
    "request_logs": {"log_by_default": True, "max_entry_bytes": 1024},
    "auth": {"failed_attempts": {"limit": 0}},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(settings_for(DOC, Path(tmp_path_factory.mktemp("console-pages")))).start()
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
    """A browser-like client with a console session for `key`, and the session's CSRF token."""
    client = httpx.Client(base_url=gateway.root_url, timeout=30)
    CLIENTS.append(client)
    form = client.get("/ui/login")
    answer = client.post("/ui/login", data={"key": key, "csrf": csrf_of(form.text)})
    assert answer.status_code == 303, answer.text
    return client, csrf_of(client.get("/ui/keys").text)


def chat(gateway: Gateway, key: str, content: str) -> None:
    answer = httpx.post(
        gateway.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "chat", "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def budget_row(html: str, subject: str) -> str:
    rows = [r for r in re.findall(r"<tr data-budget-id=.*?</tr>", html, re.DOTALL) if subject in r]
    assert len(rows) == 1, html
    return rows[0]


def teams(gateway: Gateway, tag: str) -> tuple[str, str, str, str]:
    """Two teams, `red` and `blue`, and a key of each team's admin."""
    red = admin(gateway, "POST", "/admin/teams", name=f"red-{tag}")["id"]
    blue = admin(gateway, "POST", "/admin/teams", name=f"blue-{tag}")["id"]
    red_admin = admin(gateway, "POST", "/admin/keys", name=f"red-admin-{tag}", role="admin", team_id=red)
    blue_admin = admin(gateway, "POST", "/admin/keys", name=f"blue-admin-{tag}", role="admin", team_id=blue)
    return red, blue, red_admin["key"], blue_admin["key"]


# ---------------------------------------------------------------------- budgets


def test_a_budget_set_in_the_console_shows_its_use_and_soft_limit_then_refuses(gateway: Gateway) -> None:
    key = admin(gateway, "POST", "/admin/keys", name="budgeted")
    client, token = signed_in(gateway, MASTER_KEY)
    limit, soft = str(2 * PER_REQUEST / 1_000_000), str(PER_REQUEST / 1_000_000)
    form = {"scope": "key", "subject": key["id"], "period": "monthly", "limit": limit, "soft_limit": soft}
    answer = client.post("/ui/budgets", data={**form, "csrf": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/budgets"
    row = budget_row(client.get("/ui/budgets").text, key["id"])
    assert 'data-used-percent="0"' in row and 'x1="50"' in row  # empty bar, soft limit half way
    assert f"${limit}" in row and f"${soft}" in row  # amounts below a cent, to the micro-dollar
    assert "<strong>budgeted</strong>" in row  # the key by its name as well as its id
    assert "soft limit reached" not in row

    assert ask(gateway, key["key"]) == "ok"
    row = budget_row(client.get("/ui/budgets").text, key["id"])
    assert 'data-used-percent="50"' in row and 'width="50"' in row and "soft limit reached" in row
    assert ask(gateway, key["key"]) == "ok"
    row = budget_row(client.get("/ui/budgets").text, key["id"])
    assert 'data-used-percent="100"' in row and 'class="error">limit reached' in row
    assert ask(gateway, key["key"]) == "insufficient_quota"  # the budget the console set is enforced

    listed = admin(gateway, "GET", f"/admin/budgets?scope=key&subject_id={key['id']}")["data"]
    assert [b["limit_micros"] for b in listed] == [2 * PER_REQUEST]  # the API sees the same budget
    key_page = client.get(f"/ui/keys/{key['id']}").text
    link = re.search(r'id="key-budgets" href="([^"]+)"', key_page)
    assert link is not None
    own = client.get(link.group(1).replace("&amp;", "&")).text  # the key's budgets only
    assert re.findall(r'data-budget-id="([^"]+)"', own) == [listed[0]["id"]]
    delete = client.post(f"/ui/budgets/{listed[0]['id']}/delete", data={"csrf": token})
    assert delete.status_code == 303
    assert key["id"] not in client.get("/ui/budgets").text
    assert admin(gateway, "GET", f"/admin/budgets?scope=key&subject_id={key['id']}")["data"] == []


def test_a_bad_budget_form_says_what_is_wrong_and_sets_nothing(gateway: Gateway) -> None:
    key = admin(gateway, "POST", "/admin/keys", name="badly-budgeted")
    client, token = signed_in(gateway, MASTER_KEY)
    base = {"scope": "key", "subject": key["id"], "limit": "5.00", "csrf": token}
    for change, message in (
        ({"limit": "lots"}, "must be an amount of USD"),
        ({"soft_limit": "9.00"}, "cannot be above"),
        ({"timezone": "Mars/Olympus"}, "IANA name"),
        ({"period": "hourly"}, "'period' must be one of"),
        ({"scope": "planet"}, "'scope' must be key, team or user"),
        ({"subject": "key_nope"}, "No key with id"),
    ):
        answer = client.post("/ui/budgets", data={**base, **change})
        assert answer.status_code in (400, 404) and message in unescape(answer.text), (change, answer.text)
    assert admin(gateway, "GET", f"/admin/budgets?scope=key&subject_id={key['id']}")["data"] == []


def test_a_team_admin_sees_and_sets_only_their_team_s_budgets(gateway: Gateway) -> None:
    red, blue, red_admin, blue_admin = teams(gateway, "budgets")
    red_key = admin(gateway, "POST", "/admin/keys", name="red-budgeted", team_id=red)["id"]
    blue_key = admin(gateway, "POST", "/admin/keys", name="blue-budgeted", team_id=blue)["id"]
    red_budget = admin(gateway, "POST", "/admin/budgets", scope="key", subject_id=red_key, limit="3.00")["id"]
    admin(gateway, "POST", "/admin/budgets", scope="team", subject_id=red, limit="30.00")
    client, token = signed_in(gateway, blue_admin)
    page = client.get("/ui/budgets").text
    assert red_key not in page and red not in page and red_budget not in page
    assert "red-budgets" not in page and "red-budgeted" not in page  # nor their names
    by_url = client.get("/ui/budgets", params={"scope": "key", "subject": red_key})
    assert by_url.status_code == 200 and red_budget not in by_url.text
    assert client.post(f"/ui/budgets/{red_budget}/delete", data={"csrf": token}).status_code == 404
    setting = {"scope": "key", "subject": red_key, "limit": "99.00", "csrf": token}
    assert client.post("/ui/budgets", data=setting).status_code == 404
    assert admin(gateway, "GET", f"/admin/budgets/{red_budget}")["limit_micros"] == 3_000_000
    # their own team's key: set; their own team's budget: the organisation's to set
    own = {"scope": "key", "subject": blue_key, "limit": "4.00", "csrf": token}
    assert client.post("/ui/budgets", data=own).status_code == 303
    assert blue_key in client.get("/ui/budgets").text
    team_budget = {"scope": "team", "subject": blue, "limit": "400.00", "csrf": token}
    assert client.post("/ui/budgets", data=team_budget).status_code == 403
    red_view, _ = signed_in(gateway, red_admin)
    assert red_key in red_view.get("/ui/budgets").text and blue_key not in red_view.get("/ui/budgets").text


# ---------------------------------------------------------------------- request log


def test_the_request_log_is_searched_paged_and_an_entry_shows_its_request_escaped(gateway: Gateway) -> None:
    key = admin(gateway, "POST", "/admin/keys", name="logged")
    marker = "<b>needle-7c1</b>"
    for i in range(52):
        chat(gateway, key["key"], f"{marker} {i}" if i % 2 else f"hay {i}")
    client, _ = signed_in(gateway, MASTER_KEY)
    found = client.get("/ui/request-logs", params={"q": "needle-7c1", "key_id": key["id"]})
    ids = re.findall(r'data-request-id="([^"]+)"', found.text)
    assert len(ids) == 26
    everything = client.get("/ui/request-logs", params={"key_id": key["id"], "status": "2xx"})
    first = re.findall(r'data-request-id="([^"]+)"', everything.text)
    after = re.search(r'rel="next" href="([^"]+)"', everything.text)
    assert len(first) == 50 and after is not None
    rest = re.findall(r'data-request-id="([^"]+)"', client.get(after.group(1).replace("&amp;", "&")).text)
    assert len(rest) == 2 and not set(first) & set(rest)
    assert (
        client.get("/ui/request-logs", params={"key_id": key["id"], "status": "5xx"}).text.count(
            "data-request-id"
        )
        == 0
    )
    before = client.get("/ui/request-logs", params={"key_id": key["id"], "until": "2000-01-01"})
    since = client.get("/ui/request-logs", params={"key_id": key["id"], "since": "2000-01-01T00:00"})
    assert before.text.count("data-request-id") == 0 and since.text.count("data-request-id") == 50
    entry = client.get(f"/ui/request-logs/{ids[0]}")
    assert entry.status_code == 200
    assert "&lt;b&gt;needle-7c1&lt;/b&gt;" in entry.text and marker not in entry.text  # escaped
    assert '"messages": [\n' in unescape(entry.text)  # pretty-printed JSON
    bad = client.get("/ui/request-logs", params={"status": "teapot"})
    assert bad.status_code == 400 and "'status' must be" in unescape(bad.text)
    assert client.get("/ui/request-logs", params={"since": "last week"}).status_code == 400
    assert client.get("/ui/request-logs/req_nope").status_code == 404


def test_an_entry_cut_to_the_log_s_size_is_shown_as_the_text_kept(gateway: Gateway) -> None:
    key = admin(gateway, "POST", "/admin/keys", name="long-winded")
    chat(gateway, key["key"], "<i>cut-here</i> " + "word " * 600)
    client, _ = signed_in(gateway, MASTER_KEY)
    listed = client.get("/ui/request-logs", params={"key_id": key["id"]})
    found = re.search(r'data-request-id="([^"]+)"', listed.text)
    assert found is not None
    entry = client.get(f"/ui/request-logs/{found.group(1)}")
    assert entry.status_code == 200 and "longer than the log keeps" in entry.text
    shown = unescape(re.search(r'id="entry-request">(.*?)</pre>', entry.text, re.DOTALL).group(1))  # type: ignore[union-attr]
    assert shown.startswith('{"') and "truncated by turnout" in shown  # the text kept, not re-quoted
    assert "&lt;i&gt;cut-here&lt;/i&gt;" in entry.text and "<i>cut-here" not in entry.text


def test_a_team_admin_reads_only_their_team_s_request_log_even_by_url(gateway: Gateway) -> None:
    red, blue, _, blue_admin = teams(gateway, "logs")
    red_key = admin(gateway, "POST", "/admin/keys", name="red-logged", team_id=red)
    blue_key = admin(gateway, "POST", "/admin/keys", name="blue-logged", team_id=blue)
    chat(gateway, red_key["key"], "red-secret-prompt")
    chat(gateway, blue_key["key"], "blue-own-prompt")
    red_entry = admin(gateway, "GET", f"/admin/request-logs?key_id={red_key['id']}")["data"][0]["request_id"]
    client, _ = signed_in(gateway, blue_admin)
    listed = client.get("/ui/request-logs").text
    assert red_entry not in listed and blue_key["id"] in listed
    assert "data-request-id" not in client.get("/ui/request-logs", params={"q": "red-secret-prompt"}).text
    assert "data-request-id" not in client.get("/ui/request-logs", params={"key_id": red_key["id"]}).text
    opened = client.get(f"/ui/request-logs/{red_entry}")
    assert opened.status_code == 404 and "red-secret-prompt" not in opened.text


# ---------------------------------------------------------------------- keys


def test_a_key_is_changed_and_rotated_from_its_page(gateway: Gateway) -> None:
    key = admin(gateway, "POST", "/admin/keys", name="to-change", models=["chat"])
    client, token = signed_in(gateway, MASTER_KEY)
    page = client.get(f"/ui/keys/{key['id']}")
    assert page.status_code == 200 and 'value="chat"' in page.text and key["key"] not in page.text
    change = {"name": "changed", "models": "chat, paid", "expires_in": "30d", "max_budget": "12.50"}
    answer = client.post(f"/ui/keys/{key['id']}", data={**change, "csrf": token})
    assert answer.status_code == 303 and answer.headers["location"] == f"/ui/keys/{key['id']}"
    now = admin(gateway, "GET", f"/admin/keys/{key['id']}")
    assert now["name"] == "changed" and now["models"] == ["chat", "paid"]
    assert now["max_budget_micros"] == 12_500_000 and now["expires_at"] is not None
    cleared = {"name": "changed", "models": "", "never_expires": "yes", "max_budget": "", "csrf": token}
    assert client.post(f"/ui/keys/{key['id']}", data=cleared).status_code == 303
    now = admin(gateway, "GET", f"/admin/keys/{key['id']}")
    assert now["models"] is None and now["expires_at"] is None and now["max_budget_micros"] is None
    bad = client.post(f"/ui/keys/{key['id']}", data={"name": "x", "expires_in": "soon", "csrf": token})
    assert bad.status_code == 400 and admin(gateway, "GET", f"/admin/keys/{key['id']}")["name"] == "changed"

    rotated = client.post(f"/ui/keys/{key['id']}/rotate", data={"grace": "0s", "csrf": token})
    assert rotated.status_code == 200 and "Key rotated" in rotated.text
    new = re.search(r'id="new-key" readonly value="([^"]+)"', rotated.text)
    assert new is not None and new.group(1) != key["key"]
    works = httpx.get(gateway.base_url + "/models", headers={"authorization": f"Bearer {new.group(1)}"})
    old = httpx.get(gateway.base_url + "/models", headers={"authorization": f"Bearer {key['key']}"})
    assert works.status_code == 200 and old.status_code == 401
    assert new.group(1) not in client.get(f"/ui/keys/{key['id']}").text  # shown once


def test_a_team_admin_cannot_change_or_rotate_another_team_s_key(gateway: Gateway) -> None:
    red, _, _, blue_admin = teams(gateway, "keys")
    red_key = admin(gateway, "POST", "/admin/keys", name="red-kept", team_id=red)
    client, token = signed_in(gateway, blue_admin)
    assert client.get(f"/ui/keys/{red_key['id']}").status_code == 404
    answer = client.post(f"/ui/keys/{red_key['id']}", data={"name": "taken", "csrf": token})
    assert answer.status_code == 404
    assert client.post(f"/ui/keys/{red_key['id']}/rotate", data={"csrf": token}).status_code == 404
    assert admin(gateway, "GET", f"/admin/keys/{red_key['id']}")["name"] == "red-kept"
    assert (
        httpx.get(
            gateway.base_url + "/models", headers={"authorization": f"Bearer {red_key['key']}"}
        ).status_code
        == 200
    )


def test_a_team_admin_cannot_lift_a_key_budget_the_organisation_set(gateway: Gateway) -> None:
    red, _, red_admin, _ = teams(gateway, "levels")
    key = admin(gateway, "POST", "/admin/keys", name="org-capped", team_id=red, max_budget="2.00")
    client, token = signed_in(gateway, red_admin)
    lifted = client.post(
        f"/ui/keys/{key['id']}", data={"name": "org-capped", "max_budget": "", "csrf": token}
    )
    assert lifted.status_code == 403
    renamed = {"name": "renamed-by-team", "max_budget": "2.00", "csrf": token}  # budget untouched: fine
    assert client.post(f"/ui/keys/{key['id']}", data=renamed).status_code == 303
    now = admin(gateway, "GET", f"/admin/keys/{key['id']}")
    assert now["name"] == "renamed-by-team" and now["max_budget_micros"] == 2_000_000


# ---------------------------------------------------------------------- providers


def test_a_provider_removal_waits_for_a_second_admin_and_restore_puts_it_back(gateway: Gateway) -> None:
    person = admin(gateway, "POST", "/admin/users", email="provider-second@example.com", role="admin")
    second = admin(gateway, "POST", "/admin/keys", name="provider-second", role="admin", user_id=person["id"])
    client, token = signed_in(gateway, MASTER_KEY)
    proposed = client.post("/ui/providers/spare/remove", data={"csrf": token})
    assert proposed.status_code == 303 and proposed.headers["location"].startswith("/ui/approvals/")
    assert admin(gateway, "GET", "/admin/providers")["data"][1]["in_service"] is True  # not yet
    action = proposed.headers["location"].rsplit("/", 1)[1]
    approver, second_token = signed_in(gateway, second["key"])
    assert approver.post(f"/ui/approvals/{action}/approve", data={"csrf": second_token}).status_code == 303
    spare = next(p for p in admin(gateway, "GET", "/admin/providers")["data"] if p["name"] == "spare")
    assert spare["in_service"] is False
    assert 'data-provider="spare"' in client.get("/ui/providers").text
    assert client.post("/ui/providers/spare/restore", data={"csrf": token}).status_code == 303
    spare = next(p for p in admin(gateway, "GET", "/admin/providers")["data"] if p["name"] == "spare")
    assert spare["in_service"] is True
    assert client.post("/ui/providers/nowhere/remove", data={"csrf": token}).status_code == 404


# ---------------------------------------------------------------------- CSRF on every change


def test_every_new_change_is_refused_without_the_csrf_token_and_changes_nothing(gateway: Gateway) -> None:
    key = admin(gateway, "POST", "/admin/keys", name="csrf-target")
    budget = admin(gateway, "POST", "/admin/budgets", scope="key", subject_id=key["id"], limit="1.00")
    client, token = signed_in(gateway, MASTER_KEY)
    changes = {
        "/ui/budgets": {"scope": "key", "subject": key["id"], "limit": "999.00"},
        f"/ui/budgets/{budget['id']}/delete": {},
        f"/ui/keys/{key['id']}": {"name": "forged"},
        f"/ui/keys/{key['id']}/rotate": {},
        "/ui/providers/spare/remove": {},
        "/ui/providers/spare/restore": {},
    }
    for path, form in changes.items():
        for forged in ({}, {"csrf": "x" * 43}):
            # (a form with a field: an empty body would be refused for its missing content type)
            sent = {**form, "note": "forged", **forged}
            assert client.post(path, data=sent).status_code == 403, path
        cross = client.post(path, data={**form, "csrf": token}, headers={"origin": "https://evil.example"})
        assert cross.status_code == 403, path
    now = admin(gateway, "GET", f"/admin/keys/{key['id']}")
    assert now["name"] == "csrf-target" and now["rotated_to"] is None
    assert admin(gateway, "GET", f"/admin/budgets/{budget['id']}")["limit_micros"] == 1_000_000
    pending = admin(gateway, "GET", "/admin/approvals?status=pending")["data"]
    assert all(a["target_id"] != "spare" for a in pending)


# ---------------------------------------------------------------------- spend


def _flushed(gateway: Gateway) -> None:
    assert gateway.loop is not None
    asyncio.run_coroutine_threadsafe(gateway.services.spend.flush(), gateway.loop).result(30)


def test_the_spend_page_shows_a_teams_spend_stacked_by_day_and_exports_it_as_csv(gateway: Gateway) -> None:
    red, blue, red_admin, _ = teams(gateway, "spend")
    red_key = admin(gateway, "POST", "/admin/keys", name="red-spender", team_id=red)["key"]
    blue_key = admin(gateway, "POST", "/admin/keys", name="blue-spender", team_id=blue)["key"]
    for _ in range(3):
        assert ask(gateway, red_key) == "ok"
    assert ask(gateway, blue_key) == "ok"
    _flushed(gateway)
    client, _ = signed_in(gateway, red_admin)
    page = client.get("/ui/spend", params={"group_by": "team", "since": "1d"})
    assert page.status_code == 200, page.text
    html = unescape(page.text)
    assert f"<td>{red}</td><td>3</td>" in html and blue not in html  # their team's only
    assert '<rect class="s0"' in page.text  # the day's stacked bar
    cost = f"${3 * PER_REQUEST / 1_000_000:.6f}".rstrip("0").rstrip(".")
    assert cost in html
    export = client.get("/ui/spend.csv", params={"group_by": "team", "since": "1d"})
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["team"], r["requests"], r["cost_micros"]) for r in rows] == [(red, "3", str(3 * PER_REQUEST))]
    # another team's spend, asked for by name in the URL: refused, never shown
    other = client.get("/ui/spend", params={"team": blue, "since": "1d"})
    assert other.status_code == 403 and str(PER_REQUEST) not in other.text
    everything, _ = signed_in(gateway, MASTER_KEY)
    both = unescape(everything.get("/ui/spend", params={"group_by": "team", "since": "1d"}).text)
    assert f"<td>{red}</td><td>3</td>" in both and f"<td>{blue}</td><td>1</td>" in both


def test_the_exit_readiness_page_is_the_organisations_and_shows_each_providers_share(
    gateway: Gateway,
) -> None:
    key = admin(gateway, "POST", "/admin/keys", name="exit-traffic")["key"]
    chat(gateway, key, "what could move?")
    _flushed(gateway)
    client, _ = signed_in(gateway, MASTER_KEY)
    page = client.get("/ui/exit-report", params={"since": "1d"})
    assert page.status_code == 200, page.text
    html = unescape(page.text)
    assert 'data-provider="fake"' in page.text  # the provider that served it
    assert "stuck: no alternative deployment on another provider" in html  # `chat` has no other
    _, _, red_admin, _ = teams(gateway, "exit")
    team_view, _ = signed_in(gateway, red_admin)
    assert team_view.get("/ui/exit-report").status_code == 403
