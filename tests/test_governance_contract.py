"""Governance on SQLite and on PostgreSQL: the audit log (written in the caller's transaction,
filtered, paged, scoped to a team admin's team, free of secrets, and append-only in the database
itself) and the two-person rule (never oneself, never another team's, never after expiry, never
twice, even with twenty admins approving at once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from turnout.domain.errors import (
    Conflict,
    InvalidRequest,
    PermissionDenied,
    ResourceNotFound,
    TurnoutError,
    UnsupportedFeature,
)
from turnout.domain.principal import Principal
from turnout.governance.approvals import Approvals
from turnout.governance.audit import AuditLog
from turnout.storage.database import Database
from turnout.storage.tables import api_keys, audit_log, key_controllers, pending_actions

from support.databases import opened_database


async def listed(approvals: Approvals, viewer: Principal, status: str | None = None) -> list[dict[str, Any]]:
    """The first page of the pending actions `viewer` may see."""
    actions, _ = await approvals.page(viewer, status)
    return actions


async def query(audit: AuditLog, viewer: Principal, **filters: Any) -> list[dict[str, Any]]:
    """The first page of what `viewer` may read that matches `filters`."""
    rows, _ = await audit.page(viewer, **filters)
    return rows


BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
T0 = 1_700_000_000.0
TTL = 3600.0

OWNER = Principal(key_id="key_owner", name="Olivia", role="owner", user_id="u_olivia", person="u_olivia")
ALICE = Principal(key_id="key_alice", name="Alice", role="admin", user_id="u_alice", person="u_alice")
ALICE_LAPTOP = Principal(
    key_id="key_alice2", name="Alice (laptop)", role="admin", user_id="u_alice", person="u_alice"
)
BOB = Principal(key_id="key_bob", name="Bob", role="admin", user_id="u_bob", person="u_bob")
RED = Principal(
    key_id="key_red", name="Red admin", role="admin", team_id="red", user_id="u_red", person="u_red"
)
RED_2 = Principal(
    key_id="key_red2", name="Red admin 2", role="admin", team_id="red", user_id="u_red2", person="u_red2"
)
BLUE = Principal(
    key_id="key_blue", name="Blue admin", role="admin", team_id="blue", user_id="u_blue", person="u_blue"
)
MEMBER = Principal(key_id="key_member", name="Member", role="member", team_id="red", person="u_member")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Executor:
    """Counts its runs; returns the target and a plaintext key (as a key rotation would)."""

    def __init__(self, error: Exception | None = None, delay: float = 0.0) -> None:
        self.calls: list[tuple[Principal, dict[str, Any]]] = []
        self.error = error
        self.delay = delay

    async def __call__(self, requester: Principal, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((requester, params))
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return {"revoked": params["key_id"], "key": "sk-turnout-new-secret"}


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with opened_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def audit(database: Database, clock: Clock) -> AuditLog:
    return AuditLog(database, clock=clock)


async def approvals_with(database: Database, audit: AuditLog, clock: Clock, executor: Executor) -> Approvals:
    """The two-person rule over a database holding the module's keys (an action runs with its
    requester's key as the store has it when it is approved)."""
    approvals = Approvals(database, audit, ttl=TTL, clock=clock)
    approvals.register("key.revoke", executor, "Revoke a key")
    now = datetime.fromtimestamp(T0, UTC)
    async with database.engine.begin() as conn:
        for p in (OWNER, ALICE, ALICE_LAPTOP, BOB, RED, RED_2, BLUE, MEMBER):
            person = p.person
            await conn.execute(
                sa.insert(api_keys).values(
                    id=p.key_id,
                    key_hash=p.key_id.encode().ljust(32, b"-"),
                    prefix="sk-turnout-xxxx",
                    name=p.name,
                    kind="virtual",
                    role=p.role,
                    team_id=p.team_id,
                    user_id=p.user_id,
                    person=person,
                    created_at=now,
                )
            )
            await conn.execute(sa.insert(key_controllers).values(key_id=p.key_id, person=person))
    return approvals


