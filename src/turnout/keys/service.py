"""Virtual keys: issued, listed, revoked and rotated through the admin API (and the CLI over it).

A key is shown in full once, when it is issued; the database keeps only its keyed hash and a
display prefix. Every change is written to the database and applied to this instance's in-memory
index at once, so a revoked key stops working here before the call that revoked it returns; every
write sets the row's `updated_at`, by which the other instances follow it (`keys.sync`).
Issuing follows `domain.key_policy`: never more than the issuer has, and for a user never a role
above theirs (in the key's team, or organisation-wide). Every change is in the audit log, written
in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, cast

import msgspec
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.domain.errors import InvalidRequest, PermissionDenied, ResourceNotFound
from turnout.domain.key_policy import KeySpec, check_issue, may_manage, outranks
from turnout.domain.principal import Principal, Role
from turnout.governance.audit import AuditLog
from turnout.keys.hashing import display_prefix, new_key
from turnout.keys.index import KeyIndex
from turnout.storage.database import Database
from turnout.storage.tables import api_keys, team_members, teams, users
from turnout.storage.times import from_unix, unix_seconds


def principal_of(row: Any) -> Principal:
    """The identity a stored virtual key resolves to."""
    models = orjson.loads(row.allowed_models) if row.allowed_models else None
    return Principal(
        key_id=row.id,
        name=row.name,
        role=row.role,
        allowed_models=tuple(models) if models is not None else None,
        team_id=row.team_id,
        user_id=row.user_id,
        expires_at=unix_seconds(row.expires_at),
        max_budget_micros=row.max_budget_micros,
    )


def describe(row: Any) -> dict[str, Any]:
    """A key as the admin API shows it: everything but the key itself (its prefix only)."""
    return {
        "id": row.id,
        "object": "key",
        "name": row.name,
        "prefix": row.prefix,
        "role": row.role,
        "team_id": row.team_id,
        "user_id": row.user_id,
        "models": orjson.loads(row.allowed_models) if row.allowed_models else None,
        "expires_at": unix_seconds(row.expires_at),
        "max_budget_micros": row.max_budget_micros,
        "limits": orjson.loads(row.limits) if row.limits else None,
        "metadata": orjson.loads(row.metadata) if row.metadata else {},
        "created_at": unix_seconds(row.created_at),
        "created_by": row.created_by,
        "revoked_at": unix_seconds(row.revoked_at),
        "rotated_to": row.rotated_to,
    }


async def check_owner(conn: AsyncConnection, spec: KeySpec) -> None:
    """The key's team and user exist, and the user holds at least the key's role there."""
    if spec.team_id is not None:
        team = await conn.execute(
            sa.select(teams.c.id).where(teams.c.id == spec.team_id, teams.c.deleted_at.is_(None))
        )
        if team.first() is None:
            raise InvalidRequest(f"No team with id '{spec.team_id}'.", param="team_id")
    if spec.user_id is None:
        return
    user = (
        await conn.execute(
            sa.select(users.c.role).where(users.c.id == spec.user_id, users.c.deleted_at.is_(None))
        )
    ).first()
    if user is None:
        raise InvalidRequest(f"No user with id '{spec.user_id}'.", param="user_id")
    held: str | None = user.role
    where = "organisation-wide"
    if spec.team_id is not None:
        held = (
            await conn.execute(
                sa.select(team_members.c.role).where(
                    team_members.c.team_id == spec.team_id, team_members.c.user_id == spec.user_id
                )
            )
        ).scalar()
        where = f"in the team '{spec.team_id}'"
        if held is None:
            raise PermissionDenied(
                f"The user '{spec.user_id}' is not a member of the team '{spec.team_id}'.", param="user_id"
            )
    if held is None or outranks(spec.role, cast("Role", held)):
        raise PermissionDenied(
            f"The user '{spec.user_id}' is '{held or 'no role'}' {where}: a key for them cannot have "
            f"the role '{spec.role}'.",
            param="role",
        )


class KeyService:
    def __init__(self, database: Database, index: KeyIndex, audit: AuditLog) -> None:
        self.database = database
        self.index = index
        self.audit = audit

    async def issue(
        self,
        issuer: Principal,
        spec: KeySpec,
        *,
        limits: dict[str, int] | None = None,
        metadata: dict[str, Any] | None = None,
        request_id: str | None = None,
        action: str = "key.create",
    ) -> tuple[str, dict[str, Any]]:
        """A new key (its plaintext, shown this once) and its description."""
        spec = check_issue(issuer, spec)
        key = new_key()
        key_hash = self.index.hash(key)
        key_id = "key_" + secrets.token_hex(8)
        now = dt.datetime.now(dt.UTC)
        row = {
            "id": key_id,
            "key_hash": key_hash,
            "prefix": display_prefix(key),
            "name": spec.name,
            "kind": "virtual",
            "role": spec.role,
            "created_at": now,
            "updated_at": now,
            "team_id": spec.team_id,
            "user_id": spec.user_id,
            "allowed_models": None
            if spec.allowed_models is None
            else orjson.dumps(list(spec.allowed_models)).decode(),
            "expires_at": from_unix(spec.expires_at),
            "max_budget_micros": spec.max_budget_micros,
            "limits": orjson.dumps(limits).decode() if limits else None,
            "metadata": orjson.dumps(metadata).decode() if metadata else None,
            "created_by": issuer.key_id,
        }
        async with self.database.engine.begin() as conn:
            await check_owner(conn, spec)
            await conn.execute(sa.insert(api_keys).values(**row))
            stored = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
            described = describe(stored)
            await self.audit.record(
                conn,
                issuer,
                action,
                "key",
                key_id,
                team_id=spec.team_id,
                after=described,
                request_id=request_id,
            )
        self.index.add(key_hash, principal_of(stored))
        return key, described

    async def find(self, key_hash: bytes) -> Principal | None:
        """The active virtual key with this hash, if the store has one (the index's lookup)."""
        query = sa.select(api_keys).where(
            api_keys.c.key_hash == key_hash, api_keys.c.kind == "virtual", api_keys.c.revoked_at.is_(None)
        )
        async with self.database.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else principal_of(row)

    async def _managed(self, issuer: Principal, key_id: str) -> Any:
        async with self.database.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(api_keys).where(api_keys.c.id == key_id, api_keys.c.kind == "virtual")
                )
            ).first()
        if row is None or not may_manage(issuer, row.team_id):
            raise ResourceNotFound(f"No key with id '{key_id}'.", param="id")  # the same for hidden ones
        return row

    async def list(self, issuer: Principal) -> list[dict[str, Any]]:
        query = sa.select(api_keys).where(api_keys.c.kind == "virtual").order_by(api_keys.c.created_at)
        async with self.database.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [describe(r) for r in rows if may_manage(issuer, r.team_id)]

    async def revoke(self, issuer: Principal, key_id: str, request_id: str | None = None) -> dict[str, Any]:
        row = await self._managed(issuer, key_id)
        if row.revoked_at is None:
            self.index.touch(row.key_hash)
            now = dt.datetime.now(dt.UTC)
            async with self.database.engine.begin() as conn:
                await conn.execute(
                    sa.update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=now, updated_at=now)
                )
                after = describe(
                    (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
                )
                await self.audit.record(
                    conn,
                    issuer,
                    "key.revoke",
                    "key",
                    key_id,
                    team_id=row.team_id,
                    before=describe(row),
                    after=after,
                    request_id=request_id,
                )
        self.index.remove(row.key_hash)  # here, now: before this call returns
        return await self.get(issuer, key_id)

    async def revoke_matching(
        self, conn: AsyncConnection, *, team_id: str | None = None, user_id: str | None = None
    ) -> dict[str, bytes]:
        """Revoke (in the caller's transaction) every active key of a team or a user, or of a user
        in a team; their ids and hashes (`forget` them once the transaction commits)."""
        where = [api_keys.c.kind == "virtual", api_keys.c.revoked_at.is_(None)]
        if team_id is not None:
            where.append(api_keys.c.team_id == team_id)
        if user_id is not None:
            where.append(api_keys.c.user_id == user_id)
        if len(where) == 2:
            raise ValueError("revoke_matching needs a team or a user")
        rows = (await conn.execute(sa.select(api_keys.c.id, api_keys.c.key_hash).where(*where))).all()
        if rows:
            for r in rows:
                self.index.touch(r.key_hash)
            now = dt.datetime.now(dt.UTC)
            await conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id.in_([r.id for r in rows]))
                .values(revoked_at=now, updated_at=now)
            )
        return {r.id: r.key_hash for r in rows}

    def forget(self, revoked: Mapping[str, bytes]) -> None:
        for key_hash in revoked.values():
            self.index.remove(key_hash)

    async def restrict_user_keys(
        self, conn: AsyncConnection, user_id: str, team_id: str | None, role: Role | None
    ) -> tuple[str, ...]:
        """After a user's role changed (in `team_id`, or organisation-wide): their keys there lose
        what the user lost — revoked if the user left the team, else lowered to `role`. The ids of
        the keys changed (`refresh` them once the transaction commits)."""
        where = [
            api_keys.c.kind == "virtual",
            api_keys.c.revoked_at.is_(None),
            api_keys.c.user_id == user_id,
            api_keys.c.team_id.is_(None) if team_id is None else api_keys.c.team_id == team_id,
        ]
        query = sa.select(api_keys.c.id, api_keys.c.key_hash, api_keys.c.role).where(*where)
        rows = (await conn.execute(query)).all()
        now = dt.datetime.now(dt.UTC)
        if role is None:
            changed = tuple(r.id for r in rows)
            values: dict[str, Any] = {"revoked_at": now, "updated_at": now}
        else:
            changed = tuple(r.id for r in rows if outranks(r.role, role))
            values = {"role": role, "updated_at": now}
        for r in rows:
            if r.id in changed:
                self.index.touch(r.key_hash)
        if changed:
            await conn.execute(sa.update(api_keys).where(api_keys.c.id.in_(changed)).values(**values))
        return changed

    async def refresh(self, key_ids: Iterable[str]) -> None:
        """Bring this instance's index up to date with these keys' stored state."""
        ids = list(key_ids)
        if not ids:
            return
        async with self.database.engine.connect() as conn:
            rows = (await conn.execute(sa.select(api_keys).where(api_keys.c.id.in_(ids)))).all()
        for row in rows:
            self._apply(row)

    def _apply(self, row: Any) -> None:
        """Put a virtual key's stored state, read after this instance changed it, in the index."""
        if row.revoked_at is not None:
            self.index.remove(row.key_hash)
        else:
            self.index.add(row.key_hash, principal_of(row))

    async def get(self, issuer: Principal, key_id: str) -> dict[str, Any]:
        return describe(await self._managed(issuer, key_id))

    async def update(
        self,
        issuer: Principal,
        key_id: str,
        changes: dict[str, Any],
        limits: Any,
        metadata: Any,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Change a key's name, role, models, expiry or budget (`changes`, KeySpec's field names),
        limits or metadata (msgspec.UNSET: unchanged). The key as changed must be one `issuer`
        could issue, and one its user may hold: the same rules as a new key's."""
        row = await self._managed(issuer, key_id)
        if row.revoked_at is not None:
            raise InvalidRequest("A revoked key cannot be changed.", param="id")
        current = principal_of(row)
        spec = KeySpec(
            name=changes.get("name", row.name),
            role=changes.get("role", current.role),
            team_id=row.team_id,
            user_id=row.user_id,
            allowed_models=changes.get("allowed_models", current.allowed_models),
            expires_at=changes.get("expires_at", current.expires_at),
            max_budget_micros=changes.get("max_budget_micros", row.max_budget_micros),
        )
        spec = check_issue(issuer, spec)
        values: dict[str, Any] = {
            "name": spec.name,
            "role": spec.role,
            "allowed_models": None
            if spec.allowed_models is None
            else orjson.dumps(list(spec.allowed_models)).decode(),
            "expires_at": from_unix(spec.expires_at),
            "max_budget_micros": spec.max_budget_micros,
            "updated_at": dt.datetime.now(dt.UTC),
        }
        if limits is not msgspec.UNSET:
            values["limits"] = orjson.dumps(limits).decode() if limits else None
        if metadata is not msgspec.UNSET:
            values["metadata"] = orjson.dumps(metadata).decode() if metadata else None
        self.index.touch(row.key_hash)  # a read in flight now must not undo this change
        async with self.database.engine.begin() as conn:
            await check_owner(conn, spec)
            await conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(**values))
            stored = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
            described = describe(stored)
            await self.audit.record(
                conn,
                issuer,
                "key.update",
                "key",
                key_id,
                team_id=row.team_id,
                before=describe(row),
                after=described,
                request_id=request_id,
            )
        self._apply(stored)
        return described

    async def rotate(
        self, issuer: Principal, key_id: str, grace: float, request_id: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A new key with the old one's attributes; the old one keeps working for `grace` seconds."""
        old = await self._managed(issuer, key_id)
        if old.revoked_at is not None:
            raise InvalidRequest("A revoked key cannot be rotated.", param="id")
        if grace < 0:
            raise InvalidRequest("'grace' cannot be negative.", param="grace")
        now = dt.datetime.now(dt.UTC)
        current = principal_of(old)  # its spec, with which the new key is issued
        spec = KeySpec(
            name=old.name,
            role=current.role,
            team_id=old.team_id,
            user_id=old.user_id,
            allowed_models=current.allowed_models,
            expires_at=current.expires_at,
            max_budget_micros=old.max_budget_micros,
        )
        key, new = await self.issue(
            issuer,
            spec,
            limits=orjson.loads(old.limits) if old.limits else None,
            metadata=orjson.loads(old.metadata) if old.metadata else None,
            request_id=request_id,
            action="key.rotate",
        )
        until = now.timestamp() + grace
        if current.expires_at is not None:
            until = min(until, current.expires_at)
        self.index.touch(old.key_hash)
        async with self.database.engine.begin() as conn:
            await conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id == key_id)
                .values(expires_at=from_unix(until), rotated_to=new["id"], updated_at=dt.datetime.now(dt.UTC))
            )
            rotated_out = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
            after = describe(rotated_out)
            await self.audit.record(
                conn,
                issuer,
                "key.rotate_out",
                "key",
                key_id,
                team_id=old.team_id,
                before=describe(old),
                after=after,
                request_id=request_id,
            )
        self._apply(rotated_out)
        return key, new
