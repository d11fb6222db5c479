"""Nobody gets more than they were given: the two-person rule counts people, not keys; authority is
the actor's current one, when the action runs; a person's lost authority reaches every key they
issued; gated actions cannot be done piecewise; budgets set above cannot be lifted from below;
presets are scoped; fallbacks respect the key's model list. Over real HTTP, with the two-person
rule as shipped (on)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, Gateway, settings_for

Admin = Callable[..., httpx.Response]


# $100 a million tokens: a request may cost up to $0.41 (its bound), and costs a few thousandths
PRICEY = {"provider": "fake", "model": "m", "price": {"input": "100", "output": "100"}}


def start(tmp_path: Path, **governance: Any) -> Gateway:
    doc: dict[str, Any] = {
        "storage": {"data_dir": str(tmp_path / "data")},
        "providers": {"fake": {"type": "fake"}},
        "models": {
            "chat": {"provider": "fake", "model": "m"},
            "other": {"provider": "fake", "model": "o"},
            "pricey": PRICEY,
        },
    }
    if governance:
        doc["governance"] = governance
    return Gateway(settings_for(doc, tmp_path / "data")).start()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gateway = start(tmp_path)
    yield gateway
    gateway.stop()


@contextlib.contextmanager
def calling(gateway: Gateway) -> Iterator[Admin]:
    """The admin API of `gateway`, called with a key (the master key unless given)."""
    with httpx.Client(base_url=gateway.root_url, timeout=20) as http:

        def call(method: str, path: str, key: str = MASTER_KEY, **body: Any) -> httpx.Response:
            return http.request(method, path, headers={"authorization": f"Bearer {key}"}, json=body or None)

        yield call


@contextlib.contextmanager
def governed(tmp_path: Path, **governance: Any) -> Iterator[Admin]:
    """The admin API of a gateway started with these `governance` settings (stopped after)."""
    gateway = start(tmp_path, **governance)
    try:
        with calling(gateway) as call:
            yield call
    finally:
        gateway.stop()


@pytest.fixture
def admin(gateway: Gateway) -> Iterator[Admin]:
    with calling(gateway) as call:
        yield call


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


def refused(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    if code is not None:
        assert error["code"] == code, error
    return error


def chat(gateway: Gateway, key: str, model: str = "chat") -> str:
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20) as sdk:
        answer = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    return answer.choices[0].message.content or ""


@dataclass
class Org:
    """Alice and Bob, organisation admins; Tara and Tom, admins of the team red; Mia, a member of
    red. Each has a key the master key issued and handed over. Made while nobody but the master
    holds an admin key, so nothing waited for a second person."""

    red: str
    blue: str
    users: dict[str, str] = field(default_factory=dict)  # name -> user id
    keys: dict[str, str] = field(default_factory=dict)  # name -> key
    key_ids: dict[str, str] = field(default_factory=dict)


def org(admin: Admin) -> Org:
    o = Org(
        ok(admin("POST", "/admin/teams", name="red"))["id"],
        ok(admin("POST", "/admin/teams", name="blue"))["id"],
    )
    for name, role in (
        ("alice", "admin"),
        ("bob", "admin"),
        ("tara", "member"),
        ("tom", "member"),
        ("mia", "member"),
    ):
        o.users[name] = ok(admin("POST", "/admin/users", email=f"{name}@example.com", role=role))["id"]
    for name, role in (("tara", "admin"), ("tom", "admin"), ("mia", "member")):
        ok(admin("POST", f"/admin/teams/{o.red}/members", user_id=o.users[name], role=role))
    for name, role, team in (
        ("alice", "admin", None),
        ("bob", "admin", None),
        ("tara", "admin", o.red),
        ("tom", "admin", o.red),
        ("mia", "member", o.red),
    ):
        issued = ok(admin("POST", "/admin/keys", name=name, user_id=o.users[name], role=role, team_id=team))
        o.keys[name], o.key_ids[name] = issued["key"], issued["id"]
    return o


def mint(admin: Admin, key: str, **spec: Any) -> tuple[str, str]:
    issued = ok(admin("POST", "/admin/keys", key, **spec))
    return issued["key"], issued["id"]


# ------------------------------------------------------------------ 1. people, not keys


def test_an_admin_cannot_approve_their_own_action_with_a_key_they_issued(
    gateway: Gateway, admin: Admin
) -> None:
    o = org(admin)
    spare, _ = mint(admin, o.keys["alice"], name="alice spare", role="admin")  # no user: Alice's
    as_bob, _ = mint(admin, o.keys["alice"], name="for bob", role="admin", user_id=o.users["bob"])
    via_spare, _ = mint(admin, spare, name="via spare", role="admin", user_id=o.users["bob"])
    pending = ok(admin("DELETE", f"/admin/teams/{o.blue}", o.keys["alice"]), 202)
    for key in (o.keys["alice"], spare, as_bob, via_spare):
        refused(admin("POST", f"/admin/approvals/{pending['id']}/approve", key), 403, "self_approval")
    approved = ok(admin("POST", f"/admin/approvals/{pending['id']}/approve", o.keys["bob"]))
    assert approved["status"] == "approved"
    assert (
        approved["requested_by_person"] == o.users["alice"]
        and approved["decided_by_person"] == o.users["bob"]
    )
    # nor can a key Alice issued be the proposer Bob approves for her: Bob is fine, it is hers
    pending = ok(admin("POST", f"/admin/teams/{o.red}/revoke-keys", as_bob), 202)
    refused(admin("POST", f"/admin/approvals/{pending['id']}/approve", o.keys["alice"]), 403, "self_approval")


def test_team_admins_cannot_approve_their_own_action_with_a_key_they_issued(
    gateway: Gateway, admin: Admin
) -> None:
    o = org(admin)
    spare, _ = mint(admin, o.keys["tara"], name="tara spare", role="admin")
    assert ok(admin("GET", "/admin/keys", spare))  # a working admin key of red
    pending = ok(admin("POST", f"/admin/teams/{o.red}/revoke-keys", o.keys["tara"]), 202)
    refused(admin("POST", f"/admin/approvals/{pending['id']}/approve", spare), 403, "self_approval")
    assert chat(gateway, o.keys["mia"])  # nothing ran
    assert (
        ok(admin("POST", f"/admin/approvals/{pending['id']}/approve", o.keys["tom"]))["status"] == "approved"
    )
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, o.keys["mia"])


def test_the_master_key_is_one_person(gateway: Gateway, admin: Admin) -> None:
    o = org(admin)
    masters_spare, _ = mint(admin, MASTER_KEY, name="break-glass spare", role="owner")
    pending = ok(admin("DELETE", f"/admin/teams/{o.blue}"), 202)
    refused(admin("POST", f"/admin/approvals/{pending['id']}/approve", masters_spare), 403, "self_approval")
    assert (
        ok(admin("POST", f"/admin/approvals/{pending['id']}/approve", o.keys["bob"]))["status"] == "approved"
    )
    events = ok(admin("GET", f"/admin/audit?action=team.delete&target_id={o.blue}"))["data"]
    assert [e["actor_person"] for e in events] == ["master"]  # audited as the break-glass key


# ------------------------------------------------------------------ 2. authority when it runs


@pytest.mark.parametrize("loss", ["revoked", "demoted", "deleted"])
def test_a_proposal_never_runs_once_its_proposer_lost_authority(
    gateway: Gateway, admin: Admin, loss: str
) -> None:
    o = org(admin)
    pending = ok(admin("DELETE", f"/admin/teams/{o.blue}", o.keys["alice"]), 202)
    if loss == "revoked":
        ok(admin("POST", f"/admin/keys/{o.key_ids['alice']}/revoke", o.keys["bob"]))
    else:
        # taking an admin role away waits for a second person too: Bob proposes, the master approves
        change = (
            admin("PATCH", f"/admin/users/{o.users['alice']}", o.keys["bob"], role="member")
            if loss == "demoted"
            else None
        )
        if change is not None:
            ok(admin("POST", f"/admin/approvals/{ok(change, 202)['id']}/approve"))
        else:
            demote = ok(admin("PATCH", f"/admin/users/{o.users['alice']}", o.keys["bob"], role="member"), 202)
            ok(admin("POST", f"/admin/approvals/{demote['id']}/approve"))
            ok(admin("DELETE", f"/admin/users/{o.users['alice']}", o.keys["bob"]))
    refused(
        admin("POST", f"/admin/approvals/{pending['id']}/approve", o.keys["bob"]),
        409,
        "proposer_lacks_authority",
    )
    assert ok(admin("GET", f"/admin/teams/{o.blue}"))["name"] == "blue"  # still there
    assert ok(admin("GET", f"/admin/approvals/{pending['id']}"))["status"] == "cancelled"
    refused(admin("POST", f"/admin/approvals/{pending['id']}/approve"), 409)  # and stays so


def test_an_approved_action_runs_only_as_far_as_its_proposer_may_now(gateway: Gateway, admin: Admin) -> None:
    """Alice (an admin) proposes lowering Bob; Bob is meanwhile made an owner. An admin cannot
    change an owner's role, so the approved proposal is refused, as Alice's own call would be.
    The same for a team owner who proposed deleting the team and is now its admin only."""
    o = org(admin)
    lower_bob = ok(admin("PATCH", f"/admin/users/{o.users['bob']}", o.keys["alice"], role="member"), 202)
    raise_bob = ok(admin("PATCH", f"/admin/users/{o.users['bob']}", role="owner"), 202)
    ok(admin("POST", f"/admin/approvals/{raise_bob['id']}/approve", o.keys["alice"]))
    refused(admin("POST", f"/admin/approvals/{lower_bob['id']}/approve"), 403)
    assert ok(admin("GET", f"/admin/users/{o.users['bob']}"))["role"] == "owner"
    # a team's deletion, proposed by its owner, who is its admin only when it is approved
    tara_owner = ok(
        admin("POST", f"/admin/teams/{o.red}/members", user_id=o.users["tara"], role="owner"), 202
    )
    ok(admin("POST", f"/admin/approvals/{tara_owner['id']}/approve", o.keys["alice"]))
    owners_key = ok(
        admin("POST", "/admin/keys", name="tara owner", role="owner", team_id=o.red, user_id=o.users["tara"])
    )["key"]
    delete_red = ok(admin("DELETE", f"/admin/teams/{o.red}", owners_key), 202)
    back = ok(admin("POST", f"/admin/teams/{o.red}/members", user_id=o.users["tara"], role="admin"), 202)
    ok(admin("POST", f"/admin/approvals/{back['id']}/approve", o.keys["alice"]))
    refused(admin("POST", f"/admin/approvals/{delete_red['id']}/approve", o.keys["alice"]), 403)
    assert ok(admin("GET", f"/admin/teams/{o.red}"))["name"] == "red"


def test_an_approval_is_checked_against_the_approvers_rights_in_the_store(tmp_path: Path) -> None:
    """Bob's key is revoked through one instance; at once, another instance (which still holds
    it in its cache) does not let him approve."""
    shared = tmp_path / "shared"
    doc: dict[str, Any] = {
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
    }
    first, second = Gateway(settings_for(doc, shared)).start(), Gateway(settings_for(doc, shared)).start()
    try:
        with (
            httpx.Client(base_url=first.root_url, timeout=20) as one,
            httpx.Client(base_url=second.root_url, timeout=20) as two,
        ):

            def on(http: httpx.Client) -> Admin:
                def call(method: str, path: str, key: str = MASTER_KEY, **body: Any) -> httpx.Response:
                    return http.request(
                        method, path, headers={"authorization": f"Bearer {key}"}, json=body or None
                    )

                return call

            a, b = on(one), on(two)
            o = org(a)
            assert ok(b("GET", "/admin/keys", o.keys["bob"]))  # B has Bob's key now
            pending = ok(a("DELETE", f"/admin/teams/{o.blue}", o.keys["alice"]), 202)
            ok(a("POST", f"/admin/keys/{o.key_ids['bob']}/revoke", o.keys["alice"]))
            refused(b("POST", f"/admin/approvals/{pending['id']}/approve", o.keys["bob"]), 401)
            assert ok(a("GET", f"/admin/approvals/{pending['id']}"))["status"] == "pending"
    finally:
        first.stop()
        second.stop()


# ------------------------------------------------------------------ 3. lost authority reaches minted keys


def test_demotion_and_deletion_reach_every_key_a_person_issued(gateway: Gateway, admin: Admin) -> None:
    o = org(admin)
    spare, spare_id = mint(admin, o.keys["alice"], name="alice spare", role="admin")
    for_bob, for_bob_id = mint(admin, o.keys["alice"], name="for bob", role="admin", user_id=o.users["bob"])
    second_hand, second_hand_id = mint(admin, for_bob, name="via bob's", role="admin", user_id=o.users["bob"])
    bobs_own, _ = mint(admin, MASTER_KEY, name="bob (from the master)", role="admin", user_id=o.users["bob"])
    demote = ok(admin("PATCH", f"/admin/users/{o.users['alice']}", o.keys["bob"], role="member"), 202)
    ok(admin("POST", f"/admin/approvals/{demote['id']}/approve"))
    for key, key_id in ((spare, spare_id), (for_bob, for_bob_id), (second_hand, second_hand_id)):
        assert ok(admin("GET", f"/admin/keys/{key_id}"))["role"] == "member"
        refused(admin("GET", "/admin/keys", key), 403)  # no admin API any more
        assert chat(gateway, key)  # still a member's key
    assert ok(admin("GET", "/admin/keys", bobs_own))  # Bob's own authority is untouched
    ok(admin("DELETE", f"/admin/users/{o.users['alice']}", o.keys["bob"]))
    for key in (o.keys["alice"], spare, for_bob, second_hand):
        with pytest.raises(openai.AuthenticationError):
            chat(gateway, key)
    assert chat(gateway, bobs_own)


def test_a_rotated_key_acts_for_the_same_person(gateway: Gateway, admin: Admin) -> None:
    """The replacement of Alice's key is Alice's, whoever rotated it: it never approves her
    proposals, and her demotion reaches it."""
    o = org(admin)
    _, spare_id = mint(admin, o.keys["alice"], name="alice spare", role="admin")
    by_master = ok(admin("POST", f"/admin/keys/{spare_id}/rotate"))
    assert by_master["person"] == o.users["alice"]
    _, other_id = mint(admin, o.keys["alice"], name="alice other", role="admin")
    by_bob = ok(admin("POST", f"/admin/keys/{other_id}/rotate", o.keys["bob"]))
    assert by_bob["person"] == o.users["alice"]
    pending = ok(admin("DELETE", f"/admin/teams/{o.blue}", o.keys["alice"]), 202)
    for replacement in (by_master, by_bob):
        refused(
            admin("POST", f"/admin/approvals/{pending['id']}/approve", replacement["key"]),
            403,
            "self_approval",
        )
    # Bob saw the key he rotated: it is no second person to him either
    bobs = ok(admin("DELETE", f"/admin/teams/{o.red}", o.keys["bob"]), 202)
    refused(admin("POST", f"/admin/approvals/{bobs['id']}/approve", by_bob["key"]), 403, "self_approval")
    demote = ok(admin("PATCH", f"/admin/users/{o.users['alice']}", o.keys["bob"], role="member"), 202)
    ok(admin("POST", f"/admin/approvals/{demote['id']}/approve"))
    for replacement in (by_master, by_bob):
        assert ok(admin("GET", f"/admin/keys/{replacement['id']}"))["role"] == "member"


def test_a_key_is_never_raised_above_what_its_person_holds_now(gateway: Gateway, admin: Admin) -> None:
    """Alice, demoted, keeps the key she minted without a user, lowered to member. Raising it back
    to admin would give her back the role she lost, without the second person that needs."""
    o = org(admin)
    _, spare_id = mint(admin, o.keys["alice"], name="alice spare", role="admin")
    demote = ok(admin("PATCH", f"/admin/users/{o.users['alice']}", o.keys["bob"], role="member"), 202)
    ok(admin("POST", f"/admin/approvals/{demote['id']}/approve"))
    assert ok(admin("GET", f"/admin/keys/{spare_id}"))["role"] == "member"
    for key in (o.keys["bob"], MASTER_KEY):
        denied = refused(admin("PATCH", f"/admin/keys/{spare_id}", key, role="admin"), 403)
        assert denied["param"] == "role" and "at most 'member'" in denied["message"]
    assert ok(admin("GET", f"/admin/keys/{spare_id}"))["role"] == "member"
    # within what she holds, it may change
    assert ok(admin("PATCH", f"/admin/keys/{spare_id}", o.keys["bob"], role="viewer"))["role"] == "viewer"
    assert ok(admin("PATCH", f"/admin/keys/{spare_id}", o.keys["bob"], role="member"))["role"] == "member"


# ------------------------------------------------------------------ 4. not piecewise


def test_deleting_a_team_admin_needs_a_second_person_as_taking_their_role_would(
    gateway: Gateway, admin: Admin
) -> None:
    o = org(admin)
    for name in ("tom", "tara"):
        denied = refused(
            admin("DELETE", f"/admin/users/{o.users[name]}", o.keys["alice"]), 403, "approval_required"
        )
        assert f"admin of the team '{o.red}'" in denied["message"]
    assert [k["id"] for k in ok(admin("GET", "/admin/keys", o.keys["tara"]))["data"] if k["role"] == "admin"]
    # once a second person took the role away, the user may go
    taken = ok(admin("DELETE", f"/admin/teams/{o.red}/members/{o.users['tom']}", o.keys["alice"]), 202)
    ok(admin("POST", f"/admin/approvals/{taken['id']}/approve", o.keys["bob"]))
    assert ok(admin("DELETE", f"/admin/users/{o.users['tom']}", o.keys["alice"]))["deleted_at"]


def test_bringing_keys_expiry_forward_is_revoking_them(tmp_path: Path) -> None:
    """An expiry brought forward ends a key as a revocation does: it counts towards the piecewise
    limit, and a team's last admin key's needs a second person."""
    with governed(tmp_path, piecewise_revocations=2, piecewise_window="1h") as admin:
        o = org(admin)
        apps = [mint(admin, o.keys["tara"], name=f"app {i}")[1] for i in range(4)]
        ok(admin("POST", f"/admin/keys/{apps[0]}/revoke", o.keys["tara"]))
        ok(admin("PATCH", f"/admin/keys/{apps[1]}", o.keys["tara"], expires_in="1s"))  # the second
        for key_id in (apps[2], o.key_ids["mia"]):
            pending = ok(admin("PATCH", f"/admin/keys/{key_id}", o.keys["tara"], expires_in="1s"), 202)
            assert pending["action"] == "change_key" and "2 keys of the team" in pending["reason"]
            assert ok(admin("GET", f"/admin/keys/{key_id}"))["expires_at"] is None
        assert (
            ok(admin("POST", f"/admin/keys/{apps[3]}/revoke", o.keys["tara"]), 202)["action"] == "revoke_key"
        )
        # rotating another person's key takes it from them: refused past the limit too
        refused(
            admin("POST", f"/admin/keys/{o.key_ids['mia']}/rotate", o.keys["tara"]),
            403,
            "approval_required",
        )
        [expired] = ok(admin("GET", f"/admin/audit?action=key.expire&target_id={apps[1]}"))["data"]
        assert expired["actor_person"] == o.users["tara"]
        # pushing an expiry later is no revocation
        later = mint(admin, o.keys["tara"], name="app with an end", expires_in="30d")[1]
        assert ok(admin("PATCH", f"/admin/keys/{later}", o.keys["tara"], expires_in="60d"))["expires_at"]
        # her own key, rotated, stays hers: not gated
        own = ok(admin("POST", f"/admin/keys/{o.key_ids['tara']}/rotate", o.keys["tara"], grace="1h"))
        assert own["person"] == o.users["tara"]


def test_a_teams_last_admin_key_does_not_expire_or_change_hands_by_one_person(
    gateway: Gateway, admin: Admin
) -> None:
    o = org(admin)
    ok(admin("POST", f"/admin/keys/{o.key_ids['tom']}/revoke", o.keys["tara"]))  # red keeps Tara's
    pending = ok(admin("PATCH", f"/admin/keys/{o.key_ids['tara']}", o.keys["alice"], expires_in="1s"), 202)
    assert "last owner or admin key" in pending["reason"]
    assert ok(admin("GET", f"/admin/keys/{o.key_ids['tara']}"))["expires_at"] is None
    # rotating it takes it from Tara (its replacement is Alice's to hand over): the same
    denied = refused(admin("POST", f"/admin/keys/{o.key_ids['tara']}/rotate", o.keys["alice"]), 403)
    assert denied["code"] == "approval_required" and "last owner or admin key" in denied["message"]
    assert ok(admin("GET", f"/admin/keys/{o.key_ids['tara']}"))["rotated_to"] is None
    assert ok(admin("POST", f"/admin/keys/{o.key_ids['tara']}/rotate", o.keys["tara"], grace="1h"))["key"]


def test_a_teams_last_admin_key_is_not_revoked_by_one_person(gateway: Gateway, admin: Admin) -> None:
    o = org(admin)
    ok(admin("POST", f"/admin/keys/{o.key_ids['tom']}/revoke", o.keys["tara"]))  # red keeps Tara's
    pending = ok(admin("POST", f"/admin/keys/{o.key_ids['tara']}/revoke", o.keys["alice"]), 202)
    assert pending["action"] == "revoke_key" and "last owner or admin key" in pending["reason"]
    assert ok(admin("GET", "/admin/keys", o.keys["tara"]))  # still works
    # taking its admin role away instead is the same thing
    lowered = ok(admin("PATCH", f"/admin/keys/{o.key_ids['tara']}", o.keys["alice"], role="member"), 202)
    assert lowered["action"] == "change_key"
    ok(admin("POST", f"/admin/approvals/{pending['id']}/approve", o.keys["bob"]))
    refused(admin("GET", "/admin/keys", o.keys["tara"]), 401)


def test_revoking_a_teams_keys_one_by_one_needs_a_second_person_past_the_limit(tmp_path: Path) -> None:
    with governed(tmp_path, piecewise_revocations=3, piecewise_window="1h") as admin:
        o = org(admin)
        members = [mint(admin, o.keys["tara"], name=f"app {i}")[1] for i in range(5)]
        for key_id in members[:3]:
            ok(admin("POST", f"/admin/keys/{key_id}/revoke", o.keys["tara"]))
        pending = ok(admin("POST", f"/admin/keys/{members[3]}/revoke", o.keys["tara"]), 202)
        assert "3 keys of the team" in pending["reason"]
        assert ok(admin("GET", f"/admin/keys/{members[3]}"))["revoked_at"] is None
        assert (
            ok(admin("POST", f"/admin/approvals/{pending['id']}/approve", o.keys["tom"]))["status"]
            == "approved"
        )
        assert ok(admin("GET", f"/admin/keys/{members[3]}"))["revoked_at"] is not None
        # another team's keys are counted apart
        blue_key = mint(admin, MASTER_KEY, name="blue app", team_id=o.blue)[1]
        assert ok(admin("POST", f"/admin/keys/{blue_key}/revoke", o.keys["alice"]))["revoked_at"]


def test_nobody_acts_on_a_key_whose_role_is_above_their_own(gateway: Gateway, admin: Admin) -> None:
    o = org(admin)
    owner_key = ok(admin("POST", "/admin/keys", name="owner's", role="owner"))["id"]
    for method, path, body in (
        ("POST", f"/admin/keys/{owner_key}/revoke", {}),
        ("POST", f"/admin/keys/{owner_key}/rotate", {}),
        ("PATCH", f"/admin/keys/{owner_key}", {"name": "mine now"}),
    ):
        refused(admin(method, path, o.keys["alice"], **body), 403)
    assert ok(admin("GET", f"/admin/keys/{owner_key}"))["revoked_at"] is None


# ------------------------------------------------------------------ 5. budgets set above


def test_a_budget_the_organisation_set_cannot_be_lifted_by_a_team_admin(
    gateway: Gateway, admin: Admin
) -> None:
    o = org(admin)
    tara = o.key_ids["tara"]
    ok(admin("PATCH", f"/admin/keys/{tara}", max_budget="10.00"))  # the organisation caps Tara's key
    budget = ok(admin("POST", "/admin/budgets", scope="key", subject_id=tara, limit="5", period="daily"))
    assert budget["set_level"] == "organisation"
    spare, _ = mint(admin, o.keys["tom"], name="tom spare", role="admin")  # a red admin key, no budget
    for key in (o.keys["tara"], o.keys["tom"], spare):
        refused(admin("PATCH", f"/admin/keys/{tara}", key, max_budget="1000.00"), 403, "budget_set_above")
        refused(admin("PATCH", f"/admin/keys/{tara}", key, max_budget=None), 403, "budget_set_above")
        refused(admin("DELETE", f"/admin/budgets/{budget['id']}", key), 403, "budget_set_above")
        refused(
            admin("POST", "/admin/budgets", key, scope="key", subject_id=tara, limit="500", period="daily"),
            403,
            "budget_set_above",
        )
    assert ok(admin("GET", f"/admin/keys/{tara}"))["max_budget_micros"] == 10_000_000
    # the organisation itself may, and a budget a team admin set is theirs to change
    ok(admin("PATCH", f"/admin/keys/{tara}", o.keys["alice"], max_budget="20.00"))
    mias = ok(
        admin("POST", "/admin/budgets", o.keys["tara"], scope="key", subject_id=o.key_ids["mia"], limit="1")
    )
    assert mias["set_level"] == "team"
    ok(admin("DELETE", f"/admin/budgets/{mias['id']}", o.keys["tom"]))


def test_rotating_a_key_sheds_none_of_its_budgets(gateway: Gateway, admin: Admin) -> None:
    """The organisation's daily budget on Tara's key, and what is left of its lifetime budget,
    hold on the key that replaces it (and on the old key for its grace)."""
    o = org(admin)
    tara = o.key_ids["tara"]
    ok(admin("PATCH", f"/admin/keys/{tara}", max_budget="10.00"))
    assert chat(gateway, o.keys["tara"], "pricey")  # spends from the lifetime budget
    deadline = time.monotonic() + 20
    while ok(admin("GET", f"/admin/spend?key={tara}&since=1h"))["totals"]["requests"] < 1:
        assert time.monotonic() < deadline, "the request never reached the ledger"
        time.sleep(0.2)
    # a request to `pricey` may cost up to $0.41: a daily budget of $0.30 refuses every one
    budget = ok(admin("POST", "/admin/budgets", scope="key", subject_id=tara, limit="0.3", period="daily"))
    with pytest.raises(openai.RateLimitError):
        chat(gateway, o.keys["tara"], "pricey")
    new = ok(admin("POST", f"/admin/keys/{tara}/rotate", o.keys["tara"], grace="1h"))
    for key in (new["key"], o.keys["tara"]):
        with pytest.raises(openai.RateLimitError):
            chat(gateway, key, "pricey")
    assert ok(admin("GET", f"/admin/budgets/{budget['id']}"))["subject_id"] == new["id"]
    assert 0 < new["max_budget_micros"] < 10_000_000  # what the old key left of its lifetime budget
    # rotated again, the key the first rotation replaced stops working: none is left out of reach
    ok(admin("POST", f"/admin/keys/{new['id']}/rotate", MASTER_KEY, grace="1h"))
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, o.keys["tara"])


def test_a_users_budget_covers_the_keys_they_mint_without_a_user(gateway: Gateway, admin: Admin) -> None:
    """A key without a user acts for the person who issued it: the organisation's budget on Tara
    (a user budget) holds on such a key she mints, and its spend is hers in the ledger."""
    o = org(admin)
    ok(admin("POST", "/admin/budgets", scope="user", subject_id=o.users["tara"], limit="0.3", period="daily"))
    mine, mine_id = mint(admin, o.keys["tara"], name="tara's script")
    with pytest.raises(openai.RateLimitError):  # a request may cost up to $0.41
        chat(gateway, mine, "pricey")
    assert chat(gateway, mine)  # an unpriced model is not held back
    deadline = time.monotonic() + 20
    while not (spend := ok(admin("GET", f"/admin/spend?key={mine_id}&since=1h&group_by=user")))["data"]:
        assert time.monotonic() < deadline, "the request never reached the ledger"
        time.sleep(0.2)
    assert [row["group"]["user"] for row in spend["data"]] == [o.users["tara"]]
    # a key the master key issues without a user is no one's: no user's budget holds on it
    ownerless, _ = mint(admin, MASTER_KEY, name="service")
    assert chat(gateway, ownerless, "pricey")


# ------------------------------------------------------------------ 6. presets


def test_presets_are_their_teams_and_others_see_only_what_they_are(gateway: Gateway, admin: Admin) -> None:
    o = org(admin)
    ok(
        admin(
            "POST",
            "/admin/presets",
            o.keys["tara"],
            name="red-support",
            team_id=o.red,
            model="chat",
            description="Answers support tickets",
            system_prompt="SECRET RED PROMPT",
            params={"temperature": 0.2},
        )
    )
    blue_viewer = ok(admin("POST", "/admin/keys", name="blue viewer", role="viewer", team_id=o.blue))["key"]
    [seen] = ok(admin("GET", "/admin/presets", blue_viewer))["data"]
    assert seen["name"] == "red-support" and seen["description"] == "Answers support tickets"
    assert seen["model"] == "preset/red-support" and "price" in seen
    assert "system_prompt" not in seen and "params" not in seen and "SECRET" not in str(seen)
    [own] = ok(admin("GET", "/admin/presets", o.keys["mia"]))["data"]
    assert own["system_prompt"] == "SECRET RED PROMPT" and own["params"] == {"temperature": 0.2}
    # a team admin cannot publish a preset on a model their own key may not use
    narrow, _ = mint(admin, o.keys["tara"], name="narrow", role="admin", models=["chat"])
    denied = refused(
        admin("POST", "/admin/presets", narrow, name="sneaky", team_id=o.red, model="other"), 403
    )
    assert denied["param"] == "model"
    # nor steer the upstream through its parameters
    steering = refused(
        admin(
            "POST",
            "/admin/presets",
            o.keys["tara"],
            name="steer",
            team_id=o.red,
            model="chat",
            params={"temperature": 0.1, "api_base": "http://169.254.169.254/"},
        ),
        400,
        "forbidden_parameter",
    )
    assert steering["param"] == "params.api_base"
    for name in ("API_KEY", "aws_region", "Azure_Endpoint"):  # any case, and the families whole
        refused(
            admin(
                "POST",
                "/admin/presets",
                o.keys["tara"],
                name="steer",
                team_id=o.red,
                model="chat",
                params={name: "x"},
            ),
            400,
            "forbidden_parameter",
        )


# ------------------------------------------------------------------ 7. fallbacks and the allow-list


def test_a_fallback_the_key_may_not_use_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    doc: dict[str, Any] = {
        "providers": {"fake": {"type": "fake"}},
        "routing": {"retries": {"attempts": 2}},
        "models": {
            "main": {"provider": "fake", "model": "broken?fail=500", "fallbacks": ["premium"], "attempts": 1},
            "open": {
                "provider": "fake",
                "model": "broken?fail=500",
                "fallbacks": ["premium"],
                "fallbacks_included": True,
                "attempts": 1,
            },
            "premium": {"provider": "fake", "model": "premium-model"},
        },
    }
    gateway = Gateway(settings_for(doc, tmp_path / "data")).start()
    try:
        with httpx.Client(base_url=gateway.root_url, timeout=20) as http:
            headers = {"authorization": f"Bearer {MASTER_KEY}"}
            narrow = http.post(
                "/admin/keys", headers=headers, json={"name": "n", "models": ["main", "open"]}
            ).json()["key"]
            wide = http.post(
                "/admin/keys", headers=headers, json={"name": "w", "models": ["main", "premium"]}
            ).json()["key"]
        with caplog.at_level("INFO", logger="turnout.routing"), pytest.raises(openai.APIStatusError):
            chat(gateway, narrow, "main")
        assert "fallback 'premium' skipped" in caplog.text
        assert chat(gateway, wide, "main")  # a key that may use it gets it
        assert chat(gateway, narrow, "open")  # an alias whose fallbacks are part of it
    finally:
        gateway.stop()
