"""Keys changed on one instance change on every other instance sharing its database: two real
gateways on one PostgreSQL database; a key revoked, its user's role lowered or removed, or rotated
on one stops working (or is lowered) on the other within the sync's bound, and a replaced master
key stops working everywhere. The sync outlives a database that cannot be read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from turnout.domain.key_policy import KeySpec
from turnout.domain.principal import Principal
from turnout.governance.audit import AuditLog
from turnout.keys.index import KeyIndex
from turnout.keys.service import KeyService
from turnout.keys.store import MASTER_KEY_ID, load_keys
from turnout.keys.sync import KeySync
from turnout.storage.database import Database

from support.databases import PG_HOST, PG_USER, create_postgres_database, drop_postgres_database
from support.gateway import MASTER_KEY, Gateway, settings_for

PROPAGATION = 5.0  # seconds: the documented bound is the sync interval (1 s) plus a read
HASH_SECRET = "test-key-hash-secret-shared-by-both-instances"
Admin = Callable[..., httpx.Response]


def doc_for(database: str) -> dict[str, Any]:
    return {
        "storage": {"database_url": f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{database}"},
        "governance": {"two_person_rule": []},  # role changes take effect at once
        "providers": {"fake": {"type": "fake"}},
        "models": {"chat": {"provider": "fake", "model": "m"}},
    }


class Pair:
    """Two instances of the gateway on one database, with the same key-hash secret."""

    def __init__(self, tmp_path: Path, master_key: str = MASTER_KEY) -> None:
        self.database = asyncio.run(create_postgres_database())
        environ = {"TURNOUT_KEY_HASH_SECRET": HASH_SECRET, "TURNOUT_MASTER_KEY": master_key}
        self.settings = [settings_for(doc_for(self.database), tmp_path / n, environ) for n in ("a", "b")]
        self.a, self.b = Gateway(self.settings[0]), Gateway(self.settings[1])
        self._http = httpx.Client(timeout=20)
        try:
            self.a.start()  # first: on a fresh database, it is the one that creates the schema
            self.b.start()
        except BaseException:
            self.close()
            raise

    def admin(
        self, gateway: Gateway, method: str, path: str, key: str = MASTER_KEY, **body: Any
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"}
        return self._http.request(method, gateway.root_url + path, headers=headers, json=body or None)

    def close(self) -> None:
        self._http.close()
        for gateway in (self.a, self.b):
            gateway.stop()
        asyncio.run(drop_postgres_database(self.database))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    pair = Pair(tmp_path)
    yield pair
    pair.close()


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def chat(gateway: Gateway, key: str) -> str:
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20) as sdk:
        answer = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    return answer.choices[0].message.content or ""


def refused(gateway: Gateway, key: str) -> str | None:
    """The error code if `gateway` refuses `key` (401), else None."""
    try:
        chat(gateway, key)
    except openai.AuthenticationError as error:
        return str(error.body["code"])  # type: ignore[index]
    return None


def refusing(gateway: Gateway, key: str, code: str = "invalid_api_key") -> Callable[[], bool]:
    return lambda: refused(gateway, key) == code


def within(bound: float, condition: Callable[[], Any]) -> float:
    """Seconds until `condition()` is true, polling up to `bound` (the propagation the sync
    promises); fails past it."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < bound, f"not propagated within {bound}s"
        time.sleep(0.05)
    return time.monotonic() - began


@pytest.mark.postgres
def test_a_key_revoked_on_one_instance_stops_on_the_other(pair: Pair) -> None:
    created = ok(pair.admin(pair.a, "POST", "/admin/keys", name="x"))
    key = created["key"]
    assert chat(pair.b, key)  # known there now (looked up, then kept in its index)
    ok(pair.admin(pair.a, "POST", f"/admin/keys/{created['id']}/revoke"))
    assert refused(pair.a, key) == "invalid_api_key"  # at once where it was revoked
    within(PROPAGATION, refusing(pair.b, key))
    assert chat(pair.b, MASTER_KEY)  # the other keys are untouched


@pytest.mark.postgres
def test_a_key_issued_elsewhere_lists_and_reads_models_at_once(pair: Pair) -> None:
    """Not only chat: the model list, a model's page and stored responses look a key up too,
    before the sync has brought it (an SDK's first call is often `models.list()`)."""
    key = ok(pair.admin(pair.a, "POST", "/admin/keys", name="x"))["key"]
    with openai.OpenAI(base_url=pair.b.base_url, api_key=key, max_retries=0, timeout=20) as sdk:
        assert [m.id for m in sdk.models.list()] == ["chat"]
    other = ok(pair.admin(pair.a, "POST", "/admin/keys", name="y"))["key"]
    with openai.OpenAI(base_url=pair.b.base_url, api_key=other, max_retries=0, timeout=20) as sdk:
        assert sdk.models.retrieve("chat").id == "chat"
    third = ok(pair.admin(pair.a, "POST", "/admin/keys", name="z"))["key"]
    stored = pair.admin(pair.b, "GET", "/v1/responses/resp_none", key=third)
    assert stored.status_code == 404, stored.text  # known, and the response is not there


