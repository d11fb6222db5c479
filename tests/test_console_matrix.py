"""Every console route x every kind of caller, from the console's live route table (the API's
routes have theirs in tests/test_route_matrix.py): a console route added without a row here fails.

Each caller signs in afresh for each call (a member's key cannot: it has no session, like an
anonymous browser) and sends the session's CSRF token with every change, so what is refused is
refused by the server's authority, never for a missing token. Viewers (of the team `red`, and of
the whole organisation) read what an admin of their scope reads, and every change they send is
refused (403) before any page's code runs. Each call's path
names a fresh object of the team `red` where it would change it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gateway import MASTER_KEY, Gateway, settings_for

CALLERS = (
    "none",
    "viewer",
    "member",
    "red_admin",
    "blue_admin",
    "org_viewer",
    "org_admin",
    "owner",
    "master",
)

# 303: a redirect (GET without a session: to the sign-in page; a change done: to the page showing
# it); 403 for a change without a session, one the caller's authority refuses, or any a viewer
# sends; 404 for another team's things.
EXPECTED: dict[str, str] = {
    "GET /ui": "303 200 303 200 200 200 200 200 200",
    "GET /ui/login": "200 200 200 200 200 200 200 200 200",
    "POST /ui/login": "400 303 403 303 303 303 303 303 303",
    "POST /ui/logout": "303 303 303 303 303 303 303 303 303",
    "GET /ui/static/{name}": "200 200 200 200 200 200 200 200 200",
    # single sign-on: not set up here (tests/test_console_sso.py signs in through a provider)
    "GET /ui/login/oidc": "404 404 404 404 404 404 404 404 404",
    "GET /ui/login/oidc/callback": "404 404 404 404 404 404 404 404 404",
    "GET /ui/keys": "303 200 303 200 200 200 200 200 200",
    "POST /ui/keys": "403 403 403 200 403 403 200 200 200",
    "POST /ui/keys/{key_id}/revoke": "403 403 403 303 404 403 303 303 303",
    "GET /ui/keys/{key_id}": "303 200 303 200 404 200 200 200 200",
    "POST /ui/keys/{key_id}": "403 403 403 303 404 403 303 303 303",
    "POST /ui/keys/{key_id}/rotate": "403 403 403 200 404 403 200 200 200",
    "GET /ui/teams": "303 200 303 200 200 200 200 200 200",
    "POST /ui/teams": "403 403 403 403 403 403 303 303 303",
    "GET /ui/teams/{team_id}": "303 200 303 200 404 200 200 200 200",
    "POST /ui/teams/{team_id}/members": "403 403 403 303 404 403 303 303 303",
    "GET /ui/users": "303 200 303 200 200 200 200 200 200",
    "POST /ui/users": "403 403 403 403 403 403 303 303 303",
    "GET /ui/audit": "303 200 303 200 200 200 200 200 200",
    "GET /ui/approvals": "303 200 303 200 200 200 200 200 200",
    "GET /ui/approvals/{action_id}": "303 200 303 200 404 200 200 200 200",
    # the pending action is the master key's: it may withdraw it, never approve it
    "POST /ui/approvals/{action_id}/approve": "403 403 403 303 404 403 303 303 403",
    "POST /ui/approvals/{action_id}/reject": "403 403 403 303 404 403 303 303 303",
    "GET /ui/providers": "303 403 303 403 403 200 200 200 200",
    # under the two-person rule a removal is proposed: the pending action's page
    "POST /ui/providers/{provider}/remove": "403 403 403 403 403 403 303 303 303",
    "POST /ui/providers/{provider}/restore": "403 403 403 403 403 403 303 303 303",
    "GET /ui/budgets": "303 200 303 200 200 200 200 200 200",
    # spend: a team's admin reads their team's (the same page, narrowed), the organisation all of it
    "GET /ui/spend": "303 200 303 200 200 200 200 200 200",
    "GET /ui/spend.csv": "303 200 303 200 200 200 200 200 200",
    # the organisation's owners and admins, as GET /admin/exit-report
    "GET /ui/exit-report": "303 403 303 403 403 200 200 200 200",
    "POST /ui/budgets": "403 403 403 303 404 403 303 303 303",
    # the budget was set by the organisation: a team's admin cannot remove it from below
    "POST /ui/budgets/{budget_id}/delete": "403 403 403 403 404 403 303 303 303",
    # billing is the organisation's to set; its teams' admins and viewers read their own account
    "GET /ui/billing": "303 200 303 200 200 200 200 200 200",
    "POST /ui/plans": "403 403 403 403 403 403 303 303 303",
    "GET /ui/teams/{team_id}/billing": "303 200 303 200 404 200 200 200 200",
    "POST /ui/teams/{team_id}/billing": "403 403 403 403 403 403 303 303 303",
    "POST /ui/teams/{team_id}/credits": "403 403 403 403 403 403 303 303 303",
    # presets: a team's admins publish and withdraw their team's (the preset here is red's)
    "GET /ui/presets": "303 200 303 200 200 200 200 200 200",
    "POST /ui/presets": "403 403 403 303 403 403 303 303 303",
    "POST /ui/presets/{name}/withdraw": "403 403 403 303 403 403 303 303 303",
    "GET /ui/request-logs": "303 200 303 200 200 200 200 200 200",
    "GET /ui/request-logs/{request_id}": "303 200 303 200 404 200 200 200 200",
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    doc: dict[str, Any] = {
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
        "governance": {"piecewise_revocations": 100_000},
        "auth": {"failed_attempts": {"limit": 0}},
        "request_logs": {"log_by_default": True},
    }
    gateway = Gateway(settings_for(doc, Path(tmp_path_factory.mktemp("console-matrix")))).start()
    yield gateway
    gateway.stop()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


class World:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.serial = itertools.count()
        self.red = self.ok("POST", "/admin/teams", name="red")["id"]
        self.blue = self.ok("POST", "/admin/teams", name="blue")["id"]
        users = {}
        for name, role in (("org_viewer", "viewer"), ("org_admin", "admin"), ("owner", "owner")):
            users[name] = self.ok("POST", "/admin/users", email=f"{name}@example.com", role=role)["id"]
        for name, team, role in (
            ("viewer", self.red, "viewer"),
            ("member", self.red, "member"),
            ("red_admin", self.red, "admin"),
            ("blue_admin", self.blue, "admin"),
        ):
            users[name] = self.ok("POST", "/admin/users", email=f"{name}@example.com")["id"]
            self.ok("POST", f"/admin/teams/{team}/members", user_id=users[name], role=role)
        self.keys: dict[str, str | None] = {"none": None, "master": MASTER_KEY}
        for name, (team, role) in {
            "viewer": (self.red, "viewer"),
            "member": (self.red, "member"),
            "red_admin": (self.red, "admin"),
            "blue_admin": (self.blue, "admin"),
            "org_viewer": (None, "viewer"),
            "org_admin": (None, "admin"),
            "owner": (None, "owner"),
        }.items():
            self.keys[name] = self.ok(
                "POST", "/admin/keys", name=name, user_id=users[name], role=role, team_id=team
            )["key"]

    def ok(self, method: str, path: str, **body: Any) -> Any:
        answer = self.http.request(
            method, path, headers={"authorization": f"Bearer {MASTER_KEY}"}, json=body or None
        )
        assert answer.status_code in (200, 202), (method, path, answer.text)
        return answer.json()

    def name(self) -> str:
        return f"c{next(self.serial)}"

    def user(self) -> str:
        user = self.ok("POST", "/admin/users", email=f"{self.name()}@example.com")["id"]
        self.ok("POST", f"/admin/teams/{self.red}/members", user_id=user, role="member")
        return str(user)

    def action(self) -> str:
        pending = self.ok("POST", f"/admin/teams/{self.red}/members", user_id=self.user(), role="admin")
        assert pending["object"] == "pending_action", pending
        return str(pending["id"])

    def red_key(self) -> str:
        return str(self.ok("POST", "/admin/keys", name=self.name(), team_id=self.red)["id"])

    def budget(self) -> str:
        made = self.ok("POST", "/admin/budgets", scope="key", subject_id=self.red_key(), limit="10.00")
        return str(made["id"])

    def logged_request(self) -> str:
        """A request of a red key's, in the request log."""
        key = self.ok("POST", "/admin/keys", name=self.name(), team_id=self.red)["key"]
        answer = self.http.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert answer.status_code == 200, answer.text
        return str(self.ok("GET", "/admin/request-logs?limit=1")["data"][0]["request_id"])

    def preset(self) -> str:
        name = self.name()
        self.ok("POST", "/admin/presets", name=name, team_id=self.red, model="chat")
        return name

    def path(self, pattern: str) -> str:
        fill: dict[str, Callable[[], str]] = {
            "{team_id}": lambda: self.red,
            "{key_id}": self.red_key,
            "{action_id}": self.action,
            "{name}": lambda: self.preset() if pattern.startswith("/ui/presets") else "htmx.min.js",
            "{budget_id}": self.budget,
            "{request_id}": self.logged_request,
            "{provider}": lambda: "fake",
        }
        for placeholder, make in fill.items():
            if placeholder in pattern:
                pattern = pattern.replace(placeholder, make())
        return pattern

    def form(self, route: str, key: str | None) -> dict[str, str]:
        forms: dict[str, Callable[[], dict[str, str]]] = {
            "POST /ui/login": lambda: {"key": key or ""},
            "POST /ui/keys": lambda: {"name": self.name(), "team": self.red},
            "POST /ui/teams": lambda: {"name": self.name()},
            "POST /ui/teams/{team_id}/members": lambda: {"user": self.user(), "role": "member"},
            "POST /ui/users": lambda: {"email": f"{self.name()}@example.com"},
            "POST /ui/keys/{key_id}": lambda: {"name": self.name(), "max_budget": "5.00"},
            "POST /ui/budgets": lambda: {"scope": "key", "subject": self.red_key(), "limit": "10.00"},
            "POST /ui/plans": lambda: {"name": self.name(), "markup": "1.2"},
            "POST /ui/teams/{team_id}/billing": lambda: {"markup": "1.1"},
            "POST /ui/teams/{team_id}/credits": lambda: {"amount": "1.00"},
            "POST /ui/presets": lambda: {"name": self.name(), "team": self.red, "model": "chat"},
        }
        make = forms.get(route)
        return {} if make is None else make()


