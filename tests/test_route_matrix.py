"""Every route x every kind of caller, from the gateway's live route table: a route added without a
row here fails the build, and every row says what each caller gets.

Callers: no key, a junk key, a viewer and a member of the team `red`, an admin of `red`, an admin
of another team (`blue`), an organisation-wide viewer, an organisation admin, an organisation
owner, and the master key. A viewer reads what an admin of its scope reads and changes nothing:
every change it asks for is refused (403) before any service sees it. Each
call's path names a fresh object of `red` where it would change it (a key, a user, a budget, a
preset, a pending action), so one caller's call never decides the next one's. The two-person rule
is on (as shipped): an action under it answers 202 with the pending action, and changes nothing.

The web console's pages (`/ui`) are not API routes: tests/test_console_matrix.py has their matrix,
each caller signed in with a session cookie and sending the CSRF token.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.batch_upstream import BatchUpstream
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for

CALLERS = (
    "none",
    "junk",
    "viewer",
    "member",
    "red_admin",
    "blue_admin",
    "org_viewer",
    "org_admin",
    "owner",
    "master",
)

# Who gets what, callers in the order of CALLERS. The public OpenAI and Anthropic API is any valid
# key's; the admin API is owners' and admins' (keys, audit, approvals), each within their scope, or
# readable by a team's members where it is theirs to read (their team, its budgets and billing).
EXPECTED: dict[str, str] = {
    # ------------------------------------------------------------------ metrics
    # Prometheus metrics: the organisation's owners and admins (and the metrics key, tests/test_metrics.py)
    "GET /metrics": "401 401 403 403 403 403 200 200 200 200",
    # ------------------------------------------------------------------ health and the API
    "GET /health/live": "200 200 200 200 200 200 200 200 200 200",
    "HEAD /health/live": "200 200 200 200 200 200 200 200 200 200",
    "GET /health/ready": "200 200 200 200 200 200 200 200 200 200",
    "HEAD /health/ready": "200 200 200 200 200 200 200 200 200 200",
    "GET /openapi.json": "200 200 200 200 200 200 200 200 200 200",
    "POST /v1/chat/completions": "401 401 200 200 200 200 200 200 200 200",
    "POST /chat/completions": "401 401 200 200 200 200 200 200 200 200",
    "POST /v1/completions": "401 401 200 200 200 200 200 200 200 200",
    "POST /completions": "401 401 200 200 200 200 200 200 200 200",
    "POST /v1/embeddings": "401 401 200 200 200 200 200 200 200 200",
    "POST /embeddings": "401 401 200 200 200 200 200 200 200 200",
    "POST /v1/rerank": "401 401 200 200 200 200 200 200 200 200",
    "POST /rerank": "401 401 200 200 200 200 200 200 200 200",
    "POST /v2/rerank": "401 401 200 200 200 200 200 200 200 200",
    "POST /v1/moderations": "401 401 200 200 200 200 200 200 200 200",
    "POST /moderations": "401 401 200 200 200 200 200 200 200 200",
    "POST /v1/images/generations": "401 401 200 200 200 200 200 200 200 200",
    "POST /images/generations": "401 401 200 200 200 200 200 200 200 200",
    "POST /v1/audio/transcriptions": "401 401 200 200 200 200 200 200 200 200",
    "POST /audio/transcriptions": "401 401 200 200 200 200 200 200 200 200",
    "POST /v1/audio/speech": "401 401 200 200 200 200 200 200 200 200",
    "POST /audio/speech": "401 401 200 200 200 200 200 200 200 200",
    "POST /v1/messages": "401 401 200 200 200 200 200 200 200 200",
    "POST /messages": "401 401 200 200 200 200 200 200 200 200",
    "POST /v1/messages/count_tokens": "401 401 200 200 200 200 200 200 200 200",
    "POST /messages/count_tokens": "401 401 200 200 200 200 200 200 200 200",
    "POST /v1/responses": "401 401 200 200 200 200 200 200 200 200",
    "POST /responses": "401 401 200 200 200 200 200 200 200 200",
    "GET /v1/models": "401 401 200 200 200 200 200 200 200 200",
    "GET /models": "401 401 200 200 200 200 200 200 200 200",
    "GET /v1/models/{model}": "401 401 200 200 200 200 200 200 200 200",
    "GET /models/{model}": "401 401 200 200 200 200 200 200 200 200",
    # a provider's own API, on the paths its configuration allows (the fake answers them all)
    "GET /passthrough/{provider}/{path}": "401 401 200 200 200 200 200 200 200 200",
    "POST /passthrough/{provider}/{path}": "401 401 200 200 200 200 200 200 200 200",
    "PUT /passthrough/{provider}/{path}": "401 401 200 200 200 200 200 200 200 200",
    "PATCH /passthrough/{provider}/{path}": "401 401 200 200 200 200 200 200 200 200",
    "DELETE /passthrough/{provider}/{path}": "401 401 200 200 200 200 200 200 200 200",
    # a stored response is its key's alone (the master key's here)
    "GET /v1/responses/{response_id}": "401 401 404 404 404 404 404 404 404 200",
    "DELETE /v1/responses/{response_id}": "401 401 404 404 404 404 404 404 404 200",
    "GET /v1/responses/{response_id}/input_items": "401 401 404 404 404 404 404 404 404 200",
    "GET /responses/{response_id}": "401 401 404 404 404 404 404 404 404 200",
    "DELETE /responses/{response_id}": "401 401 404 404 404 404 404 404 404 200",
    "GET /responses/{response_id}/input_items": "401 401 404 404 404 404 404 404 404 200",
    # a batch and its files are their key's team's alone (red's member's here); any key batches
    "POST /v1/files": "401 401 200 200 200 200 200 200 200 200",
    "POST /files": "401 401 200 200 200 200 200 200 200 200",
    "GET /v1/files": "401 401 200 200 200 200 200 200 200 200",
    "GET /files": "401 401 200 200 200 200 200 200 200 200",
    "GET /v1/files/{file_id}": "401 401 200 200 200 404 404 404 404 404",
    "GET /files/{file_id}": "401 401 200 200 200 404 404 404 404 404",
    "DELETE /v1/files/{file_id}": "401 401 200 200 200 404 404 404 404 404",
    "DELETE /files/{file_id}": "401 401 200 200 200 404 404 404 404 404",
    "GET /v1/files/{file_id}/content": "401 401 200 200 200 404 404 404 404 404",
    "GET /files/{file_id}/content": "401 401 200 200 200 404 404 404 404 404",
    "POST /v1/batches": "401 401 200 200 200 404 404 404 404 404",
    "POST /batches": "401 401 200 200 200 404 404 404 404 404",
    "GET /v1/batches": "401 401 200 200 200 200 200 200 200 200",
    "GET /batches": "401 401 200 200 200 200 200 200 200 200",
    "GET /v1/batches/{batch_id}": "401 401 200 200 200 404 404 404 404 404",
    "GET /batches/{batch_id}": "401 401 200 200 200 404 404 404 404 404",
    "POST /v1/batches/{batch_id}/cancel": "401 401 200 200 200 404 404 404 404 404",
    "POST /batches/{batch_id}/cancel": "401 401 200 200 200 404 404 404 404 404",
    # Anthropic's message batches: the same (red's member's batch here)
    "POST /v1/messages/batches": "401 401 200 200 200 200 200 200 200 200",
    "POST /messages/batches": "401 401 200 200 200 200 200 200 200 200",
    "GET /v1/messages/batches": "401 401 200 200 200 200 200 200 200 200",
    "GET /messages/batches": "401 401 200 200 200 200 200 200 200 200",
    "GET /v1/messages/batches/{batch_id}": "401 401 200 200 200 404 404 404 404 404",
    "GET /messages/batches/{batch_id}": "401 401 200 200 200 404 404 404 404 404",
    "DELETE /v1/messages/batches/{batch_id}": "401 401 200 200 200 404 404 404 404 404",
    "DELETE /messages/batches/{batch_id}": "401 401 200 200 200 404 404 404 404 404",
    "POST /v1/messages/batches/{batch_id}/cancel": "401 401 200 200 200 404 404 404 404 404",
    "POST /messages/batches/{batch_id}/cancel": "401 401 200 200 200 404 404 404 404 404",
    "GET /v1/messages/batches/{batch_id}/results": "401 401 200 200 200 404 404 404 404 404",
    "GET /messages/batches/{batch_id}/results": "401 401 200 200 200 404 404 404 404 404",
    # ------------------------------------------------------------------ keys: owners and admins
    # (a team's admin manages its keys; another team's keys are absent to them; viewers read them)
    "GET /admin/keys": "401 401 200 403 200 200 200 200 200 200",
    "POST /admin/keys": "401 401 403 403 200 403 403 200 200 200",
    "GET /admin/keys/{key_id}": "401 401 200 403 200 404 200 200 200 200",
    "PATCH /admin/keys/{key_id}": "401 401 403 403 200 404 403 200 200 200",
    "POST /admin/keys/{key_id}/revoke": "401 401 403 403 200 404 403 200 200 200",
    "POST /admin/keys/{key_id}/rotate": "401 401 403 403 200 404 403 200 200 200",
    # ------------------------------------------------------------------ teams and users
    # members read their team; the organisation creates teams and users; deleting a team and
    # revoking its keys wait for a second person (202); a team's admin may not delete it
    "GET /admin/teams": "401 401 200 200 200 200 200 200 200 200",
    "POST /admin/teams": "401 401 403 403 403 403 403 200 200 200",
    "GET /admin/teams/{team_id}": "401 401 200 200 200 404 200 200 200 200",
    "DELETE /admin/teams/{team_id}": "401 401 403 403 403 404 403 202 202 202",
    # a team's rate limits are the organisation's to set (its own admins cannot lift them)
    "PATCH /admin/teams/{team_id}": "401 401 403 403 403 404 403 200 200 200",
    "POST /admin/teams/{team_id}/members": "401 401 403 403 200 404 403 200 200 200",
    "DELETE /admin/teams/{team_id}/members/{user_id}": "401 401 403 403 200 404 403 200 200 200",
    "POST /admin/teams/{team_id}/revoke-keys": "401 401 403 403 202 404 403 202 202 202",
    "GET /admin/users": "401 401 200 200 200 200 200 200 200 200",
    "POST /admin/users": "401 401 403 403 403 403 403 200 200 200",
    "GET /admin/users/{user_id}": "401 401 200 200 200 404 200 200 200 200",
    "PATCH /admin/users/{user_id}": "401 401 403 403 403 403 403 200 200 200",
    "DELETE /admin/users/{user_id}": "401 401 403 403 403 403 403 200 200 200",
    # ------------------------------------------------------------------ budgets
    # a team's admin sets its keys' budgets, but cannot remove one the organisation set
    "GET /admin/budgets": "401 401 200 200 200 200 200 200 200 200",
    "POST /admin/budgets": "401 401 403 403 200 404 403 200 200 200",
    "GET /admin/budgets/{budget_id}": "401 401 200 200 200 404 200 200 200 200",
    "DELETE /admin/budgets/{budget_id}": "401 401 403 403 403 404 403 200 200 200",
    # ------------------------------------------------------------------ governance
    # the action here is the master key's: it may withdraw it, never approve it; viewers read them
    "GET /admin/audit": "401 401 200 403 200 200 200 200 200 200",
    "GET /admin/approvals": "401 401 200 403 200 200 200 200 200 200",
    "GET /admin/approvals/{action_id}": "401 401 200 403 200 404 200 200 200 200",
    "POST /admin/approvals/{action_id}/approve": "401 401 403 403 200 404 403 200 200 403",
    "POST /admin/approvals/{action_id}/reject": "401 401 403 403 200 404 403 200 200 200",
    # ------------------------------------------------------------------ billing and presets
    # money is the organisation's; a team's members read its terms; presets are published by
    # a team's admins (others see them listed, without their prompts)
    "GET /admin/plans": "401 401 200 200 200 200 200 200 200 200",
    "POST /admin/plans": "401 401 403 403 403 403 403 200 200 200",
    "GET /admin/teams/{team_id}/billing": "401 401 200 200 200 404 200 200 200 200",
    "POST /admin/teams/{team_id}/billing": "401 401 403 403 403 403 403 200 200 200",
    "GET /admin/teams/{team_id}/credits": "401 401 200 200 200 404 200 200 200 200",
    "POST /admin/teams/{team_id}/credits": "401 401 403 403 403 403 403 200 200 200",
    "GET /admin/presets": "401 401 200 200 200 200 200 200 200 200",
    "POST /admin/presets": "401 401 403 403 200 403 403 200 200 200",
    "DELETE /admin/presets/{name}": "401 401 403 403 200 403 403 200 200 200",
    # ------------------------------------------------------------------ spend
    # everyone reads spend within their scope: a team's keys their team's, the organisation's
    # admins everything (asking beyond one's scope is 403: tests/test_spend_api.py)
    "GET /admin/spend": "401 401 200 200 200 200 200 200 200 200",
    # ------------------------------------------------------------------ providers: the organisation's
    "GET /admin/providers": "401 401 403 403 403 403 200 200 200 200",
    "DELETE /admin/providers/{name}": "401 401 403 403 403 403 403 202 202 202",
    "POST /admin/providers/{name}/restore": "401 401 403 403 403 403 403 200 200 200",
    "GET /admin/exit-report": "401 401 403 403 403 403 200 200 200 200",
    # game days: the organisation's admins; starting one is under the two-person rule
    "GET /admin/game-days": "401 401 403 403 403 403 200 200 200 200",
    "POST /admin/game-days": "401 401 403 403 403 403 403 202 202 202",
    "POST /admin/game-days/{game_day_id}/end": "401 401 403 403 403 403 403 200 200 200",
    # ------------------------------------------------------------------ the request log
    # prompts and answers: owners, admins and viewers only, a team's their own team's (the entry
    # read is one of red's); logging is switched on and off by whoever manages the key or team
    "GET /admin/request-logs": "401 401 200 403 200 200 200 200 200 200",
    "GET /admin/request-logs/export": "401 401 200 403 200 200 200 200 200 200",
    "GET /admin/request-logs/{request_id}": "401 401 200 403 200 404 200 200 200 200",
    "GET /admin/keys/{key_id}/request-log": "401 401 200 403 200 404 200 200 200 200",
    "PUT /admin/keys/{key_id}/request-log": "401 401 403 403 200 404 403 200 200 200",
    "GET /admin/teams/{team_id}/request-log": "401 401 200 403 200 404 200 200 200 200",
    "PUT /admin/teams/{team_id}/request-log": "401 401 403 403 200 404 403 200 200 200",
    # ------------------------------------------------------------------ configuration: owners only
    # reading the configuration again changes every alias for everyone: the organisation's owners
    # and the master key, not its admins
    "POST /admin/reload": "401 401 403 403 403 403 403 403 200 200",
}


@pytest.fixture(scope="module")
def batch_provider() -> Iterator[BatchUpstream]:
    server = BatchUpstream(UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, batch_provider: BatchUpstream) -> Iterator[Gateway]:
    batches = {"type": "openai", "base_url": batch_provider.base_url, "api_key": "env:UPSTREAM_KEY"}
    doc: dict[str, Any] = {
        "providers": {
            "fake": {"type": "fake", "passthrough": ["/models"]},
            "batches": batches,
            "claude-batches": {**batches, "type": "anthropic"},
        },
        "models": {
            "chat": {"provider": "fake", "model": "m"},
            "embed": {"provider": "fake", "model": "e"},
            "rerank": {"provider": "fake", "model": "r", "supports": {"rerank": True}},
            "moderation": {"provider": "fake", "model": "o", "supports": {"moderation": True}},
            "batched": {"provider": "batches", "model": "gpt-4o-mini"},
            "claude-batched": {"provider": "claude-batches", "model": "claude-sonnet-4-5"},
            "draw": {"provider": "fake", "model": "i", "supports": {"image_generation": True, "chat": False}},
            "listen": {"provider": "fake", "model": "t", "supports": {"transcription": True, "chat": False}},
            "say": {"provider": "fake", "model": "s", "supports": {"speech": True, "chat": False}},
        },
        # the matrix revokes many of red's keys: none of them should wait for a second person
        "governance": {"piecewise_revocations": 100_000},
        # and it presents a junk key to every route: its address must not be throttled for it
        # (tests/test_auth_throttle.py proves the throttle)
        "auth": {"failed_attempts": {"limit": 0}},
    }
    environ = {"UPSTREAM_KEY": UPSTREAM_KEY}
    gateway = Gateway(settings_for(doc, Path(tmp_path_factory.mktemp("matrix")), environ)).start()
    yield gateway
    gateway.stop()


class World:
    """The organisation the calls are made in, and fresh objects of `red` on demand."""

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
        self.keys: dict[str, str | None] = {
            "none": None,
            "junk": "sk-turnout-not-a-key",
            "master": MASTER_KEY,
        }
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

    def auth(self, key: str | None) -> dict[str, str]:
        return {} if key is None else {"authorization": f"Bearer {key}"}

    def ok(self, method: str, path: str, **body: Any) -> Any:
        answer = self.http.request(method, path, headers=self.auth(MASTER_KEY), json=body or None)
        assert answer.status_code in (200, 202), (method, path, answer.text)
        return answer.json()

    def name(self) -> str:
        return f"n{next(self.serial)}"

    # fresh objects of red, made by the master key
    def user(self) -> str:
        user = self.ok("POST", "/admin/users", email=f"{self.name()}@example.com")["id"]
        self.ok("POST", f"/admin/teams/{self.red}/members", user_id=user, role="member")
        return str(user)

    def key(self) -> str:
        return str(self.ok("POST", "/admin/keys", name=self.name(), team_id=self.red)["id"])

    def budget(self) -> str:
        return str(self.ok("POST", "/admin/budgets", scope="key", subject_id=self.key(), limit="5")["id"])

    def preset(self) -> str:
        name = self.name()
        self.ok("POST", "/admin/presets", name=name, team_id=self.red, model="chat")
        return name

    def response(self) -> str:
        """A response the master key stored."""
        return str(self.ok("POST", "/v1/responses", model="chat", input="hi", store=True)["id"])

    def logged_request(self) -> str:
        """A request of red's, in the request log (red's traffic is logged)."""
        self.ok("PUT", f"/admin/teams/{self.red}/request-log", enabled=True)
        body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        answer = self.http.post("/v1/chat/completions", headers=self.auth(self.keys["member"]), json=body)
        assert answer.status_code == 200, answer.text
        return answer.headers["x-request-id"]

    def batch_file(self) -> str:
        """A batch file red's member uploaded."""
        line = {
            "custom_id": "1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "batched", "messages": [{"role": "user", "content": "hi"}]},
        }
        answer = self.http.post(
            "/v1/files",
            headers=self.auth(self.keys["member"]),
            data={"purpose": "batch"},
            files={"file": ("batch.jsonl", json.dumps(line).encode())},
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["id"])

    def batch(self) -> str:
        """A batch red's member created."""
        body = {
            "input_file_id": self.batch_file(),
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        answer = self.http.post("/v1/batches", headers=self.auth(self.keys["member"]), json=body)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["id"])

    def message_batch(self) -> str:
        """An Anthropic message batch red's member created."""
        answer = self.http.post(
            "/v1/messages/batches", headers=self.auth(self.keys["member"]), json=self.message_batch_body()
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["id"])

    @staticmethod
    def message_batch_body() -> dict[str, Any]:
        params = {
            "model": "claude-batched",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}],
        }
        return {"requests": [{"custom_id": "1", "params": params}]}

    def action(self) -> str:
        """A pending action of red: making a fresh member one of its admins."""
        pending = self.ok("POST", f"/admin/teams/{self.red}/members", user_id=self.user(), role="admin")
        assert pending["object"] == "pending_action", pending
        return str(pending["id"])

    def game_day(self) -> str:
        """A game day under way for a team nobody calls with (proposed by the master key, approved
        by the owner)."""
        green = self.ok("POST", "/admin/teams", name=self.name())["id"]
        pending = self.ok("POST", "/admin/game-days", provider="fake", teams=[green], duration="1h")
        approved = self.http.post(
            f"/admin/approvals/{pending['id']}/approve", headers=self.auth(self.keys["owner"])
        )
        assert approved.status_code == 200, approved.text
        return str(approved.json()["result"]["id"])

    def path(self, pattern: str) -> str:
        fill: dict[str, Callable[[], str]] = {
            "{team_id}": lambda: self.red,
            "{user_id}": self.user,
            "{key_id}": self.key,
            "{budget_id}": self.budget,
            "{action_id}": self.action,
            "{game_day_id}": self.game_day,
            "{name}": lambda: self.preset() if pattern.startswith("/admin/presets") else "fake",
            "{model}": lambda: "chat",
            "{response_id}": self.response,
            "{request_id}": self.logged_request,
            "{provider}": lambda: "fake",
            "{path}": lambda: "models",
            "{file_id}": self.batch_file,
            "{batch_id}": self.message_batch
            if pattern.startswith(("/v1/messages/", "/messages/"))
            else self.batch,
        }
        for placeholder, make in fill.items():
            if placeholder in pattern:
                pattern = pattern.replace(placeholder, make())
        return pattern

    def body(self, method: str, pattern: str) -> dict[str, Any] | None:
        """A valid body for the route: what a caller allowed to call it would send."""
        bodies: dict[str, Callable[[], dict[str, Any]]] = {
            "POST /v1/chat/completions": lambda: {
                "model": "chat",
                "messages": [{"role": "user", "content": "hi"}],
            },
            "POST /v1/embeddings": lambda: {"model": "embed", "input": "hi"},
            "POST /v1/rerank": lambda: {"model": "rerank", "query": "hi", "documents": ["hi", "ho"]},
            "POST /v2/rerank": lambda: {"model": "rerank", "query": "hi", "documents": ["hi", "ho"]},
            "POST /v1/moderations": lambda: {"model": "moderation", "input": "hi"},
            "POST /v1/completions": lambda: {"model": "chat", "prompt": "hi"},
            "POST /v1/messages": lambda: {
                "model": "chat",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}],
            },
            "POST /v1/messages/count_tokens": lambda: {
                "model": "chat",
                "messages": [{"role": "user", "content": "hi"}],
            },
            "POST /v1/responses": lambda: {"model": "chat", "input": "hi"},
            "POST /v1/messages/batches": self.message_batch_body,
            "POST /v1/batches": lambda: {
                "input_file_id": self.batch_file(),
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
            "POST /v1/images/generations": lambda: {"model": "draw", "prompt": "a fox"},
            "POST /v1/audio/speech": lambda: {"model": "say", "voice": "alloy", "input": "hi"},
            "POST /admin/keys": lambda: {"name": self.name(), "team_id": self.red},
            "PATCH /admin/keys/{key_id}": lambda: {"name": self.name()},
            "POST /admin/keys/{key_id}/rotate": lambda: {"grace": "0s"},
            "POST /admin/teams": lambda: {"name": self.name()},
            "PATCH /admin/teams/{team_id}": lambda: {"limits": {"rpm": 1000}, "key_limits": None},
            "POST /admin/teams/{team_id}/members": lambda: {"user_id": self.user(), "role": "member"},
            "POST /admin/users": lambda: {"email": f"{self.name()}@example.com"},
            "PATCH /admin/users/{user_id}": lambda: {"role": "viewer"},
            "POST /admin/budgets": lambda: {"scope": "key", "subject_id": self.key(), "limit": "5"},
            "POST /admin/plans": lambda: {"name": self.name(), "markup": "1.2"},
            "POST /admin/teams/{team_id}/billing": lambda: {"markup": "1.1"},
            "POST /admin/teams/{team_id}/credits": lambda: {"amount": "1.00"},
            "POST /admin/presets": lambda: {"name": self.name(), "team_id": self.red, "model": "chat"},
            "PUT /admin/keys/{key_id}/request-log": lambda: {"enabled": True},
            "PUT /admin/teams/{team_id}/request-log": lambda: {"enabled": True},
            "POST /admin/game-days": lambda: {"provider": "fake", "teams": [self.red], "duration": "1h"},
        }
        kept = ("/admin", "/health", "/passthrough")
        route = f"{method} {pattern if pattern.startswith(kept) else _v1(pattern)}"
        make = bodies.get(route)
        return None if make is None else make()


