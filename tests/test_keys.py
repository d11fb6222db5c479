"""Virtual keys through the admin API: issued once in full and stored only hashed, limited to
their models, revoked at once, rotated with a grace period, and never broader than their issuer."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.gateway import MASTER_KEY, Gateway, settings_for

USER = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    doc = {
        "storage": {"data_dir": str(tmp_path / "data")},
        "providers": {"fake": {"type": "fake"}},
        "models": {
            "chat": {"provider": "fake", "model": "m"},
            "team/a": {"provider": "fake", "model": "a"},
            "team/b": {"provider": "fake", "model": "b"},
            "other": {"provider": "fake", "model": "o"},
        },
    }
    gateway = Gateway(settings_for(doc, tmp_path / "data")).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def admin(gateway: Gateway) -> Iterator[Callable[..., httpx.Response]]:
    with httpx.Client(base_url=gateway.root_url, timeout=20) as http:

        def call(method: str, path: str, key: str = MASTER_KEY, **body: Any) -> httpx.Response:
            return http.request(method, path, headers={"authorization": f"Bearer {key}"}, json=body or None)

        yield call


def chat(gateway: Gateway, key: str, model: str = "chat") -> Any:
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20) as client:
        return client.chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]


def issue(admin: Callable[..., httpx.Response], key: str = MASTER_KEY, **spec: Any) -> dict[str, Any]:
    response = admin("POST", "/admin/keys", key, **{"name": "test", **spec})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_key_is_shown_once_stored_hashed_and_limited_to_its_models(
    gateway: Gateway, admin: Callable[..., httpx.Response], tmp_path: Path
) -> None:
    created = issue(admin, name="ci bot", models=["team/*"], metadata={"owner": "ci"})
    key = created["key"]
    assert key.startswith("sk-turnout-") and created["prefix"] == key[:15]
    assert created["models"] == ["team/*"] and created["metadata"] == {"owner": "ci"}
    assert chat(gateway, key, "team/a").choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        chat(gateway, key, "other")  # not its model: as if it did not exist
    listed = admin("GET", "/admin/keys").json()["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and key not in admin("GET", "/admin/keys").text
    db = sqlite3.connect(tmp_path / "data" / "turnout.db")
    stored = db.execute("SELECT * FROM api_keys").fetchall()
    db.close()
    assert not any(key in str(value) for row in stored for value in row)  # only its hash


def test_a_revoked_key_stops_at_once(gateway: Gateway, admin: Callable[..., httpx.Response]) -> None:
    created = issue(admin)
    assert chat(gateway, created["key"]).choices
    revoked = admin("POST", f"/admin/keys/{created['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    with pytest.raises(openai.AuthenticationError):  # the very next request, no cache to expire
        chat(gateway, created["key"])


def test_rotation_keeps_the_old_key_for_its_grace_period(
    gateway: Gateway, admin: Callable[..., httpx.Response]
) -> None:
    first = issue(admin, models=["chat"])
    rotated = admin("POST", f"/admin/keys/{first['id']}/rotate", grace="1h").json()
    assert rotated["key"] != first["key"] and rotated["models"] == ["chat"]
    assert chat(gateway, first["key"]).choices and chat(gateway, rotated["key"]).choices
    old = admin("GET", f"/admin/keys/{first['id']}").json()
    assert old["rotated_to"] == rotated["id"] and 3500 < old["expires_at"] - time.time() <= 3600
    second = admin("POST", f"/admin/keys/{rotated['id']}/rotate").json()  # no grace: at once
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(gateway, rotated["key"])
    assert caught.value.body["code"] == "expired_api_key"  # type: ignore[index]
    assert chat(gateway, second["key"]).choices


def test_no_key_is_broader_than_its_issuer(gateway: Gateway, admin: Callable[..., httpx.Response]) -> None:
    red = admin("POST", "/admin/teams", name="red").json()["id"]
    blue = admin("POST", "/admin/teams", name="blue").json()["id"]
    team_admin = issue(admin, role="admin", team_id=red, models=["team/*"], expires_in="1d", max_budget="10")
    key = team_admin["key"]
    for spec, param in [
        ({"models": ["other"]}, "models"),
        ({"models": ["*"]}, "models"),
        ({"expires_in": "2d"}, "expires_at"),
        ({"max_budget": "10.01"}, "max_budget"),
        ({"team_id": blue}, "team_id"),
        ({"role": "owner"}, None),
    ]:
        refused = admin("POST", "/admin/keys", key, name="x", **spec)
        assert refused.status_code == 403, spec
        assert refused.json()["error"]["param"] == param
    narrower = issue(admin, key, models=["team/a"])
    assert narrower["team_id"] == red and narrower["max_budget_micros"] == 10_000_000
    assert narrower["expires_at"] <= team_admin["expires_at"]
    inherited = issue(admin, key)  # unbounded asks get the issuer's bounds
    assert inherited["models"] == ["team/*"]

    member = issue(admin, role="member")
    assert admin("POST", "/admin/keys", member["key"], name="x").status_code == 403
    assert admin("GET", "/admin/keys", member["key"]).status_code == 403
    # a team admin sees and manages its team's keys only; others' look absent
    blue_key = issue(admin, team_id=blue)
    assert admin("POST", f"/admin/keys/{blue_key['id']}/revoke", key).status_code == 404
    assert {k["team_id"] for k in admin("GET", "/admin/keys", key).json()["data"]} == {red}


def test_bad_requests_and_hostile_keys(gateway: Gateway, admin: Callable[..., httpx.Response]) -> None:
    assert admin("POST", "/admin/keys", role="emperor", name="x").status_code == 400
    assert admin("POST", "/admin/keys", name="x", expires_in="soon").json()["error"]["param"] == "expires_in"
    assert admin("POST", "/admin/keys", name="x", colour="red").status_code == 400
    assert admin("POST", "/admin/keys/key_nope/revoke").status_code == 404
    assert admin("DELETE", "/admin/keys/key_nope").status_code == 405
    for hostile in ("' OR '1'='1", "x'); DROP TABLE api_keys; --", "%00%00", "k" * 600):
        response = admin("GET", "/admin/keys", hostile)
        assert response.status_code == 401
    assert admin("GET", "/admin/keys").status_code == 200  # the table is still there


def test_the_cli_issues_lists_rotates_and_revokes_through_the_gateway(gateway: Gateway) -> None:
    from click.testing import CliRunner

    from turnout.cli.main import main

    runner = CliRunner()
    common = ["--url", gateway.root_url, "--key", MASTER_KEY]
    created = runner.invoke(main, ["keys", "create", *common, "--name", "etl", "--models", "chat, team/*"])
    assert created.exit_code == 0, created.output
    key = created.output.split("shown this once")[1].split()[-1]
    key_id = created.output.split()[0]
    assert key.startswith("sk-turnout-") and chat(gateway, key).choices
    listed = runner.invoke(main, ["keys", "list", *common])
    assert key_id in listed.output and "models=chat,team/*" in listed.output and key not in listed.output
    rotated = runner.invoke(main, ["keys", "rotate", *common, key_id, "--grace", "0s"])
    new_key = rotated.output.split("shown this once")[1].split()[-1]
    assert chat(gateway, new_key).choices
    new_id = rotated.output.split()[0]
    assert runner.invoke(main, ["keys", "revoke", *common, new_id]).exit_code == 0
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, new_key)
    refused = runner.invoke(main, ["keys", "list", "--url", gateway.root_url, "--key", "sk-wrong"])
    assert refused.exit_code == 1 and "Incorrect API key" in refused.output


def test_a_key_issued_on_one_instance_works_on_another_at_once(tmp_path: Path) -> None:
    doc = {"providers": {"fake": {"type": "fake"}}, "models": {"chat": {"provider": "fake", "model": "m"}}}
    shared = tmp_path / "shared"  # one database (and key-hash secret) for both instances
    first = Gateway(settings_for(doc, shared)).start()
    second = Gateway(settings_for(doc, shared)).start()
    try:
        with httpx.Client(timeout=20) as http:
            created = http.post(
                first.root_url + "/admin/keys",
                headers={"authorization": f"Bearer {MASTER_KEY}"},
                json={"name": "x"},
            ).json()
        assert chat(second, created["key"]).choices  # never seen there: looked up in the store
        with pytest.raises(openai.AuthenticationError):
            chat(second, created["key"] + "x")
    finally:
        first.stop()
        second.stop()


@pytest.mark.postgres
def test_a_store_outage_is_never_reported_as_an_invalid_key(tmp_path: Path) -> None:
    import asyncio

    from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
    from support.tcp_forwarder import TcpForwarder

    name = asyncio.run(create_postgres_database())
    forwarder = TcpForwarder(PG_HOST, 5432).start()
    doc = {
        "storage": {"database_url": f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{forwarder.port}/{name}"},
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
    }
    other = {**doc, "storage": {"database_url": f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{name}"}}
    gateway = Gateway(settings_for(doc, tmp_path / "a")).start()
    issuer = Gateway(settings_for(other, tmp_path / "a")).start()  # same hash secret, direct to the server
    try:
        with httpx.Client(timeout=20) as http:
            created = http.post(
                issuer.root_url + "/admin/keys",
                headers={"authorization": f"Bearer {MASTER_KEY}"},
                json={"name": "x"},
            ).json()
        forwarder.cut()  # the gateway's database goes away
        with pytest.raises(openai.InternalServerError) as caught:
            chat(gateway, created["key"])  # a key it has never seen: it cannot tell, so 503
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "key_store_unavailable"  # type: ignore[index]
        assert chat(gateway, MASTER_KEY).choices  # known keys never wait for the database
    finally:
        issuer.stop()
        gateway.stop()
        forwarder.stop()
        asyncio.run(drop_postgres_database(name))


def test_a_key_is_changed_within_what_its_changer_may_give(
    gateway: Gateway, admin: Callable[..., httpx.Response]
) -> None:
    red = admin("POST", "/admin/teams", name="red").json()["id"]
    blue = admin("POST", "/admin/teams", name="blue").json()["id"]
    team_admin = issue(admin, role="admin", team_id=red, models=["team/*"])["key"]
    member = issue(admin, team_id=red, models=["team/a"], metadata={"app": "etl"})
    with pytest.raises(openai.NotFoundError):
        chat(gateway, member["key"], "team/b")
    changed = admin("PATCH", f"/admin/keys/{member['id']}", team_admin, models=["team/*"], name="etl v2")
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["models"] == ["team/*"] and body["name"] == "etl v2" and body["metadata"] == {"app": "etl"}
    assert chat(gateway, member["key"], "team/b").choices  # at once, on the next request
    for change, param in (({"models": ["other"]}, "models"), ({"role": "owner"}, None)):
        refused = admin("PATCH", f"/admin/keys/{member['id']}", team_admin, **change)
        assert refused.status_code == 403 and refused.json()["error"]["param"] == param
    other = issue(admin, team_id=blue)
    assert admin("PATCH", f"/admin/keys/{other['id']}", team_admin, name="mine").status_code == 404
    assert admin("PATCH", f"/admin/keys/{member['id']}", team_id=blue).status_code == 400  # owner is fixed
    # the master key lifts the model list altogether (null), and sets a budget
    lifted = admin("PATCH", f"/admin/keys/{member['id']}", models=None, max_budget="5").json()
    assert lifted["models"] is None and lifted["max_budget_micros"] == 5_000_000
    assert chat(gateway, member["key"], "other").choices
    admin("POST", f"/admin/keys/{member['id']}/revoke")
    assert admin("PATCH", f"/admin/keys/{member['id']}", name="x").status_code == 400
    [update] = admin("GET", f"/admin/audit?action=key.update&target_id={member['id']}&limit=1").json()["data"]
    assert update["before"]["models"] == ["team/*"] and update["after"]["models"] is None