async def record(
    database: Database, audit: AuditLog, actor: Principal, action: str, target: str, **fields: Any
) -> None:
    async with database.engine.begin() as conn:
        await audit.record(conn, actor, action, "key", target, **fields)


async def propose(approvals: Approvals, requester: Principal, team_id: str | None = None) -> str:
    described = await approvals.propose(
        requester,
        "key.revoke",
        "key",
        "key_victim",
        team_id=team_id,
        params={"key_id": "key_victim"},
        request_id="req_propose",
    )
    return str(described["id"])


# ------------------------------------------------------------------------------ the audit log


async def test_a_row_round_trips_and_commits_only_with_its_change(
    database: Database, audit: AuditLog
) -> None:
    before = {"name": "old", "models": ["a", "b"], "limits": {"rpm": 10}}
    after = {"name": "new", "models": None, "limits": {"rpm": 20}}
    async with database.engine.begin() as conn:
        await audit.record(
            conn,
            ALICE,
            "key.update",
            "key",
            "key_1",
            team_id="red",
            before=before,
            after=after,
            request_id="r1",
        )
    with pytest.raises(RuntimeError):
        async with database.engine.begin() as conn:
            await audit.record(conn, ALICE, "key.update", "key", "key_2")
            raise RuntimeError("the change failed")  # its audit row goes with it
    [row] = await query(audit, OWNER)
    assert row == {
        "id": row["id"],
        "object": "audit_event",
        "at": T0,
        "actor": "Alice",
        "actor_key_id": "key_alice",
        "actor_person": "u_alice",
        "action": "key.update",
        "target_type": "key",
        "target_id": "key_1",
        "team_id": "red",
        "before": before,
        "after": after,
        "request_id": "r1",
    }


async def test_filters_paging_and_limits(database: Database, audit: AuditLog, clock: Clock) -> None:
    await record(database, audit, ALICE, "key.create", "key_1", team_id="red")
    clock.now += 60
    await record(database, audit, BOB, "key.revoke", "key_1", team_id="red")
    clock.now += 60
    await record(database, audit, ALICE, "team.create", "blue", team_id="blue")
    clock.now += 60
    await record(database, audit, BOB, "key_create", "key_2")  # "_" is no wildcard in "key.*"

    def actions(rows: list[dict[str, Any]]) -> list[str]:
        return [r["action"] for r in rows]

    everything = await query(audit, OWNER)
    assert actions(everything) == ["key_create", "team.create", "key.revoke", "key.create"]  # newest first
    assert actions(await query(audit, OWNER, action="key.*")) == ["key.revoke", "key.create"]
    assert actions(await query(audit, OWNER, action="key_*")) == ["key_create"]
    assert actions(await query(audit, OWNER, action="key.create")) == ["key.create"]
    assert actions(await query(audit, OWNER, actor_key_id="key_bob")) == ["key_create", "key.revoke"]
    assert actions(await query(audit, OWNER, target_type="key", target_id="key_1")) == [
        "key.revoke",
        "key.create",
    ]
    assert actions(await query(audit, OWNER, team_id="blue")) == ["team.create"]
    since = datetime.fromtimestamp(T0 + 60, UTC)
    until = datetime.fromtimestamp(T0 + 180, UTC)
    assert actions(await query(audit, OWNER, since=since, until=until)) == ["team.create", "key.revoke"]
    naive = datetime.fromtimestamp(T0 + 120, UTC).replace(tzinfo=None)  # taken as UTC
    assert actions(await query(audit, OWNER, since=naive)) == ["key_create", "team.create"]

    first, more = await audit.page(OWNER, limit=3)
    assert actions(first) == actions(everything)[:3] and more.has_more
    rest, more = await audit.page(OWNER, limit=3, before_id=first[-1]["id"])
    assert actions(rest) == ["key.create"] and not more.has_more
    after, more = await audit.page(OWNER, limit=3, after=(await audit.page(OWNER, limit=3))[1].next_cursor)
    assert after == rest and not more.has_more  # the cursor reaches the same page
    assert await query(audit, OWNER, before_id=everything[-1]["id"]) == []
    for limit in (0, 1001):
        with pytest.raises(InvalidRequest) as refused:
            await query(audit, OWNER, limit=limit)
        assert refused.value.param == "limit"


