"""The two-person rule: an admin action that needs a second admin is proposed (stored as a pending
action, with its audit row) and runs only when another person approves it.

- Who decides: owners and admins; a team admin only the actions of their own team. An action the
  caller may not see answers 404, exactly as one that does not exist.
- Never oneself: the approver must be another PERSON than the proposer, and neither may be able
  to use the other's key (`domain.key_policy.one_person`: a key one issued, or that was issued by
  a key one could use, is one's own). The master key is one person. Rejecting one's own proposal
  (withdrawing it) is allowed: it can only do less.
- Whose authority, and when: the action runs with the REQUESTER's authority as it is when it is
  approved, read from the store (their key, or the key that replaced it in a rotation): the
  executor receives that principal and the params and checks it as it would a direct call, so a
  proposal never does more than its requester can do now, whoever approves it. A requester whose
  key was revoked, or who can no longer propose it (demoted, deleted, out of the team), cancels
  it: it never runs (status `cancelled`). The approver's authority is also their current one (the
  admin API reads it from the store for every call). The audit row of the decision names both:
  the approver as its actor, the requester in `after`.
- Exactly once: approving claims the row (pending -> approving) with one conditional UPDATE; only
  the caller whose UPDATE changed it runs the executor. The row then becomes `approved` (with the
  result) or `failed` (with the error), in one transaction with its audit row. The run is shielded
  from the caller's cancellation (a client that hangs up), so it always reaches one of the two.
- Expiry: an action expires `ttl` seconds after it is proposed. An expired one cannot be approved
  or rejected (409 action_expired; touching it stores status `expired`); reads show it `expired`
  from that moment, without writing.
- Secrets: the stored result (what `get` and `list` show later) drops entries named "key" or
  "key_hash"; only the `approve` call itself returns the executor's result in full, once.

Statuses: pending, approving (while it runs), approved, rejected, expired, failed, cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
import sqlalchemy as sa

from turnout.domain.errors import (
    Conflict,
    InvalidRequest,
    PermissionDenied,
    ResourceNotFound,
    TurnoutError,
)
from turnout.domain.key_policy import may_manage
from turnout.domain.principal import Principal
from turnout.governance.audit import AuditLog, redact, team_scope
from turnout.governance.people import People
from turnout.storage.database import Database
from turnout.storage.paging import DEFAULT_LIMIT, Keyset, Page, Paging
from turnout.storage.tables import pending_actions
from turnout.storage.times import as_utc, from_unix, unix_seconds

log = logging.getLogger("turnout.governance")

Executor = Callable[[Principal, dict[str, Any]], Awaitable[dict[str, Any]]]
"""Performs an approved action: receives the requester's principal (as it is when the action is
approved, read from the store) and the params; returns a JSON-able result. Raises a TurnoutError to
fail it."""

STATUSES = ("pending", "approving", "approved", "rejected", "expired", "failed", "cancelled")
# How /admin/approvals is paged: newest first.
APPROVALS_ORDER = Keyset(pending_actions.c.requested_at, pending_actions.c.id, descending=True)


@dataclass(frozen=True, slots=True)
class _Registered:
    executor: Executor
    describe: str


def _error_result(error: Exception) -> dict[str, Any]:
    if isinstance(error, TurnoutError):
        return {"error": {"message": error.message, "type": error.error_type, "code": error.code}}
    return {"error": {"message": "internal error", "type": "server_error", "code": "internal_error"}}


class Approvals:
    def __init__(
        self, database: Database, audit: AuditLog, *, ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        if ttl <= 0:
            raise ValueError("an approval's ttl must be positive")
        self.database = database
        self.audit = audit
        self.people = People(database)
        self.ttl = ttl
        self.clock = clock
        self._actions: dict[str, _Registered] = {}
        self._running: set[asyncio.Task[Any]] = set()

    def register(self, action: str, executor: Executor, describe: str) -> None:
        """Make `action` proposable; `describe` is shown with its pending actions ("Delete a team")."""
        self._actions[action] = _Registered(executor, describe)

    # ------------------------------------------------------------------ reading

    def describe(self, row: Any) -> dict[str, Any]:
        """A pending action as the admin API shows it (one past its expiry shows `expired`)."""
        status = row.status
        if status == "pending" and self.clock() > as_utc(row.expires_at).timestamp():
            status = "expired"
        registered = self._actions.get(row.action)
        return {
            "id": row.id,
            "object": "pending_action",
            "action": row.action,
            "description": None if registered is None else registered.describe,
            "target_type": row.target_type,
            "target_id": row.target_id,
            "team_id": row.team_id,
            "params": orjson.loads(row.params)["params"],
            "requested_by": row.requested_by,
            "requested_by_user": row.requested_by_user,
            "requested_by_person": row.requested_by_person,
            "requested_at": unix_seconds(row.requested_at),
            "expires_at": unix_seconds(row.expires_at),
            "status": status,
            "decided_by": row.decided_by,
            "decided_by_person": row.decided_by_person,
            "decided_at": unix_seconds(row.decided_at),
            "result": None if row.result is None else orjson.loads(row.result),
        }

    async def _row(self, action_id: str) -> Any:
        async with self.database.engine.connect() as conn:
            query = sa.select(pending_actions).where(pending_actions.c.id == action_id)
            return (await conn.execute(query)).first()

    async def _visible(self, viewer: Principal, action_id: str) -> Any:
        scope = team_scope(viewer)
        row = await self._row(action_id)
        if row is None or (scope is not None and row.team_id != scope):
            raise ResourceNotFound(f"No pending action with id '{action_id}'.", param="id")  # hidden alike
        return row

    async def get(self, viewer: Principal, action_id: str) -> dict[str, Any]:
        return self.describe(await self._visible(viewer, action_id))

    # ------------------------------------------------------------------ proposing

    async def propose(
        self,
        requester: Principal,
        action: str,
        target_type: str,
        target_id: str,
        *,
        team_id: str | None,
        params: dict[str, Any],
        request_id: str | None,
    ) -> dict[str, Any]:
        """Store the action as pending until another admin approves or rejects it, or it expires."""
        if action not in self._actions:
            raise ValueError(f"no executor is registered for {action!r}")  # a bug, not a request
        if not requester.is_admin or not may_manage(requester, team_id):
            raise PermissionDenied("Only an owner or admin who may manage the target can propose this.")
        now = self.clock()
        action_id = "act_" + secrets.token_hex(8)
        stored = {"params": params, "requester": msgspec.to_builtins(requester)}
        async with self.database.engine.begin() as conn:
            await conn.execute(
                sa.insert(pending_actions).values(
                    id=action_id,
                    action=action,
                    target_type=target_type,
                    target_id=target_id,
                    team_id=team_id,
                    params=orjson.dumps(stored).decode(),
                    requested_by=requester.key_id,
                    requested_by_user=requester.user_id,
                    requested_by_person=requester.person,
                    requested_at=from_unix(now),
                    expires_at=from_unix(now + self.ttl),
                    status="pending",
                )
            )
            row = (
                await conn.execute(sa.select(pending_actions).where(pending_actions.c.id == action_id))
            ).one()
            described = self.describe(row)
            await self.audit.record(
                conn,
                requester,
                "approval.requested",
                "pending_action",
                action_id,
                team_id=team_id,
                after=described,
                request_id=request_id,
            )
        return described

    # ------------------------------------------------------------------ deciding

    async def _open(self, decider: Principal, action_id: str) -> Any:
        """The pending action `decider` may decide, or the error saying why not."""
        if not decider.is_admin:
            raise PermissionDenied("Only owners and admins may approve or reject pending actions.")
        row = await self._visible(decider, action_id)
        if not may_manage(decider, row.team_id):
            raise ResourceNotFound(f"No pending action with id '{action_id}'.", param="id")
        return row

    async def _refuse(self, row: Any) -> None:
        """Raise why `row` cannot be decided now (marking it expired if its time is up)."""
        status = row.status
        if status == "pending" and self.clock() > as_utc(row.expires_at).timestamp():
            async with self.database.engine.begin() as conn:
                await conn.execute(
                    sa.update(pending_actions)
                    .where(pending_actions.c.id == row.id, pending_actions.c.status == "pending")
                    .values(status="expired")
                )
            status = "expired"
        if status == "expired":
            raise Conflict(
                f"Pending action '{row.id}' expired at {as_utc(row.expires_at).isoformat()}; "
                "propose it again.",
                code="action_expired",
            )
        if status != "pending":
            raise Conflict(f"Pending action '{row.id}' has already been decided (it is {status}).")

    async def approve(
        self, approver: Principal, action_id: str, request_id: str | None = None
    ) -> dict[str, Any]:
        """Run the action with its requester's current authority; its description with the full
        result. The executor's TurnoutError is re-raised after the action is stored as failed."""
        row = await self._open(approver, action_id)
        stored = orjson.loads(row.params)
        proposed_by = msgspec.convert(stored["requester"], Principal)
        if await self.people.one_person(approver, proposed_by):
            raise PermissionDenied(
                "An action cannot be approved by the person who proposed it, nor with a key they issued "
                "or could use; another person must approve it.",
                code="self_approval",
            )
        await self._refuse(row)
        registered = self._actions.get(row.action)
        if registered is None:
            raise InvalidRequest(
                f"This gateway cannot perform '{row.action}' (no executor for it); the action stays pending.",
                code="unknown_action",
            )
        requester = await self.people.now(row.requested_by)
        if requester is None or not requester.is_admin or not may_manage(requester, row.team_id):
            await self._cancel(approver, row, request_id)
        now = self.clock()
        claim = (
            sa.update(pending_actions)
            .where(
                pending_actions.c.id == action_id,
                pending_actions.c.status == "pending",
                pending_actions.c.expires_at >= from_unix(now),
            )
            .values(
                status="approving",
                decided_by=approver.key_id,
                decided_by_person=approver.person,
                decided_at=from_unix(now),
            )
        )
        async with self.database.engine.begin() as conn:
            claimed = (await conn.execute(claim)).rowcount == 1
        if not claimed:  # another approver (or rejecter) was first, or it has just expired
            await self._refuse(await self._row(action_id))
            raise Conflict(f"Pending action '{action_id}' has already been decided.")
        assert requester is not None
        task = asyncio.ensure_future(self._run(registered.executor, approver, requester, row, request_id))
        self._running.add(task)
        task.add_done_callback(self._settled)
        result, error = await asyncio.shield(task)
        if error is not None:
            raise error
        return {**await self.get(approver, action_id), "result": result}

    async def _cancel(self, decider: Principal, row: Any, request_id: str | None) -> None:
        """The requester can no longer do what they proposed: it never runs. Raises why."""
        error = Conflict(
            f"Pending action '{row.id}' cannot run: the key that proposed it has been revoked, or its "
            "person can no longer do this (demoted, deleted or out of the team). It is cancelled; "
            "propose it again if it is still wanted.",
            code="proposer_lacks_authority",
        )
        now = self.clock()
        async with self.database.engine.begin() as conn:
            cancelled = (
                await conn.execute(
                    sa.update(pending_actions)
                    .where(pending_actions.c.id == row.id, pending_actions.c.status == "pending")
                    .values(
                        status="cancelled",
                        decided_by=decider.key_id,
                        decided_by_person=decider.person,
                        decided_at=from_unix(now),
                        result=orjson.dumps(_error_result(error)).decode(),
                    )
                )
            ).rowcount == 1
            if cancelled:
                await self.audit.record(
                    conn,
                    decider,
                    "approval.cancelled",
                    "pending_action",
                    row.id,
                    team_id=row.team_id,
                    before={"status": "pending"},
                    after={
                        "status": "cancelled",
                        "action": row.action,
                        "target_type": row.target_type,
                        "target_id": row.target_id,
                        "requested_by": row.requested_by,
                        "requested_by_person": row.requested_by_person,
                    },
                    request_id=request_id,
                )
        if not cancelled:
            await self._refuse(await self._row(row.id))
        raise error

    def _settled(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("recording the outcome of an approved action failed: %s", task.exception())

    async def _run(
        self, executor: Executor, approver: Principal, requester: Principal, row: Any, request_id: str | None
    ) -> tuple[dict[str, Any] | None, Exception | None]:
        """Execute a claimed action with `requester`'s current authority and store how it went
        (with its audit row)."""
        stored = orjson.loads(row.params)
        outcome: dict[str, Any]
        error: Exception | None = None
        result: dict[str, Any] | None = None
        try:
            result = await executor(requester, stored["params"])
            outcome = redact(result)
            text = orjson.dumps(outcome).decode()
            status = "approved"
        except Exception as failure:
            if not isinstance(failure, TurnoutError):
                log.exception("the executor of %s (%s) failed", row.id, row.action)
            error, result = failure, None
            outcome = _error_result(failure)
            text = orjson.dumps(outcome).decode()
            status = "failed"
        async with self.database.engine.begin() as conn:
            await conn.execute(
                sa.update(pending_actions)
                .where(pending_actions.c.id == row.id, pending_actions.c.status == "approving")
                .values(status=status, result=text)
            )
            await self.audit.record(
                conn,
                approver,
                f"approval.{status}",
                "pending_action",
                row.id,
                team_id=row.team_id,
                before={"status": "pending"},
                after={
                    "status": status,
                    "action": row.action,
                    "target_type": row.target_type,
                    "target_id": row.target_id,
                    "requested_by": row.requested_by,
                    "requested_by_name": requester.name,
                    "requested_by_user": row.requested_by_user,
                    "requested_by_person": row.requested_by_person,
                    "result": outcome,
                },
                request_id=request_id,
            )
        return result, error

    async def reject(
        self, approver: Principal, action_id: str, request_id: str | None = None
    ) -> dict[str, Any]:
        """Decide against the action (its requester may withdraw it so)."""
        row = await self._open(approver, action_id)
        await self._refuse(row)
        now = self.clock()
        async with self.database.engine.begin() as conn:
            rejected = (
                await conn.execute(
                    sa.update(pending_actions)
                    .where(
                        pending_actions.c.id == action_id,
                        pending_actions.c.status == "pending",
                        pending_actions.c.expires_at >= from_unix(now),
                    )
                    .values(
                        status="rejected",
                        decided_by=approver.key_id,
                        decided_by_person=approver.person,
                        decided_at=from_unix(now),
                    )
                )
            ).rowcount == 1
            if rejected:
                await self.audit.record(
                    conn,
                    approver,
                    "approval.rejected",
                    "pending_action",
                    action_id,
                    team_id=row.team_id,
                    before={"status": "pending"},
                    after={
                        "status": "rejected",
                        "action": row.action,
                        "target_type": row.target_type,
                        "target_id": row.target_id,
                        "requested_by": row.requested_by,
                        "requested_by_user": row.requested_by_user,
                    },
                    request_id=request_id,
                )
        if not rejected:
            await self._refuse(await self._row(action_id))
            raise Conflict(f"Pending action '{action_id}' has already been decided.")
        return await self.get(approver, action_id)

    # ------------------------------------------------------------------ listing

    async def page(
        self,
        viewer: Principal,
        status: str | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
    ) -> tuple[list[dict[str, Any]], Page]:
        """A page of the actions `viewer` may see, newest first, optionally of one status: at most
        `limit`, after the cursor `after` (the page before's `next_cursor`)."""
        scope = team_scope(viewer)
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"'status' must be one of {', '.join(STATUSES)}.", param="status")
        paging = Paging(limit, after)
        now = from_unix(self.clock())
        table = pending_actions.c
        where: list[sa.ColumnElement[bool]] = []
        if scope is not None:
            where.append(table.team_id == scope)
        if status == "pending":
            where += [table.status == "pending", table.expires_at >= now]
        elif status == "expired":
            where.append(
                sa.or_(table.status == "expired", sa.and_(table.status == "pending", table.expires_at < now))
            )
        elif status is not None:
            where.append(table.status == status)
        query = APPROVALS_ORDER.select(sa.select(pending_actions).where(*where), paging)
        async with self.database.engine.connect() as conn:
            page = APPROVALS_ORDER.page((await conn.execute(query)).all(), paging)
        return [self.describe(row) for row in page.rows], page