@pytest.mark.postgres
def test_a_key_issued_elsewhere_is_known_without_a_lookup(pair: Pair) -> None:
    created = ok(pair.admin(pair.a, "POST", "/admin/keys", name="x"))
    key_hash = pair.b.call(lambda: pair.b.services.keys.hash(created["key"]))
    within(PROPAGATION, lambda: pair.b.call(lambda: pair.b.services.keys.get(key_hash)) is not None)
    pair.b.call(lambda: setattr(pair.b.services.keys, "lookup", None))  # no store to ask now
    assert chat(pair.b, created["key"])


@pytest.mark.postgres
def test_a_role_lowered_or_taken_on_one_instance_is_lowered_on_the_other(pair: Pair) -> None:
    a, b = pair.a, pair.b
    team = ok(pair.admin(a, "POST", "/admin/teams", name="red"))["id"]
    user = ok(pair.admin(a, "POST", "/admin/users", email="alice@example.com", name="alice"))["id"]
    ok(pair.admin(a, "POST", f"/admin/teams/{team}/members", user_id=user, role="admin"))
    alice = ok(pair.admin(a, "POST", "/admin/keys", name="alice", team_id=team, user_id=user, role="admin"))
    key = alice["key"]
    assert pair.admin(b, "GET", "/admin/keys", key).status_code == 200  # an admin of her team, there
    ok(pair.admin(a, "POST", f"/admin/teams/{team}/members", user_id=user, role="member"))
    assert pair.admin(a, "GET", "/admin/keys", key).status_code == 403
    within(PROPAGATION, lambda: pair.admin(b, "GET", "/admin/keys", key).status_code == 403)
    assert pair.admin(b, "POST", "/admin/keys", key, name="mine").status_code == 403
    assert chat(b, key)  # a member still calls models
    ok(pair.admin(a, "DELETE", f"/admin/teams/{team}/members/{user}"))
    within(PROPAGATION, refusing(b, key))  # left the team: key revoked


@pytest.mark.postgres
def test_a_key_rotated_out_on_one_instance_stops_on_the_other(pair: Pair) -> None:
    first = ok(pair.admin(pair.a, "POST", "/admin/keys", name="x"))
    assert chat(pair.b, first["key"])
    second = ok(pair.admin(pair.a, "POST", f"/admin/keys/{first['id']}/rotate", grace="0s"))
    assert refused(pair.a, first["key"]) == "expired_api_key"
    within(PROPAGATION, refusing(pair.b, first["key"], "expired_api_key"))
    assert chat(pair.b, second["key"])


@pytest.mark.postgres
def test_a_replaced_master_key_stops_working_on_every_instance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from turnout.cli.serve import reset_master

    pair = Pair(tmp_path, master_key="")  # no configured master key: the first start generates one
    try:
        old = pair.a.services.master_key.generated
        assert old is not None and pair.b.services.master_key.generated is None
        assert chat(pair.a, old) and chat(pair.b, old)
        reset_master(pair.settings[0])  # `turnout reset-master-key`, while both run
        new = capsys.readouterr().out.split()[-1]
        for gateway in (pair.a, pair.b):
            within(PROPAGATION, refusing(gateway, old))
            assert chat(gateway, new)
    finally:
        pair.close()


# ------------------------------------------------------------------ the sync on its own


def test_the_sync_outlives_a_database_it_cannot_read(tmp_path: Path) -> None:
    async def scenario() -> None:
        database = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
        try:
            here, elsewhere = KeyIndex(b"secret"), KeyIndex(b"secret")
            await load_keys(database, here, None)
            await load_keys(database, elsewhere, None)
            service = KeyService(database, elsewhere, AuditLog(database))
            owner = Principal(key_id=MASTER_KEY_ID, name="m", role="owner", kind="master")
            key, described = await service.issue(owner, KeySpec(name="x"))
            # an overlap far shorter than the outage: what changed before it is found by the
            # watermark, which only moves on after a read that succeeded
            sync = KeySync(database, here, configured_master=False, interval=0.05, overlap=0.05)
            assert await sync.tick() and here.authenticate(key).key_id == described["id"]
            await service.revoke(owner, described["id"])  # on the other instance...
            async with database.engine.begin() as conn:  # ...just before reads start failing
                await conn.execute(sa.text("ALTER TABLE api_keys RENAME TO api_keys_away"))
            sync.start()
            await asyncio.sleep(0.5)
            assert sync.failures > 1 and here.authenticate(key).key_id == described["id"]  # kept
            async with database.engine.begin() as conn:
                await conn.execute(sa.text("ALTER TABLE api_keys_away RENAME TO api_keys"))
            deadline = time.monotonic() + 5
            while here.get(here.hash(key)) is not None:
                assert time.monotonic() < deadline, "the sync stopped"
                await asyncio.sleep(0.02)
            assert sync.failures == 0
            await sync.aclose()
        finally:
            await database.close()

    asyncio.run(scenario())


def test_a_read_overtaken_by_a_change_here_is_not_applied() -> None:
    index = KeyIndex(b"secret")
    key_hash = index.hash("sk-turnout-x")
    principal = Principal(key_id="key_1", name="x", role="admin")
    index.add(key_hash, principal)
    read_at = time.monotonic()  # a read of the store begins, and finds the key as it was...
    index.touch(key_hash)  # ...while it is being revoked here
    index.remove(key_hash)
    assert not index.add(key_hash, principal, read_at=read_at)
    assert index.get(key_hash) is None
    assert index.add(key_hash, principal, read_at=time.monotonic())  # a read begun after it counts
