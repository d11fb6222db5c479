"""`turnout teams | users | budgets | audit | approvals` against a real gateway: thin clients of the
admin API that print one line per object (or --json), money in USD, pending actions with the
command that approves them, and the API's errors as a clean message (no traceback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from turnout.cli.main import main

from support.gateway import MASTER_KEY, Gateway, settings_for

# the CLI must not pick up a key from the environment of whoever runs the tests
CLEAN_ENV: dict[str, str | None] = {
    "TURNOUT_ADMIN_KEY": None,
    "TURNOUT_MASTER_KEY": None,
    "TURNOUT_URL": None,
}


def start(tmp_path: Path, gated: list[str] | None) -> Gateway:
    doc: dict[str, Any] = {
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
    }
    if gated is not None:
        doc["governance"] = {"two_person_rule": gated}
    return Gateway(settings_for(doc, tmp_path / "data")).start()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gateway = start(tmp_path, gated=[])  # the two-person rule off
    yield gateway
    gateway.stop()


def cli(gateway: Gateway, *args: str, key: str | None = MASTER_KEY) -> Result:
    options = ["--url", gateway.root_url] + ([] if key is None else ["--key", key])
    group, command, *rest = args
    return CliRunner().invoke(main, [group, command, *options, *rest], env=CLEAN_ENV)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_an_admin_sets_up_a_team_with_a_member_and_a_budget_and_the_audit_log_shows_it(
    gateway: Gateway,
) -> None:
    team_line = ok(cli(gateway, "teams", "create", "red", "--metadata", "cost_center=42"))
    team_id = team_line.split()[0]
    assert team_id.startswith("team_") and "  red  " in team_line
    user_line = ok(cli(gateway, "users", "create", "alice@example.com", "--name", "Alice"))
    user_id = user_line.split()[0]
    assert user_id.startswith("user_") and "alice@example.com  Alice  role=member" in user_line

    added = ok(cli(gateway, "teams", "add-member", team_id, user_id, "--role", "admin"))
    assert f"teams={team_id}:admin" in added
    shown = ok(cli(gateway, "teams", "show", team_id))
    assert "members=1" in shown and f"  {user_id}  alice@example.com  role=admin" in shown
    assert f"teams={team_id}:admin" in ok(cli(gateway, "users", "show", user_id))
    assert [t["id"] for t in json.loads(ok(cli(gateway, "teams", "list", "--json")))["data"]] == [team_id]
    assert user_id in ok(cli(gateway, "users", "list"))

    budget_args = ["team", team_id, "--period", "daily", "--timezone", "Europe/Paris", "--limit", "10"]
    budget_line = ok(cli(gateway, "budgets", "set", *budget_args, "--soft-limit", "8"))
    budget_id = budget_line.split()[0]
    assert f"team/{team_id}  daily (Europe/Paris)  limit 10.00 USD  soft 8.00 USD" in budget_line
    assert "spent 0.00 USD  remaining 10.00 USD" in budget_line
    listed = ok(cli(gateway, "budgets", "list", "--scope", "team"))
    assert listed.startswith(budget_id) and "limit 10.00 USD" in listed
    assert ok(cli(gateway, "budgets", "list", "--subject", "team_other")) == "(no budgets)\n"
    raw = json.loads(ok(cli(gateway, "budgets", "show", budget_id, "--json")))
    assert raw["limit_micros"] == 10_000_000 and raw["soft_limit_micros"] == 8_000_000

    audit = ok(cli(gateway, "audit", "list"))
    actions = [line.split()[2] for line in audit.splitlines()]
    assert actions == ["budget.set", "team.member", "user.create", "team.create"]  # newest first
    assert f"team/{team_id}" in audit and f"budget/{budget_id}" in audit

    assert ok(cli(gateway, "budgets", "delete", budget_id)) == f"{budget_id}  deleted\n"
    assert "role=viewer" in ok(cli(gateway, "users", "set-role", user_id, "viewer"))
    removed = ok(cli(gateway, "teams", "remove-member", team_id, user_id))
    assert "teams=-" in removed
    assert "revoked keys=0" in ok(cli(gateway, "users", "delete", user_id))
    assert f"{team_id}: revoked 0 key(s)" in ok(cli(gateway, "teams", "revoke-keys", team_id))
    assert "deleted " in ok(cli(gateway, "teams", "delete", team_id))
    assert ok(cli(gateway, "teams", "list")) == "(no teams)\n"


def test_the_api_s_errors_are_printed_cleanly(gateway: Gateway) -> None:
    missing = cli(gateway, "budgets", "set", "team", "team_nope", "--limit", "10")
    assert missing.exit_code == 1
    assert missing.output == "Error: No team with id 'team_nope'.\n"
    assert isinstance(missing.exception, SystemExit)  # click's clean exit, not a crash
    team_id = ok(cli(gateway, "teams", "create", "red")).split()[0]
    bad_money = cli(gateway, "budgets", "set", "team", team_id, "--limit", "ten")
    assert bad_money.exit_code == 1 and bad_money.output.startswith("Error: ")
    assert "Traceback" not in bad_money.output and "'limit' must be an amount of USD" in bad_money.output
    wrong_key = cli(gateway, "teams", "list", key="sk-not-a-key")
    assert wrong_key.exit_code == 1 and wrong_key.output.startswith("Error: ")
    no_key = cli(gateway, "users", "list", key=None)
    assert no_key.exit_code == 2 and "no key" in no_key.output
    unreachable = CliRunner().invoke(
        main, ["teams", "list", "--url", "http://127.0.0.1:9", "--key", MASTER_KEY], env=CLEAN_ENV
    )
    assert unreachable.exit_code == 1 and "cannot reach turnout" in unreachable.output


def test_under_the_two_person_rule_deleting_a_team_waits_for_a_second_admin(tmp_path: Path) -> None:
    gateway = start(tmp_path, gated=None)  # the default: every gated action
    try:
        team_id = ok(cli(gateway, "teams", "create", "red")).split()[0]
        # with a second person around who is an admin, the master key's deletion needs their
        # approval (a key the master issues for no one would be the master's own: not a second person)
        created = ok(cli(gateway, "users", "create", "second@example.com", "--role", "admin"))
        user_id = created.split()[0]
        created = ok(
            cli(gateway, "keys", "create", "--name", "second admin", "--role", "admin", "--user", user_id)
        )
        second = created.split("shown this once")[1].split()[-1]

        proposed = ok(cli(gateway, "teams", "delete", team_id))
        assert proposed.startswith("pending approval: ")
        action_id = proposed.split()[2]
        assert proposed == (
            f"pending approval: {action_id} (delete_team) — a second admin runs "
            f"`turnout approvals approve {action_id}`\n"
        )
        listed = ok(cli(gateway, "approvals", "list"))
        assert listed.startswith(f"{action_id}  pending  delete_team  team/{team_id}")
        assert team_id in ok(cli(gateway, "teams", "list"))  # not deleted yet

        approved = ok(cli(gateway, "approvals", "approve", action_id, key=second))
        assert approved.startswith(f"{action_id}  approved  delete_team")
        assert ok(cli(gateway, "teams", "list")) == "(no teams)\n"
        assert "team.delete" in ok(cli(gateway, "audit", "list", "--action", "team.*"))
    finally:
        gateway.stop()


def test_keys_are_issued_changed_and_revoked_from_the_command_line(gateway: Gateway) -> None:
    created = ok(cli(gateway, "keys", "create", "--name", "etl", "--models", "chat", "--budget", "5"))
    key_id = next(word for word in created.split() if word.startswith("key_"))
    changed = ok(cli(gateway, "keys", "update", key_id, "--models", "*", "--name", "etl v2"))
    assert "etl v2" in changed and "models=*" in changed
    limited = ok(cli(gateway, "keys", "update", key_id, "--limits", "rpm=60,parallel=2"))
    assert "limits=rpm=60,parallel=2" in limited
    assert "limits=" not in ok(cli(gateway, "keys", "update", key_id, "--limits", "none"))
    bad = cli(gateway, "keys", "create", "--name", "x", "--limits", "rpm=lots")
    assert bad.exit_code == 2 and "NAME=NUMBER" in bad.output
    refused = cli(gateway, "keys", "update", key_id, "--budget", "lots")
    assert refused.exit_code == 1 and "'max_budget' must be an amount of USD" in refused.output
    assert "revoked" in ok(cli(gateway, "keys", "revoke", key_id))


def test_teams_and_users_are_named_by_name_as_well_as_by_id(gateway: Gateway) -> None:
    team_id = ok(cli(gateway, "teams", "create", "data")).split()[0]
    user_id = ok(cli(gateway, "users", "create", "Ada@Example.com")).split()[0]
    ok(cli(gateway, "teams", "add-member", "data", "ada@example.com", "--role", "admin"))
    shown = ok(cli(gateway, "teams", "show", "data"))
    assert shown.startswith(team_id) and f"{user_id}  Ada@Example.com  role=admin" in shown
    created = ok(
        cli(gateway, "keys", "create", "--name", "etl", "--team", "data", "--user", "ada@example.com")
    )
    assert f"team={team_id}" in created or team_id in created
    ok(cli(gateway, "budgets", "set", "team", "data", "--limit", "10"))
    assert team_id in ok(cli(gateway, "budgets", "list", "--scope", "team", "--subject", "data"))
    # the admin API takes them alike, in paths and in bodies
    with httpx.Client(base_url=gateway.root_url, headers={"authorization": f"Bearer {MASTER_KEY}"}) as http:
        assert http.get("/admin/teams/data").json()["id"] == team_id
        assert http.get("/admin/users/ada@example.com").json()["id"] == user_id
        key = http.post(
            "/admin/keys", json={"name": "k", "team_id": "data", "user_id": "ada@example.com"}
        ).json()
        assert (key["team_id"], key["user_id"]) == (team_id, user_id)
        assert http.get("/admin/teams/nope").status_code == 404
        clash = http.post("/admin/teams", json={"name": "team_lookalike"})
        assert clash.status_code == 400 and clash.json()["error"]["param"] == "name"


def test_a_team_admin_may_lower_their_teams_class_but_not_raise_it_above_their_own(
    gateway: Gateway,
) -> None:
    team_id = ok(cli(gateway, "teams", "create", "etl")).split()[0]
    user_id = ok(cli(gateway, "users", "create", "lead@example.com")).split()[0]
    ok(cli(gateway, "teams", "add-member", team_id, user_id, "--role", "admin"))
    with httpx.Client(base_url=gateway.root_url) as http:
        made = http.post(
            "/admin/keys",
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            json={"name": "lead", "team_id": team_id, "user_id": user_id, "role": "admin"},
        )
        admin = made.json()["key"]

        def patch(key: str, body: dict[str, Any]) -> httpx.Response:
            return http.patch(
                f"/admin/teams/{team_id}", headers={"authorization": f"Bearer {key}"}, json=body
            )

        # the team's admin is of the default class (standard): they may not make their team critical
        raised = patch(admin, {"priority": "critical"})
        assert raised.status_code == 403 and raised.json()["error"]["param"] == "priority"
        assert "class 'critical'" in raised.json()["error"]["message"]
        # nor give one of their keys a class above their own
        key = http.post(
            "/admin/keys",
            headers={"authorization": f"Bearer {admin}"},
            json={"name": "vip", "team_id": team_id, "metadata": {"priority": "critical"}},
        )
        assert key.status_code == 403 and key.json()["error"]["param"] == "metadata.priority"
        # lowering is theirs to do; the rate limits stay the organisation's
        assert patch(admin, {"priority": "batch"}).json()["priority"] == "batch"
        assert patch(admin, {"limits": {"rpm": 5}}).status_code == 403
        # now of class batch themselves, they cannot put it back (null: the default, standard)
        assert patch(admin, {"priority": None}).status_code == 403
        assert patch(admin, {"priority": "standard"}).status_code == 403
        assert patch(admin, {"priority": "urgent"}).status_code == 400
        audit = http.get("/admin/audit", headers={"authorization": f"Bearer {MASTER_KEY}"}).json()["data"]
        assert [e["after"]["priority"] for e in audit if e["action"] == "team.priority"] == ["batch"]

    # the organisation's admins may give any class, from the command line too
    assert "priority=critical" in ok(cli(gateway, "teams", "set-priority", "etl", "critical"))
    assert "priority=critical" in ok(cli(gateway, "teams", "show", team_id))
    # a team admin now of class critical may keep it, or lower it
    assert "priority=standard" in ok(cli(gateway, "teams", "set-priority", "etl", "standard", key=admin))
    refused = cli(gateway, "teams", "set-priority", "etl", "critical", key=admin)
    assert refused.exit_code == 1 and "class 'critical'" in refused.output
    assert "priority=-" in ok(cli(gateway, "teams", "set-priority", "etl", "none"))
