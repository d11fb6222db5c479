"""The console in a real browser: Debian's chromium (installed by scripts/install_browser), driven
by Playwright for Python through the system's binary (Playwright downloads no browser here).
Signing in, issuing a key and using it through the openai SDK, a team admin kept out of another
team, a forged change refused, a team named like a script shown as text, a pending action approved
by a second person — and no error in the browser's console on any page. The screenshots in
docs/console/ are taken here (docs/console.md shows them).

Skipped, saying why, only when chromium is not installed (scripts/install_browser could not
install it: no package index reachable, or not root)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, Gateway, settings_for
from support.paid_model import PER_REQUEST, ask, paid_models

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:  # pragma: no cover - only where apt could not install it
    pytest.skip(
        "Debian's chromium is not installed (scripts/install_browser could not install it)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright  # noqa: E402

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "console"
DOC: dict[str, Any] = {
    "providers": {"fake": {"type": "fake"}, "spare": {"type": "fake"}},
    "models": {"chat": {"provider": "fake", "model": "fake-chat"}, **paid_models()},
    "governance": {"piecewise_revocations": 100_000},
    "request_logs": {"log_by_default": True},
}
XSS = "<script>window.__xss = 1; alert('xss')</script><img src=x onerror=\"alert('img')\">"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(settings_for(DOC, Path(tmp_path_factory.mktemp("console-browser")))).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


class Watched:
    """A page in a fresh browser context (its own cookies), with every console message, page
    error and dialog it produced."""

    def __init__(self, browser: Browser, gateway: Gateway) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page: Page = self.context.new_page()
        self.root = gateway.root_url + "/ui"
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"{message.type}: {message.text} ({message.location.get('url')})")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        if dialog.type == "confirm":
            dialog.accept()
        else:
            dialog.dismiss()

    def goto(self, path: str) -> int:
        answer = self.page.goto(self.root + path)
        assert answer is not None
        return answer.status

    def sign_in(self, key: str, then: str = "/keys") -> None:
        """Sign in from the sign-in page (to the overview, the console's landing page), then go to
        the page `then`."""
        self.goto("/login")
        self.page.fill("#key", key)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(re.compile(r".*/ui$"))
        assert self.page.inner_text("h1").startswith("Overview")
        self.goto(then)

    def shot(self, name: str, **options: Any) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True, **options)

    def close(self, *, expected_errors: tuple[str, ...] = ()) -> None:
        unexpected = [e for e in self.errors if not any(x in e for x in expected_errors)]
        self.context.close()
        assert not unexpected, "the browser's console reported errors:\n" + "\n".join(unexpected)


def flushed(gateway: Gateway) -> None:
    """The spend recorder's journal written to the database (and so to the running totals)."""
    assert gateway.loop is not None
    asyncio.run_coroutine_threadsafe(gateway.services.spend.flush(), gateway.loop).result(30)


def master(gateway: Gateway, method: str, path: str, **body: Any) -> Any:
    answer = httpx.request(
        method, gateway.root_url + path, headers={"authorization": f"Bearer {MASTER_KEY}"}, json=body or None
    )
    assert answer.status_code in (200, 202), answer.text
    return answer.json()


def test_sign_in_issue_a_key_use_it_through_the_sdk_and_find_it(browser: Browser, gateway: Gateway) -> None:
    w = Watched(browser, gateway)
    w.goto("/keys")  # not signed in: sent to the sign-in page
    assert w.page.url.endswith("/ui/login?next=/ui/keys")
    w.shot("login")
    w.sign_in(MASTER_KEY)
    flushed(gateway)
    assert w.goto("") == 200
    before = int(w.page.locator("#today td").first.inner_text())  # requests today
    w.goto("/keys")
    w.page.fill("#name", "browser-made")
    w.page.click("form.panel button[type=submit]")
    w.page.wait_for_selector("#new-key")
    key = w.page.input_value("#new-key")
    assert key.startswith("sk-")
    w.page.click("button.copy")
    w.page.wait_for_selector("#new-key-copied", state="visible")
    w.shot("key-issued", mask=[w.page.locator("#new-key")])

    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    try:
        answer = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello"}])
    finally:
        client.close()
    assert answer.choices[0].message.content

    flushed(gateway)
    w.goto("")  # the request appears in the overview's figures for today
    assert int(w.page.locator("#today td").first.inner_text()) == before + 1
    w.goto("/keys")
    row = w.page.locator("tr", has_text="browser-made")
    assert row.count() == 1 and "active" in row.inner_text()
    assert key not in w.page.content()  # shown once, never again
    w.page.fill("#q", "browser-m")  # htmx narrows the list as one types
    w.page.wait_for_url(re.compile(r".*q=browser-m"))
    assert w.page.locator("#key-list tbody tr").count() == 1
    w.goto("/keys")
    w.shot("keys")
    w.page.locator("tr", has_text="browser-made").locator("button", has_text="Revoke").click()
    w.page.wait_for_selector("tr:has-text('browser-made') >> text=revoked")
    assert w.dialogs == ["Revoke the key browser-made?"]  # asked first, then revoked
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello"}])
    finally:
        client.close()
    w.close()


def test_a_team_admin_cannot_see_another_team_even_by_its_url(browser: Browser, gateway: Gateway) -> None:
    red = master(gateway, "POST", "/admin/teams", name="red")["id"]
    blue = master(gateway, "POST", "/admin/teams", name="blue")["id"]
    red_key = master(gateway, "POST", "/admin/keys", name="red-service", team_id=red)["id"]
    master(gateway, "POST", "/admin/keys", name="blue-service", team_id=blue)
    blue_admin = master(gateway, "POST", "/admin/keys", name="blue-admin", role="admin", team_id=blue)["key"]
    w = Watched(browser, gateway)
    w.sign_in(blue_admin)
    listed = w.page.inner_text("#key-list")
    assert "blue-service" in listed and "red-service" not in listed
    assert w.goto(f"/teams/{red}") == 404
    assert w.goto(f"/keys?q={red_key}") == 200
    assert "red-service" not in w.page.inner_text("#key-list")
    assert w.goto("/providers") == 403  # the organisation's: refused by the server
    assert w.goto("/teams") == 200
    assert "blue" in w.page.inner_text("table.list") and "red" not in w.page.inner_text("table.list")
    w.close(expected_errors=("status of 404", "status of 403"))


def test_a_change_without_the_csrf_token_is_refused(browser: Browser, gateway: Gateway) -> None:
    w = Watched(browser, gateway)
    w.sign_in(MASTER_KEY)
    status = w.page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', body: new URLSearchParams({name: 'forged'}),
               headers: {'content-type': 'application/x-www-form-urlencoded'}})).status""",
        w.root + "/teams",
    )
    assert status == 403
    teams = master(gateway, "GET", "/admin/teams?limit=1000")["data"]
    assert "forged" not in {t["name"] for t in teams}
    w.close(expected_errors=("status of 403",))


def test_a_team_named_like_a_script_is_shown_as_text(browser: Browser, gateway: Gateway) -> None:
    w = Watched(browser, gateway)
    w.sign_in(MASTER_KEY)
    w.goto("/teams")
    w.page.fill("#name", XSS)
    w.page.click("form.panel button[type=submit]")
    w.page.wait_for_url(re.compile(r".*/ui/teams/team_"))
    assert XSS in w.page.inner_text("h1")
    w.goto("/teams")
    assert XSS in w.page.inner_text("main")
    w.goto("/audit?action=team.create")
    w.page.click("details summary")  # the event's before / after, as JSON text
    assert "<script>window.__xss = 1;" in w.page.inner_text("details")
    assert w.page.evaluate("() => window.__xss") is None
    w.shot("audit")
    assert w.dialogs == []
    w.close()


def test_a_second_admin_approves_a_pending_action_seeing_who_proposed_it(
    browser: Browser, gateway: Gateway
) -> None:
    user = master(gateway, "POST", "/admin/users", email="second@example.com", role="admin")
    assert "pending_action" not in user  # the organisation's first admin besides the master key
    issued = master(gateway, "POST", "/admin/keys", name="second-admin", role="admin", user_id=user["id"])
    second = issued["key"]
    doomed = master(gateway, "POST", "/admin/teams", name="to-delete")["id"]
    pending = master(gateway, "DELETE", f"/admin/teams/{doomed}")  # a second person must approve it
    assert pending["object"] == "pending_action"
    w = Watched(browser, gateway)
    w.sign_in(second)
    w.goto("/approvals")
    w.shot("approvals")
    w.page.click(f"a[href$='/approvals/{pending['id']}']")
    w.page.wait_for_selector("#status")
    body = w.page.inner_text("main")
    assert "master" in body and "to-delete" in body  # the proposer, and the team as it is now
    w.shot("approval")
    w.page.click("form[action$='/approve'] button")
    w.page.wait_for_selector("#status")
    assert w.page.inner_text("#status") in ("approving", "approved")
    teams = master(gateway, "GET", "/admin/teams?limit=1000")["data"]
    assert doomed not in {t["id"] for t in teams}
    w.close()


def test_every_page_loads_without_a_console_error(browser: Browser, gateway: Gateway) -> None:
    for model in ("paid", "paid", "chat"):  # some spend for the spend page to draw
        answer = httpx.post(
            gateway.base_url + "/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16},
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
    acme = master(gateway, "POST", "/admin/teams", name="acme")["id"]
    plan = master(gateway, "POST", "/admin/plans", name="resell", markup="1.25")
    master(gateway, "POST", f"/admin/teams/{acme}/billing", plan_id=plan["id"], prepaid=True)
    master(gateway, "POST", f"/admin/teams/{acme}/credits", amount="50.00", note="first top-up")
    master(gateway, "POST", "/admin/presets", name="tutor", team_id=acme, model="paid", revenue_share="0.3")
    flushed(gateway)
    w = Watched(browser, gateway)
    w.sign_in(MASTER_KEY)
    for path, shot in (
        ("", "overview"),
        ("?window=month", None),
        ("/keys", None),
        ("/teams", "teams"),
        ("/users", "users"),
        ("/audit", None),
        ("/approvals?status=all", None),
        ("/providers", "providers"),
        ("/budgets", None),
        ("/request-logs", None),
        ("/spend?group_by=model&since=1d", "spend"),
        ("/billing", "billing"),
        (f"/teams/{acme}/billing", "team-billing"),
        ("/presets", "presets"),
        ("/exit-report?since=1d", "exit-report"),
    ):
        assert w.goto(path) == 200, path
        assert w.page.locator("h1").count() == 1
        if shot:
            w.shot(shot)
    w.page.click("form.who button")
    w.page.wait_for_url(re.compile(r".*/ui/login$"))
    assert w.goto("/keys") == 200 and w.page.url.endswith("/ui/login?next=/ui/keys")  # signed out
    w.close()


def second_admin(gateway: Gateway) -> str:
    """A key of the organisation's second admin (a person besides the master key's)."""
    users = master(gateway, "GET", "/admin/users?limit=1000")["data"]
    person = next((u for u in users if u["email"] == "second@example.com"), None)
    if person is None:
        person = master(gateway, "POST", "/admin/users", email="second@example.com", role="admin")
    return str(
        master(gateway, "POST", "/admin/keys", name="second-admin", role="admin", user_id=person["id"])["key"]
    )


def test_set_a_budget_see_its_bar_fill_and_then_the_429(browser: Browser, gateway: Gateway) -> None:
    key = master(gateway, "POST", "/admin/keys", name="bar-watched")
    w = Watched(browser, gateway)
    w.sign_in(MASTER_KEY)
    w.page.click("nav a[href$='/budgets']")
    w.page.wait_for_url(re.compile(r".*/ui/budgets$"))
    w.page.select_option("#scope", "key")
    w.page.fill("#subject", key["id"])
    w.page.fill("#limit", str(2 * PER_REQUEST / 1_000_000))
    w.page.fill("#soft_limit", str(PER_REQUEST / 1_000_000))
    w.page.click("form.panel button[type=submit]")
    w.page.wait_for_url(re.compile(r".*/ui/budgets$"))
    bar = w.page.locator(f"tr:has-text('{key['id']}') svg.bar")
    assert bar.get_attribute("data-used-percent") == "0"
    assert bar.locator("line.soft-marker").get_attribute("x1") == "50"
    assert ask(gateway, key["key"]) == "ok"
    w.page.reload()
    assert bar.get_attribute("data-used-percent") == "50"
    assert "soft limit reached" in w.page.locator(f"tr:has-text('{key['id']}')").inner_text()
    assert bar.locator("rect.used").bounding_box()["width"] > 0  # type: ignore[index]
    w.shot("budgets")
    assert ask(gateway, key["key"]) == "ok"
    assert ask(gateway, key["key"]) == "insufficient_quota"  # the 429 of a spent budget
    w.page.reload()
    assert bar.get_attribute("data-used-percent") == "100"
    w.page.locator(f"tr:has-text('{key['id']}')").locator("button", has_text="Remove").click()
    w.page.wait_for_url(re.compile(r".*/ui/budgets$"))
    assert key["id"] not in w.page.inner_text("#budget-list")
    assert ask(gateway, key["key"]) == "ok"  # no budget: served again
    w.close()


def test_search_the_request_log_and_open_an_entry(browser: Browser, gateway: Gateway) -> None:
    key = master(gateway, "POST", "/admin/keys", name="log-searched")
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key["key"], max_retries=0)
    try:
        for text in ("about the weather", XSS, "about the tides"):
            client.chat.completions.create(model="chat", messages=[{"role": "user", "content": text}])
    finally:
        client.close()
    w = Watched(browser, gateway)
    w.sign_in(MASTER_KEY)
    w.page.click("nav a[href$='/request-logs']")
    w.page.wait_for_url(re.compile(r".*/ui/request-logs$"))
    w.page.fill("#filter-key_id", key["id"])
    w.page.fill("#filter-q", "window.__xss")
    w.page.click("form.filters button[type=submit]")
    w.page.wait_for_url(re.compile(r".*q=window.__xss.*"))
    rows = w.page.locator("#request-log tbody tr[data-request-id]")
    assert rows.count() == 1
    w.shot("request-logs")
    rows.first.locator("a").click()
    w.page.wait_for_selector("#entry-request")
    assert json.dumps(XSS) in w.page.inner_text("#entry-request")  # the request, as JSON text
    assert '"content": "' in w.page.inner_text("#entry-response")
    assert w.page.evaluate("() => window.__xss") is None and w.dialogs == []
    w.shot("request-log")
    w.close()


def test_change_and_rotate_a_key_on_its_page(browser: Browser, gateway: Gateway) -> None:
    key = master(gateway, "POST", "/admin/keys", name="to-rotate")
    w = Watched(browser, gateway)
    w.sign_in(MASTER_KEY)
    w.page.fill("#q", "to-rotate")
    w.page.wait_for_url(re.compile(r".*q=to-rotate"))
    w.page.click("#key-list a:has-text('to-rotate')")
    w.page.wait_for_selector("#key-change")
    w.page.fill("#name", "rotated-one")
    w.page.fill("#models", "chat")
    w.page.fill("#max_budget", "7.25")
    w.page.click("#key-change button[type=submit]")
    w.page.wait_for_selector("h1:has-text('rotated-one')")
    assert w.page.inner_text("#key-models") == "chat" and "$7.25" in w.page.inner_text("#key-budget")
    w.shot("key")
    w.page.fill("#grace", "0s")
    w.page.click("#key-rotate button[type=submit]")
    w.page.wait_for_selector("#new-key")
    assert w.dialogs == ["Rotate the key rotated-one?"]
    new = w.page.input_value("#new-key")
    assert new.startswith("sk-") and new != key["key"]
    client = openai.OpenAI(base_url=gateway.base_url, api_key=new, max_retries=0)
    try:
        assert client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.NotFoundError):  # the models it may use were kept
            client.chat.completions.create(model="paid", messages=[{"role": "user", "content": "hi"}])
    finally:
        client.close()
    old = openai.OpenAI(base_url=gateway.base_url, api_key=key["key"], max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError):
            old.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    finally:
        old.close()
    w.close()


def test_propose_a_provider_removal_and_approve_it_as_a_second_admin(
    browser: Browser, gateway: Gateway
) -> None:
    second = second_admin(gateway)
    proposer = Watched(browser, gateway)
    proposer.sign_in(MASTER_KEY)
    proposer.goto("/providers")
    proposer.page.locator("tr[data-provider='spare'] button", has_text="Take out of service").click()
    proposer.page.wait_for_url(re.compile(r".*/ui/approvals/.+"))
    assert proposer.dialogs == ["Take spare out of service on every instance?"]
    assert proposer.page.inner_text("#status") == "pending"
    action = proposer.page.url.rsplit("/", 1)[1]
    proposer.goto("/providers")
    assert proposer.page.inner_text("tr[data-provider='spare'] td.in-service") == "yes"  # not before approval

    approver = Watched(browser, gateway)
    approver.sign_in(second)
    approver.goto("/approvals")
    approver.page.click(f"a[href$='/approvals/{action}']")
    approver.page.wait_for_selector("#status")
    assert "remove_provider" in approver.page.inner_text("main") or "spare" in approver.page.inner_text(
        "main"
    )
    approver.page.click("form[action$='/approve'] button")
    approver.page.wait_for_selector("#status")
    assert approver.page.inner_text("#status") in ("approving", "approved")
    approver.close()

    proposer.goto("/providers")
    assert proposer.page.inner_text("tr[data-provider='spare'] td.in-service") == "no"
    proposer.shot("provider-removed")
    proposer.page.locator("tr[data-provider='spare'] button", has_text="Restore").click()
    proposer.page.wait_for_url(re.compile(r".*/ui/providers$"))
    assert proposer.page.inner_text("tr[data-provider='spare'] td.in-service") == "yes"
    proposer.close()