async def test_a_team_admin_reads_only_their_team(database: Database, audit: AuditLog) -> None:
    await record(database, audit, RED, "key.create", "key_r", team_id="red")
    await record(database, audit, BLUE, "key.create", "key_b", team_id="blue")
    await record(database, audit, OWNER, "team.create", "green")  # organisation-wide
    assert [r["target_id"] for r in await query(audit, RED)] == ["key_r"]
    assert await query(audit, RED, team_id="blue") == []
    assert len(await query(audit, ALICE)) == 3  # an admin of no team is organisation-wide
    with pytest.raises(PermissionDenied):
        await query(audit, MEMBER)


async def test_the_database_refuses_to_change_or_remove_audit_rows(
    database: Database, audit: AuditLog
) -> None:
    await record(database, audit, ALICE, "key.create", "key_1")
    for statement in (sa.update(audit_log).values(actor="Mallory"), sa.delete(audit_log)):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with database.engine.begin() as conn:
                await conn.execute(statement)
    [row] = await query(audit, OWNER)
    assert row["actor"] == "Alice"


async def test_secrets_are_never_stored(database: Database, audit: AuditLog) -> None:
    after = {
        "id": "key_1",
        "key": "sk-turnout-plaintext",
        "key_hash": "ab" * 32,
        "metadata": {"key": "nested", "keep": 1},
        "history": [{"key_hash": "cd", "at": 1}],
    }
    async with database.engine.begin() as conn:
        await audit.record(conn, ALICE, "key.create", "key", "key_1", after=after, before={"key": "old"})
    [row] = await query(audit, OWNER)
    assert row["after"] == {"id": "key_1", "metadata": {"keep": 1}, "history": [{"at": 1}]}
    assert row["before"] == {}
    async with database.engine.connect() as conn:
        stored = (await conn.execute(sa.select(audit_log.c.before, audit_log.c.after))).one()
    assert "sk-turnout" not in stored.after and "abab" not in stored.after and "old" not in stored.before


# ------------------------------------------------------------------------------ two-person rule


async def test_an_approved_action_runs_once_with_its_requesters_authority(
    database: Database, audit: AuditLog, clock: Clock
) -> None:
    executor = Executor()
    approvals = await approvals_with(database, audit, clock, executor)
    proposed = await approvals.propose(
        RED,
        "key.revoke",
        "key",
        "key_victim",
        team_id="red",
        params={"key_id": "key_victim"},
        request_id="rq",
    )
    assert proposed["object"] == "pending_action" and proposed["id"].startswith("act_")
    assert proposed["status"] == "pending" and proposed["description"] == "Revoke a key"
    assert proposed["requested_by"] == "key_red" and proposed["requested_by_user"] == "u_red"
    assert proposed["requested_at"] == T0 and proposed["expires_at"] == T0 + TTL
    assert proposed["params"] == {"key_id": "key_victim"} and proposed["result"] is None
    assert executor.calls == []

    clock.now += 10
    approved = await approvals.approve(RED_2, proposed["id"], "rq2")
    assert executor.calls == [(RED, {"key_id": "key_victim"})]  # the requester's principal
    assert approved["status"] == "approved" and approved["decided_by"] == "key_red2"
    assert approved["decided_at"] == T0 + 10
    assert approved["result"] == {"revoked": "key_victim", "key": "sk-turnout-new-secret"}  # this once
    stored = await approvals.get(OWNER, proposed["id"])
    assert stored["status"] == "approved" and stored["result"] == {"revoked": "key_victim"}

    events = await query(audit, OWNER, target_type="pending_action", target_id=proposed["id"])
    assert [(e["action"], e["actor_key_id"]) for e in events] == [
        ("approval.approved", "key_red2"),
        ("approval.requested", "key_red"),
    ]
    assert events[0]["team_id"] == "red" and events[0]["request_id"] == "rq2"
    assert events[0]["after"]["requested_by"] == "key_red"
    assert events[0]["after"]["requested_by_name"] == "Red admin"
    assert events[0]["after"]["result"] == {"revoked": "key_victim"}
    assert events[1]["after"]["params"] == {"key_id": "key_victim"}