def _v1(path: str) -> str:
    return path if path.startswith(("/v1/", "/v2/")) or path == "/openapi.json" else "/v1" + path


def observe(gateway: Gateway) -> dict[str, str]:
    assert gateway.server is not None
    table = gateway.server.config.app.route_table()
    seen: dict[str, str] = {}
    with httpx.Client(base_url=gateway.root_url, timeout=30) as http:
        world = World(http)
        for method, pattern in table:
            statuses = []
            for caller in CALLERS:
                path = world.path(pattern)
                body = world.body(method, pattern)
                headers = world.auth(world.keys[caller])
                if method == "POST" and _v1(pattern) == "/v1/files":  # a multipart upload
                    line = b'{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", '
                    line += b'"body": {"model": "batched", "messages": [{"role": "user", "content": "hi"}]}}'
                    form = {"file": ("batch.jsonl", line)}
                    answer = http.post(path, headers=headers, data={"purpose": "batch"}, files=form)
                elif pattern.endswith("/audio/transcriptions"):  # a multipart form
                    form = {"model": "listen"}
                    audio = {"file": ("a.wav", b"RIFF" + bytes(32_000), "audio/wav")}
                    answer = http.request(method, path, headers=headers, data=form, files=audio)
                else:
                    answer = http.request(method, path, headers=headers, json=body)
                statuses.append(str(answer.status_code))
            seen[f"{method} {pattern}"] = " ".join(statuses)
    return seen


def test_every_route_answers_every_caller_as_the_matrix_says(gateway: Gateway) -> None:
    seen = observe(gateway)
    missing = sorted(set(seen) - set(EXPECTED))
    assert not missing, "routes with no row in the matrix (add one): " + ", ".join(missing)
    assert not set(EXPECTED) - set(seen), "rows for routes that no longer exist"
    wrong = {route: (EXPECTED[route], got) for route, got in seen.items() if got != EXPECTED[route]}
    assert not wrong, "\n".join(
        f"{r}: expected {e}, got {g}  ({' '.join(CALLERS)})" for r, (e, g) in wrong.items()
    )
