"""The console over plain HTTP (tests/console_browser/ drives it in a real browser): signing in
with an admin's key, the session cookie's flags, CSRF refusals, security headers, a session that
stops working when its key is revoked or lowered, signing out, a team admin kept to their team,
the console switched off or moved, and every console route against every kind of caller."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from turnout.config.loader import ConfigError

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
from support.gateway import MASTER_KEY, Gateway, settings_for

DOC: dict[str, Any] = {
    "providers": {"fake": {"type": "fake"}},
    "models": {"chat": {"provider": "fake", "model": "m"}},
    "governance": {"piecewise_revocations": 100_000},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(settings_for(DOC, Path(tmp_path_factory.mktemp("console")))).start()
    yield gateway
    gateway.stop()


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


CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while CLIENTS:
        CLIENTS.pop().close()


def browser(gateway: Gateway) -> httpx.Client:
    """A client that keeps cookies, as a browser does (closed after the test)."""
    client = httpx.Client(base_url=gateway.root_url, timeout=30)
    CLIENTS.append(client)
    return client


def signed_in(gateway: Gateway, key: str) -> httpx.Client:
    """A browser-like client with a console session for `key`."""
    client = browser(gateway)
    form = client.get("/ui/login")
    assert form.status_code == 200
    answer = client.post("/ui/login", data={"key": key, "csrf": csrf_of(form.text)})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui"
    return client


def test_signing_in_gives_an_httponly_strict_session_and_the_keys_page(gateway: Gateway) -> None:
    client = browser(gateway)
    assert client.get("/ui/keys").headers["location"] == "/ui/login?next=/ui/keys"
    form = client.get("/ui/login")
    answer = client.post("/ui/login", data={"key": MASTER_KEY, "csrf": csrf_of(form.text)})
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and "turnout_session=" in v)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "Max-Age=28800" in cookie and "Secure" not in cookie  # plain HTTP here: no Secure flag
    page = client.get("/ui/keys")
    assert page.status_code == 200 and "<h1>Keys</h1>" in page.text
    assert MASTER_KEY not in page.text


def test_every_page_carries_a_strict_content_security_policy(gateway: Gateway) -> None:
    client = signed_in(gateway, MASTER_KEY)
    pages = ("login", "keys", "teams", "users", "audit", "approvals", "providers")
    for path in (f"/ui/{page}" for page in pages):
        answer = client.get(path)
        assert answer.status_code == 200, path
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        assert "<script>" not in answer.text and " on" + "click=" not in answer.text  # no inline script


def test_a_wrong_key_is_refused_and_counted_toward_the_address_limit(tmp_path: Path) -> None:
    doc = {**DOC, "auth": {"failed_attempts": {"limit": 3, "window": "1m"}}}
    gateway = Gateway(settings_for(doc, tmp_path)).start()
    try:
        client = browser(gateway)
        statuses = []
        for _ in range(4):
            form = client.get("/ui/login")
            answer = client.post("/ui/login", data={"key": "sk-turnout-wrong", "csrf": csrf_of(form.text)})
            statuses.append(answer.status_code)
            assert "turnout_session=" not in answer.headers.get("set-cookie", "")
        assert statuses == [401, 401, 401, 429]
        # the API sees the same count: the address is refused there too, even with a good key
        api = httpx.get(gateway.base_url + "/models", headers={"authorization": f"Bearer {MASTER_KEY}"})
        assert api.status_code == 429
    finally:
        gateway.stop()


def test_a_member_key_cannot_sign_in(gateway: Gateway) -> None:
    member = admin(gateway, "POST", "/admin/keys", name="just-a-member", role="member")["key"]
    client = browser(gateway)
    form = client.get("/ui/login")
    answer = client.post("/ui/login", data={"key": member, "csrf": csrf_of(form.text)})
    assert answer.status_code == 403 and "owners, admins and viewers" in answer.text
    assert "turnout_session=" not in answer.headers.get("set-cookie", "")


def test_a_viewer_reads_every_page_of_its_scope_and_changes_nothing(gateway: Gateway) -> None:
    team = admin(gateway, "POST", "/admin/teams", name="watched")["id"]
    watched = admin(gateway, "POST", "/admin/keys", name="watched-service", team_id=team)
    viewers = {
        "organisation": admin(gateway, "POST", "/admin/keys", name="org-viewer", role="viewer")["key"],
        "team": admin(gateway, "POST", "/admin/keys", name="team-viewer", role="viewer", team_id=team)["key"],
    }
    for scope, key in viewers.items():
        client = signed_in(gateway, key)
        keys = client.get("/ui/keys", params={"q": "watched-service"})
        assert keys.status_code == 200 and "watched-service" in keys.text  # reads what an admin reads
        assert client.get("/ui").status_code == 200
        assert client.get("/ui/audit").status_code == 200
        assert client.get("/ui/providers").status_code == (200 if scope == "organisation" else 403)
        token = csrf_of(keys.text)  # the forms are there; the server refuses what they send
        changes = {
            "/ui/keys": {"name": "by-a-viewer", "team": team},
            f"/ui/keys/{watched['id']}/revoke": {},
            "/ui/teams": {"name": "made-by-a-viewer"},
            "/ui/budgets": {"scope": "team", "subject": team, "limit": "1.00"},
            "/ui/providers/fake/remove": {},
        }
        for path, form in changes.items():
            refused = client.post(path, data={**form, "csrf": token})
            assert refused.status_code == 403 and "A viewer reads only" in refused.text, path
        assert client.post("/ui/logout", data={"csrf": token}).status_code == 303  # it may leave
    assert admin(gateway, "GET", f"/admin/keys/{watched['id']}")["revoked_at"] is None
    names = {t["name"] for t in admin(gateway, "GET", "/admin/teams?limit=1000")["data"]}
    assert "made-by-a-viewer" not in names
    assert not admin(gateway, "GET", f"/admin/budgets?scope=team&subject_id={team}")["data"]
    keys = admin(gateway, "GET", "/admin/keys?limit=1000")["data"]
    assert not [k for k in keys if k["name"] == "by-a-viewer"]


def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(gateway: Gateway) -> None:
    client = signed_in(gateway, MASTER_KEY)
    before = len(admin(gateway, "GET", "/admin/teams?limit=1000")["data"])
    assert client.post("/ui/teams", data={"name": "forged"}).status_code == 403
    assert client.post("/ui/teams", data={"name": "forged", "csrf": "x" * 43}).status_code == 403
    token = csrf_of(client.get("/ui/teams").text)
    cross = client.post(
        "/ui/teams", data={"name": "forged", "csrf": token}, headers={"origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert len(admin(gateway, "GET", "/admin/teams?limit=1000")["data"]) == before
    made = client.post("/ui/teams", data={"name": "made-here", "csrf": token})
    assert made.status_code == 303


def test_a_sign_in_without_its_form_token_is_refused(gateway: Gateway) -> None:
    answer = httpx.post(gateway.root_url + "/ui/login", data={"key": MASTER_KEY})
    assert answer.status_code == 403
    assert "turnout_session=" not in answer.headers.get("set-cookie", "")


def test_signing_out_ends_the_session_everywhere(gateway: Gateway) -> None:
    client = signed_in(gateway, MASTER_KEY)
    cookie = client.cookies["turnout_session"]
    token = csrf_of(client.get("/ui/keys").text)
    assert client.post("/ui/logout", data={"csrf": token}).status_code == 303
    stolen = httpx.get(gateway.root_url + "/ui/keys", cookies={"turnout_session": cookie})
    assert stolen.status_code == 303 and stolen.headers["location"].startswith("/ui/login")


def test_a_revoked_or_lowered_key_s_session_stops_working(gateway: Gateway) -> None:
    issued = admin(gateway, "POST", "/admin/keys", name="console-admin", role="admin")
    client = signed_in(gateway, issued["key"])
    assert client.get("/ui/keys").status_code == 200
    admin(gateway, "PATCH", f"/admin/keys/{issued['id']}", role="member")
    assert client.get("/ui/keys").status_code == 303
    other = admin(gateway, "POST", "/admin/keys", name="console-admin-2", role="admin")
    client = signed_in(gateway, other["key"])
    token = csrf_of(client.get("/ui/teams").text)
    admin(gateway, "POST", f"/admin/keys/{other['id']}/revoke")
    assert client.get("/ui/keys").status_code == 303
    assert client.post("/ui/teams", data={"name": "after-revoke", "csrf": token}).status_code == 403


def test_a_team_admin_sees_only_their_team_s_keys_and_not_another_team(gateway: Gateway) -> None:
    red = admin(gateway, "POST", "/admin/teams", name="red-console")["id"]
    blue = admin(gateway, "POST", "/admin/teams", name="blue-console")["id"]
    red_key = admin(gateway, "POST", "/admin/keys", name="red-secret-key", team_id=red)
    blue_admin = admin(gateway, "POST", "/admin/keys", name="blue-boss", role="admin", team_id=blue)["key"]
    client = signed_in(gateway, blue_admin)
    keys = client.get("/ui/keys")
    assert "red-secret-key" not in keys.text and "blue-boss" in keys.text
    assert "red-secret-key" not in client.get("/ui/keys", params={"q": "red"}).text
    assert client.get(f"/ui/teams/{red}").status_code == 404
    assert "red-console" not in client.get("/ui/teams").text
    token = csrf_of(keys.text)
    revoke = client.post(f"/ui/keys/{red_key['id']}/revoke", data={"csrf": token})
    assert revoke.status_code == 404
    assert admin(gateway, "GET", f"/admin/keys/{red_key['id']}")["revoked_at"] is None
    # the organisation's pages are refused by the server, not just left out of the menu
    assert client.get("/ui/providers").status_code == 403


def test_a_key_is_shown_once_when_issued_and_never_again(gateway: Gateway) -> None:
    client = signed_in(gateway, MASTER_KEY)
    token = csrf_of(client.get("/ui/keys").text)
    made = client.post("/ui/keys", data={"name": "shown-once", "role": "member", "csrf": token})
    assert made.status_code == 200
    key = re.search(r'id="new-key" readonly value="([^"]+)"', made.text)
    assert key is not None
    listed = client.get("/ui/keys", params={"q": "shown-once"})
    assert "shown-once" in listed.text and key.group(1) not in listed.text
    works = httpx.get(gateway.base_url + "/models", headers={"authorization": f"Bearer {key.group(1)}"})
    assert works.status_code == 200


def test_the_console_can_be_moved_or_switched_off(tmp_path: Path) -> None:
    moved = Gateway(settings_for({**DOC, "console": {"path": "/ops/console"}}, tmp_path / "a")).start()
    try:
        assert httpx.get(moved.root_url + "/ops/console/login").status_code == 200
        assert httpx.get(moved.root_url + "/ui/login").status_code == 404
    finally:
        moved.stop()
    off = Gateway(settings_for({**DOC, "console": {"enabled": False}}, tmp_path / "b")).start()
    try:
        answer = httpx.get(off.root_url + "/ui/login")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    finally:
        off.stop()


def test_the_static_files_are_served_from_the_package(gateway: Gateway) -> None:
    htmx = httpx.get(gateway.root_url + "/ui/static/htmx.min.js")
    assert htmx.status_code == 200 and htmx.headers["content-type"].startswith("text/javascript")
    assert httpx.get(gateway.root_url + "/ui/static/htmx.LICENSE").status_code == 200
    assert httpx.get(gateway.root_url + "/ui/static/../app.py").status_code == 404
    assert httpx.get(gateway.root_url + "/ui/static/VENDORED").status_code == 404


def test_the_session_cookie_is_secure_behind_a_trusted_tls_proxy(tmp_path: Path) -> None:
    doc = {**DOC, "server": {"trusted_proxies": ["127.0.0.1/32"]}}
    gateway = Gateway(settings_for(doc, tmp_path)).start()
    try:
        client = browser(gateway)
        form = client.get("/ui/login")
        tls = {"x-forwarded-proto": "https"}
        answer = client.post("/ui/login", data={"key": MASTER_KEY, "csrf": csrf_of(form.text)}, headers=tls)
        assert answer.status_code == 303
        assert "Secure" in answer.headers["set-cookie"]
    finally:
        gateway.stop()


def test_a_forwarded_proto_from_an_untrusted_peer_is_ignored(gateway: Gateway) -> None:
    client = browser(gateway)
    form = client.get("/ui/login", headers={"x-forwarded-proto": "https"})
    assert "Secure" not in form.headers["set-cookie"]


@pytest.mark.parametrize(
    "wanted", ["//evil.example/x", "https://evil.example/", "/ui//evil.example", "/admin/keys"]
)
def test_signing_in_goes_back_to_a_console_page_only(gateway: Gateway, wanted: str) -> None:
    client = browser(gateway)
    form = client.get("/ui/login", params={"next": wanted})
    answer = client.post("/ui/login", data={"key": MASTER_KEY, "csrf": csrf_of(form.text), "next": wanted})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui"
    form = client.get("/ui/login")
    back = client.post("/ui/login", data={"key": MASTER_KEY, "csrf": csrf_of(form.text), "next": "/ui/audit"})
    assert back.headers["location"] == "/ui/audit"


def test_signing_in_again_ends_the_browser_s_earlier_session(gateway: Gateway) -> None:
    client = signed_in(gateway, MASTER_KEY)
    first = client.cookies["turnout_session"]
    form = client.get("/ui/login")
    assert client.post("/ui/login", data={"key": MASTER_KEY, "csrf": csrf_of(form.text)}).status_code == 303
    assert client.cookies["turnout_session"] != first
    stale = httpx.get(gateway.root_url + "/ui/keys", cookies={"turnout_session": first})
    assert stale.status_code == 303


def test_the_key_list_is_paged_and_the_next_page_follows_its_cursor(tmp_path: Path) -> None:
    gateway = Gateway(settings_for(DOC, tmp_path)).start()
    try:
        made = {admin(gateway, "POST", "/admin/keys", name=f"paged-{i:02d}")["id"] for i in range(55)}
        client = signed_in(gateway, MASTER_KEY)
        first = client.get("/ui/keys")
        shown = set(re.findall(r'data-key-id="([^"]+)"', first.text))
        assert len(shown) == 50
        after = re.search(r'rel="next" href="([^"]+)"', first.text)
        assert after is not None
        second = client.get(after.group(1).replace("&amp;", "&"))
        rest = set(re.findall(r'data-key-id="([^"]+)"', second.text))
        assert shown | rest == made and not shown & rest and 'rel="next"' not in second.text
    finally:
        gateway.stop()


def test_a_bad_form_value_is_a_page_that_says_what_is_wrong(gateway: Gateway) -> None:
    client = signed_in(gateway, MASTER_KEY)
    token = csrf_of(client.get("/ui/keys").text)
    answer = client.post("/ui/keys", data={"name": "bad-expiry", "expires_in": "soon", "csrf": token})
    assert answer.status_code == 400 and "expected a duration" in answer.text
    assert client.get("/ui/audit", params={"since": "yesterday"}).status_code == 400
    assert client.post("/ui/keys", data={"name": "", "csrf": token}).status_code == 400
    assert "data-key-id" not in client.get("/ui/keys", params={"q": "bad-expiry"}).text  # none made


def test_a_change_that_needs_a_second_admin_opens_its_pending_action(gateway: Gateway) -> None:
    team = admin(gateway, "POST", "/admin/teams", name="gated")["id"]
    user = admin(gateway, "POST", "/admin/users", email="gated-admin@example.com")["id"]
    admin(gateway, "POST", f"/admin/teams/{team}/members", user_id=user, role="admin")
    last = admin(
        gateway, "POST", "/admin/keys", name="gated-last-admin", role="admin", team_id=team, user_id=user
    )
    second = admin(gateway, "POST", "/admin/users", email="gated-org@example.com", role="admin")
    admin(gateway, "POST", "/admin/keys", name="gated-org-admin", role="admin", user_id=second["id"])
    client = signed_in(gateway, MASTER_KEY)
    token = csrf_of(client.get("/ui/keys").text)
    answer = client.post(f"/ui/keys/{last['id']}/revoke", data={"csrf": token})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/approvals/")
    pending = client.get(answer.headers["location"])
    assert pending.status_code == 200 and 'id="status">pending' in pending.text
    assert "gated-last-admin" in pending.text  # the key as it is now, beside what is proposed
    assert admin(gateway, "GET", f"/admin/keys/{last['id']}")["revoked_at"] is None


@pytest.mark.postgres
def test_a_session_works_on_every_instance_and_ends_on_all_of_them(tmp_path: Path) -> None:
    database = asyncio.run(create_postgres_database())
    doc = {**DOC, "storage": {"database_url": f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{database}"}}
    environ = {"TURNOUT_KEY_HASH_SECRET": "console-test-secret-shared-by-both-instances"}
    a = Gateway(settings_for(doc, tmp_path / "a", environ)).start()
    b = Gateway(settings_for(doc, tmp_path / "b", environ)).start()
    try:
        issued = admin(a, "POST", "/admin/keys", name="two-instance-admin", role="admin")
        on_a = signed_in(a, issued["key"])
        cookie = {"turnout_session": on_a.cookies["turnout_session"]}
        assert httpx.get(b.root_url + "/ui/keys", cookies=cookie).status_code == 200  # known on b
        admin(a, "POST", f"/admin/keys/{issued['id']}/revoke")
        assert httpx.get(b.root_url + "/ui/keys", cookies=cookie).status_code == 303  # at once, no sync
        master = signed_in(a, MASTER_KEY)
        cookie = {"turnout_session": master.cookies["turnout_session"]}
        assert httpx.get(b.root_url + "/ui/teams", cookies=cookie).status_code == 200
        token = csrf_of(master.get("/ui/keys").text)
        assert master.post("/ui/logout", data={"csrf": token}).status_code == 303
        assert httpx.get(b.root_url + "/ui/teams", cookies=cookie).status_code == 303
    finally:
        a.stop()
        b.stop()
        asyncio.run(drop_postgres_database(database))


@pytest.mark.parametrize("path", ["/v1", "/admin/ui", "/passthrough", "/health", "ui/../x", ""])
def test_the_console_cannot_be_put_where_the_gateway_serves_its_api(path: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        settings_for({**DOC, "console": {"path": path}}, tmp_path)
    assert "console.path" in str(refused.value)