async def test_nobody_approves_their_own_action(database: Database, audit: AuditLog, clock: Clock) -> None:
    executor = Executor()
    approvals = await approvals_with(database, audit, clock, executor)
    action_id = await propose(approvals, ALICE)
    for same_person in (ALICE, ALICE_LAPTOP):  # the same key; the same user with another key
        with pytest.raises(PermissionDenied) as refused:
            await approvals.approve(same_person, action_id)
        assert refused.value.code == "self_approval"
    no_user = Principal(key_id="key_alice", name="Alice", role="admin")
    with pytest.raises(PermissionDenied):
        await approvals.approve(no_user, action_id)
    assert executor.calls == []
    assert (await approvals.get(BOB, action_id))["status"] == "pending"
    assert (await approvals.approve(BOB, action_id))["status"] == "approved"


async def test_another_teams_action_is_invisible(database: Database, audit: AuditLog, clock: Clock) -> None:
    executor = Executor()
    approvals = await approvals_with(database, audit, clock, executor)
    action_id = await propose(approvals, BLUE, team_id="blue")
    red_id = await propose(approvals, RED, team_id="red")
    for call in (approvals.get, approvals.approve, approvals.reject):
        with pytest.raises(ResourceNotFound) as hidden:
            await call(RED, action_id)
        with pytest.raises(ResourceNotFound) as missing:
            await call(RED, "act_0000000000000000")
        assert hidden.value.status == missing.value.status == 404
        assert hidden.value.code == missing.value.code
    assert [a["id"] for a in await listed(approvals, RED)] == [red_id]
    assert {a["id"] for a in await listed(approvals, OWNER)} == {action_id, red_id}
    with pytest.raises(PermissionDenied):
        await approvals.approve(MEMBER, red_id)
    with pytest.raises(PermissionDenied):
        await listed(approvals, MEMBER)
    with pytest.raises(PermissionDenied):  # nor propose for another team
        await propose(approvals, RED, team_id="blue")
    with pytest.raises(PermissionDenied):
        await propose(approvals, MEMBER, team_id="red")
    assert executor.calls == []
    assert (await approvals.approve(OWNER, action_id))["status"] == "approved"


async def test_an_expired_action_cannot_be_approved(
    database: Database, audit: AuditLog, clock: Clock
) -> None:
    executor = Executor()
    approvals = await approvals_with(database, audit, clock, executor)
    action_id = await propose(approvals, ALICE)
    clock.now += TTL + 1
    assert (await approvals.get(BOB, action_id))["status"] == "expired"  # shown so before touched
    assert [a["id"] for a in await listed(approvals, BOB, "expired")] == [action_id]
    assert await listed(approvals, BOB, "pending") == []
    for decide in (approvals.approve, approvals.reject):
        with pytest.raises(Conflict) as refused:
            await decide(BOB, action_id)
        assert refused.value.code == "action_expired" and refused.value.status == 409
    async with database.engine.connect() as conn:
        query = sa.select(pending_actions.c.status).where(pending_actions.c.id == action_id)
        assert (await conn.execute(query)).scalar_one() == "expired"
    assert executor.calls == []


