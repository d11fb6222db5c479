"""The audit log: one row per admin action (who, what, when, the object before and after),
written inside the transaction of the change it describes, so the two commit or roll back
together. Each row names the key that acted and the person behind it (`actor_person`: a user's
id, or "master" for the master key, break-glass). Append-only: the database itself refuses UPDATE
and DELETE on the table (triggers created with it, migration 0005).

Secrets never reach it: every mapping entry named "key" (a plaintext API key) or "key_hash", at
any depth of `before` and `after`, is dropped before the row is written.

Reading it is for owners and admins. An organisation-wide one (the master key, an owner, an admin
of no team) reads every row; an admin of a team reads that team's rows only (not the
organisation-wide ones, whose team_id is NULL).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.domain.errors import PermissionDenied
from turnout.domain.key_policy import organisation_reader, reads_as_admin
from turnout.domain.principal import Principal
from turnout.storage.database import Database
from turnout.storage.paging import DEFAULT_LIMIT, Keyset, Page, Paging
from turnout.storage.tables import audit_log
from turnout.storage.times import as_utc, unix_seconds

SECRET_FIELDS = frozenset({"key", "key_hash"})
AUDIT_ORDER = Keyset(audit_log.c.id, descending=True)  # how /admin/audit is paged: newest first


def redact(value: Any) -> Any:
    """`value` without any mapping entry named in SECRET_FIELDS, at any depth."""
    if isinstance(value, Mapping):
        return {k: redact(v) for k, v in value.items() if k not in SECRET_FIELDS}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def team_scope(viewer: Principal) -> str | None:
    """The one team whose governance records `viewer` may read, or None for every record (an
    organisation-wide owner, admin or viewer). PermissionDenied for anyone who is not one of those."""
    if not reads_as_admin(viewer):
        raise PermissionDenied("Only owners, admins and viewers may read the audit log and pending actions.")
    return None if organisation_reader(viewer) else viewer.team_id


def _decoded(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def event(row: Any) -> dict[str, Any]:
    """An audit row as the admin API shows it."""
    return {
        "id": row.id,
        "object": "audit_event",
        "at": unix_seconds(row.at),
        "actor": row.actor,
        "actor_key_id": row.actor_key_id,
        "actor_person": row.actor_person,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "team_id": row.team_id,
        "before": _decoded(row.before),
        "after": _decoded(row.after),
        "request_id": row.request_id,
    }


class AuditLog:
    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.clock = clock

    async def record(
        self,
        conn: AsyncConnection,
        actor: Principal,
        action: str,
        target_type: str,
        target_id: str | None,
        *,
        team_id: str | None = None,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        """Add a row in the caller's transaction (`conn` from `database.engine.begin()`): it is kept
        only if the change it describes is. Entries named "key" or "key_hash" are dropped."""
        await conn.execute(
            sa.insert(audit_log).values(
                at=datetime.fromtimestamp(self.clock(), UTC),
                actor_key_id=actor.key_id,
                actor=actor.name[:200],
                actor_person=actor.person,
                action=action,
                target_type=target_type,
                target_id=target_id,
                team_id=team_id,
                before=None if before is None else orjson.dumps(redact(before)).decode(),
                after=None if after is None else orjson.dumps(redact(after)).decode(),
                request_id=request_id,
            )
        )

    async def page(
        self,
        viewer: Principal,
        *,
        action: str | None = None,
        actor_key_id: str | None = None,
        actor_person: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        team_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = DEFAULT_LIMIT,
        before_id: int | None = None,
        after: str | None = None,
    ) -> tuple[list[dict[str, Any]], Page]:
        """A page of the rows `viewer` may read that match every filter given, newest first: at
        most `limit` (1 to 1000) after the cursor `after` (the page before's `next_cursor`), or
        with ids below `before_id` (the page before's last id). `action` ending in "*" is a prefix
        ("key.*"); `since` is inclusive, `until` exclusive."""
        scope = team_scope(viewer)
        paging = Paging(limit, after)
        where: list[sa.ColumnElement[bool]] = []
        if scope is not None:
            where.append(audit_log.c.team_id == scope)
        if action is not None:
            if action.endswith("*"):
                where.append(audit_log.c.action.startswith(action[:-1], autoescape=True))
            else:
                where.append(audit_log.c.action == action)
        for column, value in (
            (audit_log.c.actor_key_id, actor_key_id),
            (audit_log.c.actor_person, actor_person),
            (audit_log.c.target_type, target_type),
            (audit_log.c.target_id, target_id),
            (audit_log.c.team_id, team_id),
        ):
            if value is not None:
                where.append(column == value)
        if since is not None:
            where.append(audit_log.c.at >= as_utc(since))
        if until is not None:
            where.append(audit_log.c.at < as_utc(until))
        if before_id is not None:
            where.append(audit_log.c.id < before_id)
        query = AUDIT_ORDER.select(sa.select(audit_log).where(*where), paging)
        async with self.database.engine.connect() as conn:
            page = AUDIT_ORDER.page((await conn.execute(query)).all(), paging)
        return [event(row) for row in page.rows], page
