"""Teams, users and roles through the admin API: team admins manage their own team and nothing
else, no one grants more than they hold, taking rights away reaches the keys at once, the actions
under the two-person rule wait for a second admin, and every change is in the audit log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, Gateway, settings_for

Admin = Callable[..., httpx.Response]


def start(tmp_path: Path, gated: list[str] | None = None) -> Gateway:
    doc: dict[str, Any] = {
        "storage": {"data_dir": str(tmp_path / "data")},
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
    }
    if gated is not None:
        doc["governance"] = {"two_person_rule": gated}
    return Gateway(settings_for(doc, tmp_path / "data")).start()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gateway = start(tmp_path, gated=[])  # the two-person rule off: its own tests turn it on
    yield gateway
    gateway.stop()


def client(gateway: Gateway) -> Iterator[Admin]:
    with httpx.Client(base_url=gateway.root_url, timeout=20) as http:

        def call(method: str, path: str, key: str = MASTER_KEY, **body: Any) -> httpx.Response:
            return http.request(method, path, headers={"authorization": f"Bearer {key}"}, json=body or None)

        yield call


@pytest.fixture
def admin(gateway: Gateway) -> Iterator[Admin]:
    yield from client(gateway)


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


def chat(gateway: Gateway, key: str) -> str:
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20) as sdk:
        answer = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    return answer.choices[0].message.content or ""


def org(admin: Admin) -> dict[str, Any]:
    """Two teams; Alice admin of red, Bob a member of red, Carol a member of blue; a key each."""
    red = ok(admin("POST", "/admin/teams", name="red", metadata={"cost_center": "42"}))
    blue = ok(admin("POST", "/admin/teams", name="blue"))
    people = {}
    for name, team, role in (("alice", red, "admin"), ("bob", red, "member"), ("carol", blue, "member")):
        user = ok(admin("POST", "/admin/users", email=f"{name}@example.com", name=name))
        ok(admin("POST", f"/admin/teams/{team['id']}/members", user_id=user["id"], role=role))
        key = ok(admin("POST", "/admin/keys", name=name, team_id=team["id"], user_id=user["id"], role=role))
        people[name] = {"user": user, "key": key["key"], "key_id": key["id"]}
    return {"red": red["id"], "blue": blue["id"], **people}


def test_a_team_admin_manages_their_team_and_cannot_see_another(gateway: Gateway, admin: Admin) -> None:
    o = org(admin)
    alice, red, blue = o["alice"]["key"], o["red"], o["blue"]
    assert [t["id"] for t in ok(admin("GET", "/admin/teams", alice))["data"]] == [red]
    members = ok(admin("GET", f"/admin/teams/{red}", alice))["members"]
    assert {m["email"]: m["role"] for m in members} == {
        "alice@example.com": "admin",
        "bob@example.com": "member",
    }
    # another team is absent, not forbidden: its existence does not leak
    assert admin("GET", f"/admin/teams/{blue}", alice).status_code == 404
    assert admin("DELETE", f"/admin/teams/{blue}", alice).status_code == 404
    assert (
        admin("POST", f"/admin/teams/{blue}/members", alice, user_id=o["bob"]["user"]["id"]).status_code
        == 404
    )
    assert admin("GET", f"/admin/users/{o['carol']['user']['id']}", alice).status_code == 404
    assert {u["email"] for u in ok(admin("GET", "/admin/users", alice))["data"]} == {
        "alice@example.com",
        "bob@example.com",
    }
    # within the team: issue keys for members, up to their role and hers
    bob_id = o["bob"]["user"]["id"]
    assert ok(admin("POST", "/admin/keys", alice, name="bob 2", user_id=bob_id))["team_id"] == red
    over = admin("POST", "/admin/keys", alice, name="bob 3", user_id=bob_id, role="admin")
    assert over.status_code == 403 and over.json()["error"]["param"] == "role"
    assert admin("POST", "/admin/keys", alice, name="x", team_id=blue).status_code == 403
    # nor can she raise her own team's budget, create teams or users, or hand out org-wide roles
    assert (
        admin("POST", "/admin/budgets", alice, scope="team", subject_id=red, limit="100").status_code == 403
    )
    assert admin("POST", "/admin/teams", alice, name="green").status_code == 403
    assert admin("POST", "/admin/users", alice, email="eve@example.com").status_code == 403
    assert admin("PATCH", f"/admin/users/{bob_id}", alice, role="admin").status_code == 403
    assert (
        admin("POST", f"/admin/teams/{red}/members", alice, user_id=bob_id, role="owner").status_code == 403
    )


def test_members_cannot_administer_and_no_one_grants_above_their_role(gateway: Gateway, admin: Admin) -> None:
    o = org(admin)
    bob, red = o["bob"]["key"], o["red"]
    assert admin("POST", "/admin/keys", bob, name="mine").status_code == 403
    assert (
        admin("POST", f"/admin/teams/{red}/members", bob, user_id=o["carol"]["user"]["id"]).status_code == 403
    )
    assert admin("DELETE", f"/admin/teams/{red}", bob).status_code == 403
    assert ok(admin("GET", f"/admin/teams/{red}", bob))["name"] == "red"  # members may read their team
    # a user's key can never hold more than the user does, whoever issues it
    carol = o["carol"]["user"]["id"]
    refused = admin("POST", "/admin/keys", name="c", team_id=o["blue"], user_id=carol, role="admin")
    assert refused.status_code == 403 and "member" in refused.json()["error"]["message"]
    outsider = admin("POST", "/admin/keys", name="c", team_id=red, user_id=carol)
    assert outsider.status_code == 403 and "not a member" in outsider.json()["error"]["message"]
    assert admin("POST", "/admin/keys", name="c", user_id="user_nobody").status_code == 400


def test_taking_rights_away_reaches_the_keys_at_once(gateway: Gateway, admin: Admin) -> None:
    o = org(admin)
    red, bob_id = o["red"], o["bob"]["user"]["id"]
    assert chat(gateway, o["bob"]["key"])
    ok(admin("DELETE", f"/admin/teams/{red}/members/{bob_id}", o["alice"]["key"]))
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, o["bob"]["key"])  # left the team: his key in it is revoked
    # lowering a role lowers the keys: Alice, made a member, can no longer issue keys
    ok(admin("POST", f"/admin/teams/{red}/members", user_id=o["alice"]["user"]["id"], role="member"))
    assert admin("POST", "/admin/keys", o["alice"]["key"], name="x").status_code == 403
    assert chat(gateway, o["alice"]["key"])  # but still works as a member's key
    # deleting a user revokes every key of theirs
    ok(admin("DELETE", f"/admin/users/{o['carol']['user']['id']}"))
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, o["carol"]["key"])


def test_the_audit_log_records_every_admin_action_with_before_and_after(
    gateway: Gateway, admin: Admin
) -> None:
    o = org(admin)
    ok(admin("POST", f"/admin/keys/{o['bob']['key_id']}/revoke", o["alice"]["key"]))
    events = ok(admin("GET", "/admin/audit"))["data"]
    actions = [e["action"] for e in reversed(events)]
    assert actions[:2] == ["team.create", "team.create"]
    assert actions.count("user.create") == 3 and actions.count("team.member") == 3
    assert actions.count("key.create") == 3 and actions[-1] == "key.revoke"
    revoked = events[0]
    assert revoked["actor"] == "alice" and revoked["target_id"] == o["bob"]["key_id"]
    assert revoked["before"]["revoked_at"] is None and revoked["after"]["revoked_at"] is not None
    assert all(o[n]["key"] not in str(events) for n in ("alice", "bob", "carol"))  # no key in the log
    # a team admin reads her team's events only
    seen = ok(admin("GET", "/admin/audit?action=key.*", o["alice"]["key"]))["data"]
    assert seen and {e["team_id"] for e in seen} == {o["red"]}


def test_the_two_person_rule_holds_team_deletion_until_a_second_admin_approves(tmp_path: Path) -> None:
    gateway = start(tmp_path)  # the default: on for deleting teams, revoking them, admin roles
    try:
        for admin in client(gateway):
            o = org_with_two_admins(admin)
            red, first, second = o["red"], o["first"], o["second"]
            pending = ok(admin("DELETE", f"/admin/teams/{red}", first), 202)
            assert pending["status"] == "pending" and pending["action"] == "delete_team"
            assert chat(gateway, o["bob"]) and ok(admin("GET", f"/admin/teams/{red}"))  # nothing yet
            own = admin("POST", f"/admin/approvals/{pending['id']}/approve", first)
            assert own.status_code == 403  # not by the one who asked
            done = ok(admin("POST", f"/admin/approvals/{pending['id']}/approve", second))
            assert done["status"] == "approved"
            assert admin("GET", f"/admin/teams/{red}").status_code == 404
            with pytest.raises(openai.AuthenticationError):
                chat(gateway, o["bob"])  # the team's keys went with it
            again = admin("POST", f"/admin/approvals/{pending['id']}/approve", MASTER_KEY)
            assert again.status_code == 409
            actions = [e["action"] for e in ok(admin("GET", "/admin/audit?limit=3"))["data"]]
            assert actions[:2] == ["approval.approved", "team.delete"] or actions[:2] == [
                "team.delete",
                "approval.approved",
            ]
    finally:
        gateway.stop()


def org_with_two_admins(admin: Admin) -> dict[str, str]:
    """Two organisation admins and a team with a key. The first admin role is granted at once
    (there is no second admin to ask yet); the second waits for the first admin's approval."""
    first = ok(admin("POST", "/admin/users", email="first@example.com", role="admin"))
    assert first["role"] == "admin" and "pending_action" not in first
    keys = {"first": ok(admin("POST", "/admin/keys", name="first", user_id=first["id"], role="admin"))["key"]}
    second = ok(admin("POST", "/admin/users", email="second@example.com", role="admin"), 202)
    assert second["role"] == "member" and second["pending_action"]["action"] == "change_admin_role"
    refused = admin("POST", "/admin/keys", name="second", user_id=second["id"], role="admin")
    assert refused.status_code == 403  # not an admin until a second admin approves
    ok(admin("POST", f"/admin/approvals/{second['pending_action']['id']}/approve", keys["first"]))
    keys["second"] = ok(admin("POST", "/admin/keys", name="second", user_id=second["id"], role="admin"))[
        "key"
    ]
    red = ok(admin("POST", "/admin/teams", name="red"))["id"]
    bob = ok(admin("POST", "/admin/keys", name="bob", team_id=red))["key"]
    return {"red": red, "bob": bob, **keys}