def call(gateway: Gateway, world: World, method: str, pattern: str, caller: str) -> int:
    """One call as `caller` would make it from the console: signed in (if its key can), with the
    page's CSRF token in the form."""
    with httpx.Client(base_url=gateway.root_url, timeout=30) as browser:
        login = browser.get("/ui/login")
        token = _csrf(login.text)
        key = world.keys[caller]
        route = f"{method} {pattern}"
        if key is not None and route != "POST /ui/login":
            browser.post("/ui/login", data={"key": key, "csrf": token})
            if "turnout_session" in browser.cookies:
                token = _csrf(browser.get("/ui/keys").text)
        path = world.path(pattern)
        if method == "GET":
            return browser.get(path).status_code
        return browser.post(path, data={**world.form(route, key), "csrf": token}).status_code


def test_every_console_route_answers_every_caller_as_the_matrix_says(gateway: Gateway) -> None:
    assert gateway.server is not None
    console = gateway.server.config.app.console
    assert console is not None
    seen: dict[str, str] = {}
    with httpx.Client(base_url=gateway.root_url, timeout=30) as http:
        world = World(http)
        for method, pattern in console.route_table():
            statuses = [str(call(gateway, world, method, pattern, caller)) for caller in CALLERS]
            seen[f"{method} {pattern}"] = " ".join(statuses)
    missing = sorted(set(seen) - set(EXPECTED))
    assert not missing, "console routes with no row in the matrix (add one): " + ", ".join(missing)
    assert not set(EXPECTED) - set(seen), "rows for console routes that no longer exist"
    wrong = {route: (EXPECTED[route], got) for route, got in seen.items() if got != EXPECTED[route]}
    assert not wrong, "\n".join(
        f"{r}: expected {e}, got {g}  ({' '.join(CALLERS)})" for r, (e, g) in wrong.items()
    )


def test_the_api_route_table_leaves_the_console_to_its_own_matrix(gateway: Gateway) -> None:
    assert gateway.server is not None
    api_paths = {path for _, path in gateway.server.config.app.route_table()}
    assert not any(p == "/ui" or p.startswith("/ui/") for p in api_paths)


def test_docs_console_md_lists_every_console_route_and_shows_every_screenshot(gateway: Gateway) -> None:
    assert gateway.server is not None and gateway.server.config.app.console is not None
    docs = Path(__file__).resolve().parents[1] / "docs"
    text = (docs / "console.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z]+)` \| `(/ui[^`]*)` \|", text, re.MULTILINE))
    assert documented == set(gateway.server.config.app.console.route_table())
    shown = set(re.findall(r"\]\(console/([a-z-]+\.png)\)", text))
    assert shown == {p.name for p in (docs / "console").glob("*.png")}