async def test_a_rejected_action_never_runs(database: Database, audit: AuditLog, clock: Clock) -> None:
    executor = Executor()
    approvals = await approvals_with(database, audit, clock, executor)
    action_id = await propose(approvals, ALICE)
    rejected = await approvals.reject(BOB, action_id, "rq")
    assert rejected["status"] == "rejected" and rejected["decided_by"] == "key_bob"
    with pytest.raises(Conflict) as refused:
        await approvals.approve(OWNER, action_id)
    assert refused.value.code == "action_already_decided"
    clock.now += 1
    withdrawn = await propose(approvals, ALICE)
    assert (await approvals.reject(ALICE, withdrawn))["status"] == "rejected"  # one's own: withdrawn
    assert executor.calls == []
    [event] = await query(audit, OWNER, action="approval.rejected", target_id=action_id)
    assert event["actor"] == "Bob" and event["after"]["requested_by"] == "key_alice"
    assert [a["id"] for a in await listed(approvals, OWNER, "rejected")] == [withdrawn, action_id]
    with pytest.raises(InvalidRequest):
        await listed(approvals, OWNER, "maybe")


async def test_an_action_is_approved_once(database: Database, audit: AuditLog, clock: Clock) -> None:
    executor = Executor()
    approvals = await approvals_with(database, audit, clock, executor)
    action_id = await propose(approvals, ALICE)
    await approvals.approve(BOB, action_id)
    with pytest.raises(Conflict) as refused:
        await approvals.approve(OWNER, action_id)
    assert refused.value.code == "action_already_decided"
    with pytest.raises(Conflict):
        await approvals.reject(OWNER, action_id)
    assert len(executor.calls) == 1


async def test_twenty_admins_approving_at_once_run_it_once(
    database: Database, audit: AuditLog, clock: Clock
) -> None:
    executor = Executor(delay=0.05)
    approvals = await approvals_with(database, audit, clock, executor)
    action_id = await propose(approvals, ALICE)
    admins = [
        Principal(key_id=f"key_{i}", name=f"Admin {i}", role="admin", user_id=f"u_{i}") for i in range(20)
    ]
    outcomes = await asyncio.gather(
        *(approvals.approve(a, action_id) for a in admins), return_exceptions=True
    )
    won = [o for o in outcomes if isinstance(o, dict)]
    lost = [o for o in outcomes if not isinstance(o, dict)]
    assert len(won) == 1 and won[0]["status"] == "approved"
    assert len(lost) == 19 and all(isinstance(o, Conflict) for o in lost), lost
    assert len(executor.calls) == 1
    assert len(await query(audit, OWNER, action="approval.approved")) == 1


@pytest.mark.parametrize("error", [UnsupportedFeature("That key is already revoked."), RuntimeError("bug")])
async def test_a_failing_action_is_stored_as_failed(
    database: Database, audit: AuditLog, clock: Clock, error: Exception
) -> None:
    executor = Executor(error=error)
    approvals = await approvals_with(database, audit, clock, executor)
    action_id = await propose(approvals, ALICE)
    with pytest.raises(type(error)):
        await approvals.approve(BOB, action_id)
    failed = await approvals.get(OWNER, action_id)
    assert failed["status"] == "failed" and failed["decided_by"] == "key_bob"
    if isinstance(error, TurnoutError):
        assert failed["result"] == {
            "error": {
                "message": error.message,
                "type": "invalid_request_error",
                "code": "unsupported_feature",
            }
        }
    else:  # a bug's details stay in the server's log
        assert failed["result"]["error"]["code"] == "internal_error"
    [event] = await query(audit, OWNER, action="approval.failed")
    assert event["target_id"] == action_id and event["after"]["status"] == "failed"
    with pytest.raises(Conflict):
        await approvals.approve(OWNER, action_id)
    assert len(executor.calls) == 1
