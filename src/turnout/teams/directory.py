"""Teams, users and their memberships, managed through the admin API.

A user has an organisation-wide role and, in each team they belong to, a team role (owner,
admin, member, viewer). Keys are issued to a user within a team, or organisation-wide, and never
with a role above the user's there (see KeyService.issue). Team admins manage only their team;
what they may not see answers 404, as if it did not exist.

Taking rights away reaches the keys at once: every key the person could use (theirs, and every
key they issued, directly or through keys they issued) holds no more than they may now give —
lowering a role lowers those keys' roles; deleting a user revokes them; removing a member revokes
their own keys in that team; deleting a team revokes its keys. Actions under the two-person rule
(deleting a team, revoking all of a team's keys, changing an admin's role) are proposed, and run
when a second admin approves (governance.approvals); every change is in the audit log, in the
same transaction as the change itself.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from typing import Any, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.domain.errors import InvalidRequest, PermissionDenied, ResourceNotFound
from turnout.domain.key_policy import (
    ADMIN_ROLES,
    ROLE_RANK,
    check_grant,
    in_team,
    may_manage,
    may_read,
    reads_as_admin,
    require_organisation_admin,
)
from turnout.domain.principal import Principal, Role
from turnout.governance.approvals import Approvals
from turnout.governance.audit import AuditLog
from turnout.keys.service import KeyService
from turnout.storage.database import Database
from turnout.storage.paging import FIRST, Keyset, Page, Paging
from turnout.storage.tables import team_members, teams, users
from turnout.storage.times import unix_seconds
from turnout.teams.limits import shown_limits, team_limits

# How /admin/teams and /admin/users are paged: oldest first.
TEAMS_ORDER = Keyset(teams.c.created_at, teams.c.id)
USERS_ORDER = Keyset(users.c.created_at, users.c.id)


def describe_team(row: Any, members: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = {
        "id": row.id,
        "object": "team",
        "name": row.name,
        "metadata": orjson.loads(row.metadata) if row.metadata else {},
        "created_at": unix_seconds(row.created_at),
        "created_by": row.created_by,
        "deleted_at": unix_seconds(row.deleted_at),
        **team_limits(row),
    }
    if members is not None:
        out["members"] = members
    return out


def describe_user(row: Any, teams_of: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = {
        "id": row.id,
        "object": "user",
        "email": row.email,
        "name": row.name,
        "role": row.role,
        "created_at": unix_seconds(row.created_at),
        "created_by": row.created_by,
        "deleted_at": unix_seconds(row.deleted_at),
        "limits": shown_limits(row.limits),
    }
    if teams_of is not None:
        out["teams"] = teams_of
    return out


def _is_admin_role(role: str | None) -> bool:
    return role in ADMIN_ROLES


def _check_may_delete_team(actor: Principal) -> None:
    if actor.team_id is not None and actor.role != "owner":
        raise PermissionDenied("Only the team's owners and organisation admins may delete a team.")


def _check_may_grant(actor: Principal, role: Role | None, team_id: str | None) -> None:
    """May `actor` give `role` in `team_id` (None: take them out of the team)?"""
    if role is not None:
        check_grant(actor, role, team_id)
    elif not may_manage(actor, team_id):
        raise PermissionDenied("A team admin may manage their own team only.", param="team_id")


def _check_may_change(actor: Principal, current: Role | None) -> None:
    """Nobody changes the role of someone above them."""
    if current is not None and actor.kind != "master" and ROLE_RANK[current] > ROLE_RANK[actor.role]:
        raise PermissionDenied(f"A key with role '{actor.role}' cannot change the role of an '{current}'.")


class Directory:
    def __init__(
        self,
        database: Database,
        keys: KeyService,
        audit: AuditLog,
        approvals: Approvals,
        *,
        gated: frozenset[str],
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.database = database
        self.keys = keys
        self.audit = audit
        self.approvals = approvals
        self.gated = gated
        self.clock = clock
        approvals.register("delete_team", self._delete_team, "delete a team and revoke its keys")
        approvals.register("revoke_team_keys", self._revoke_team_keys, "revoke every key of a team")
        approvals.register("change_admin_role", self._change_role, "give or take an admin's role")

    async def _needs_approval(self, actor: Principal, action: str, team_id: str | None) -> bool:
        """Is `action` under the two-person rule, and is there another person who could approve it?
        Until one exists (a fresh installation, whose only admin is the master key), there is no
        one to ask, and the action runs at once."""
        if action not in self.gated:
            return False
        return await self.keys.people.another_could_approve(actor, team_id, self.clock())

    # ------------------------------------------------------------------ teams

    async def _team(self, conn: AsyncConnection, viewer: Principal, team_id: str, *, manage: bool) -> Any:
        """The team, if `viewer` may see it (404 if not, as if it did not exist); 403 when they
        may see it but `manage` it they may not."""
        row = (await conn.execute(sa.select(teams).where(teams.c.id == team_id))).first()
        if row is None or row.deleted_at is not None or not may_read(viewer, team_id):
            raise ResourceNotFound(f"No team with id '{team_id}'.", param="team_id")
        if manage and not may_manage(viewer, team_id):
            raise PermissionDenied("Only the team's owners and admins may change it.")
        return row

    async def create_team(
        self, actor: Principal, name: str, metadata: dict[str, Any] | None, request_id: str | None
    ) -> dict[str, Any]:
        require_organisation_admin(actor, "create teams")
        row = {
            "id": "team_" + secrets.token_hex(8),
            "name": name,
            "metadata": orjson.dumps(metadata).decode() if metadata else None,
            "created_at": self.clock(),
            "created_by": actor.key_id,
        }
        async with self.database.engine.begin() as conn:
            taken = await conn.execute(
                sa.select(teams.c.id).where(teams.c.name == name, teams.c.deleted_at.is_(None))
            )
            if taken.first() is not None:
                raise InvalidRequest(f"A team named '{name}' already exists.", param="name")
            await conn.execute(sa.insert(teams).values(**row))
            stored = (await conn.execute(sa.select(teams).where(teams.c.id == row["id"]))).one()
            team = describe_team(stored)
            await self.audit.record(
                conn,
                actor,
                "team.create",
                "team",
                team["id"],
                team_id=team["id"],
                after=team,
                request_id=request_id,
            )
        return team

    async def list_teams(
        self, viewer: Principal, paging: Paging = FIRST
    ) -> tuple[list[dict[str, Any]], Page]:
        """A page of the teams `viewer` may read, oldest first (the query keeps to the viewer's
        team; `may_read` decides)."""
        query = sa.select(teams).where(teams.c.deleted_at.is_(None))
        if not may_read(viewer, None):  # not the whole organisation's reader: one team at most
            query = query.where(teams.c.id == viewer.team_id if viewer.team_id is not None else sa.false())
        async with self.database.engine.connect() as conn:
            page = TEAMS_ORDER.page((await conn.execute(TEAMS_ORDER.select(query, paging))).all(), paging)
        return [describe_team(r) for r in page.rows if may_read(viewer, r.id)], page

    async def get_team(self, viewer: Principal, team_id: str) -> dict[str, Any]:
        async with self.database.engine.connect() as conn:
            row = await self._team(conn, viewer, team_id, manage=False)
            members = await self._members(conn, team_id)
        return describe_team(row, members)

    async def _members(self, conn: AsyncConnection, team_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(team_members.c.user_id, team_members.c.role, team_members.c.added_at, users.c.email)
            .join(users, users.c.id == team_members.c.user_id)
            .where(team_members.c.team_id == team_id)
            .order_by(team_members.c.added_at)
        )
        return [
            {"user_id": r.user_id, "email": r.email, "role": r.role, "added_at": unix_seconds(r.added_at)}
            for r in await conn.execute(query)
        ]

    async def delete_team(self, actor: Principal, team_id: str, request_id: str | None) -> dict[str, Any]:
        """Deletes the team and revokes its keys; under the two-person rule, proposes it."""
        async with self.database.engine.connect() as conn:
            await self._team(conn, actor, team_id, manage=True)
        _check_may_delete_team(actor)
        params = {"team_id": team_id}
        if await self._needs_approval(actor, "delete_team", team_id):
            return await self.approvals.propose(
                actor, "delete_team", "team", team_id, team_id=team_id, params=params, request_id=request_id
            )
        return await self._delete_team(actor, params, request_id)

    async def _delete_team(
        self, actor: Principal, params: dict[str, Any], request_id: str | None = None
    ) -> dict[str, Any]:
        team_id = str(params["team_id"])
        _check_may_delete_team(actor)  # an approved deletion: its proposer's authority as it is now
        async with self.database.engine.begin() as conn:
            row = await self._team(conn, actor, team_id, manage=True)
            before = describe_team(row, await self._members(conn, team_id))
            await conn.execute(sa.update(teams).where(teams.c.id == team_id).values(deleted_at=self.clock()))
            revoked = await self.keys.revoke_matching(conn, team_id=team_id)
            after = describe_team((await conn.execute(sa.select(teams).where(teams.c.id == team_id))).one())
            await self.audit.record(
                conn,
                actor,
                "team.delete",
                "team",
                team_id,
                team_id=team_id,
                before=before,
                after={**after, "revoked_keys": list(revoked)},
                request_id=request_id,
            )
        self.keys.forget(revoked)
        return {**after, "revoked_keys": list(revoked)}

    async def revoke_team_keys(
        self, actor: Principal, team_id: str, request_id: str | None
    ) -> dict[str, Any]:
        async with self.database.engine.connect() as conn:
            await self._team(conn, actor, team_id, manage=True)
        params = {"team_id": team_id}
        if await self._needs_approval(actor, "revoke_team_keys", team_id):
            return await self.approvals.propose(
                actor,
                "revoke_team_keys",
                "team",
                team_id,
                team_id=team_id,
                params=params,
                request_id=request_id,
            )
        return await self._revoke_team_keys(actor, params, request_id)

    async def _revoke_team_keys(
        self, actor: Principal, params: dict[str, Any], request_id: str | None = None
    ) -> dict[str, Any]:
        team_id = str(params["team_id"])
        async with self.database.engine.begin() as conn:
            await self._team(conn, actor, team_id, manage=True)
            revoked = await self.keys.revoke_matching(conn, team_id=team_id)
            await self.audit.record(
                conn,
                actor,
                "team.revoke_keys",
                "team",
                team_id,
                team_id=team_id,
                after={"revoked_keys": list(revoked)},
                request_id=request_id,
            )
        self.keys.forget(revoked)
        return {"object": "team.keys_revoked", "team_id": team_id, "revoked_keys": list(revoked)}

    # ------------------------------------------------------------------ users

    async def _user(
        self, conn: AsyncConnection, viewer: Principal, user_id: str, *, any_team: bool = False
    ) -> Any:
        """The user, if `viewer` may see them: a team's keys see its members only (or, adding
        someone to the team, `any_team`, any user by id)."""
        row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        visible = row is not None and row.deleted_at is None
        if visible and not any_team and in_team(viewer):
            member = await conn.execute(
                sa.select(team_members.c.role).where(
                    team_members.c.team_id == viewer.team_id, team_members.c.user_id == user_id
                )
            )
            visible = member.first() is not None
        if not visible:
            raise ResourceNotFound(f"No user with id '{user_id}'.", param="user_id")
        return row

    async def _teams_of(self, conn: AsyncConnection, user_id: str) -> list[dict[str, Any]]:
        query = sa.select(team_members.c.team_id, team_members.c.role).where(
            team_members.c.user_id == user_id
        )
        return [{"team_id": r.team_id, "role": r.role} for r in await conn.execute(query)]

    async def create_user(
        self, actor: Principal, email: str, name: str | None, role: Role, request_id: str | None
    ) -> dict[str, Any]:
        """A new user. An admin or owner role is granted through `change_admin_role` (pending a
        second admin when the two-person rule covers it): the user starts as a member."""
        if in_team(actor):
            raise PermissionDenied("Only organisation owners and admins may create users.")
        check_grant(actor, role, None)
        gated = _is_admin_role(role) and await self._needs_approval(actor, "change_admin_role", None)
        row = {
            "id": "user_" + secrets.token_hex(8),
            "email": email,
            "name": name,
            "role": "member" if gated else role,
            "created_at": self.clock(),
            "created_by": actor.key_id,
        }
        async with self.database.engine.begin() as conn:
            taken = await conn.execute(sa.select(users.c.id).where(users.c.email == email))
            if taken.first() is not None:
                raise InvalidRequest(f"A user with email '{email}' already exists.", param="email")
            await conn.execute(sa.insert(users).values(**row))
            user = describe_user((await conn.execute(sa.select(users).where(users.c.id == row["id"]))).one())
            await self.audit.record(
                conn, actor, "user.create", "user", user["id"], after=user, request_id=request_id
            )
        if gated:
            params = {"user_id": user["id"], "team_id": None, "role": role}
            pending = await self.approvals.propose(
                actor,
                "change_admin_role",
                "user",
                user["id"],
                team_id=None,
                params=params,
                request_id=request_id,
            )
            user["pending_action"] = pending
        return user

    async def list_users(
        self, viewer: Principal, paging: Paging = FIRST
    ) -> tuple[list[dict[str, Any]], Page]:
        """A page of the users `viewer` may see (a team's viewer: its members), oldest first."""
        query = sa.select(users).where(users.c.deleted_at.is_(None))
        if in_team(viewer):
            query = query.join(team_members, team_members.c.user_id == users.c.id).where(
                team_members.c.team_id == viewer.team_id
            )
        elif not reads_as_admin(viewer):
            return [], Page([], None)
        async with self.database.engine.connect() as conn:
            page = USERS_ORDER.page((await conn.execute(USERS_ORDER.select(query, paging))).all(), paging)
        return [describe_user(r) for r in page.rows], page

    async def get_user(self, viewer: Principal, user_id: str) -> dict[str, Any]:
        if viewer.team_id is None and not reads_as_admin(viewer):
            raise ResourceNotFound(f"No user with id '{user_id}'.", param="user_id")
        async with self.database.engine.connect() as conn:
            row = await self._user(conn, viewer, user_id)
            memberships = await self._teams_of(conn, user_id)
        if in_team(viewer):
            memberships = [m for m in memberships if m["team_id"] == viewer.team_id]
        return describe_user(row, memberships)

    async def set_role(
        self, actor: Principal, user_id: str, team_id: str | None, role: Role | None, request_id: str | None
    ) -> dict[str, Any]:
        """Set a user's role organisation-wide (`team_id` None) or in a team (adding them to it);
        `role` None removes them from the team. Changes that give or take an admin or owner role
        are proposed when the two-person rule covers them."""
        if role is None and team_id is None:
            raise InvalidRequest(
                "An organisation-wide role cannot be removed; delete the user.", param="role"
            )
        if team_id is not None:  # a team the actor may not see is absent (404), not forbidden
            async with self.database.engine.connect() as conn:
                await self._team(conn, actor, team_id, manage=False)
        _check_may_grant(actor, role, team_id)
        async with self.database.engine.connect() as conn:
            await self._user(conn, actor, user_id, any_team=team_id is not None)
            if team_id is not None:
                await self._team(conn, actor, team_id, manage=True)
            current = await self._current_role(conn, user_id, team_id)
        if role is None and current is None:
            raise ResourceNotFound(f"The user '{user_id}' is not a member of '{team_id}'.", param="user_id")
        _check_may_change(actor, current)
        params = {"user_id": user_id, "team_id": team_id, "role": role}
        admin_change = _is_admin_role(current) or _is_admin_role(role)
        if admin_change and await self._needs_approval(actor, "change_admin_role", team_id):
            return await self.approvals.propose(
                actor,
                "change_admin_role",
                "user",
                user_id,
                team_id=team_id,
                params=params,
                request_id=request_id,
            )
        return await self._change_role(actor, params, request_id)

    async def _current_role(self, conn: AsyncConnection, user_id: str, team_id: str | None) -> Role | None:
        if team_id is None:
            query = sa.select(users.c.role).where(users.c.id == user_id)
        else:
            query = sa.select(team_members.c.role).where(
                team_members.c.team_id == team_id, team_members.c.user_id == user_id
            )
        return cast("Role | None", (await conn.execute(query)).scalar())

    async def _change_role(
        self, actor: Principal, params: dict[str, Any], request_id: str | None = None
    ) -> dict[str, Any]:
        user_id = str(params["user_id"])
        team_id = params.get("team_id")
        role: Role | None = params.get("role")
        _check_may_grant(actor, role, team_id)  # approved: its proposer's authority as it is now
        async with self.database.engine.begin() as conn:
            await self._user(conn, actor, user_id, any_team=team_id is not None)
            if team_id is not None:
                await self._team(conn, actor, team_id, manage=True)
            before = await self._current_role(conn, user_id, team_id)
            _check_may_change(actor, before)  # and the user's role as it is now
            if team_id is None:
                await conn.execute(sa.update(users).where(users.c.id == user_id).values(role=role))
            elif role is None:
                await conn.execute(
                    sa.delete(team_members).where(
                        team_members.c.team_id == team_id, team_members.c.user_id == user_id
                    )
                )
            elif before is None:
                await conn.execute(
                    sa.insert(team_members).values(
                        team_id=team_id, user_id=user_id, role=role, added_at=self.clock()
                    )
                )
            else:
                await conn.execute(
                    sa.update(team_members)
                    .where(team_members.c.team_id == team_id, team_members.c.user_id == user_id)
                    .values(role=role)
                )
            revoked, lowered = await self.keys.enforce_people(conn, [user_id])
            await self.audit.record(
                conn,
                actor,
                "user.role" if team_id is None else "team.member",
                "user",
                user_id,
                team_id=team_id,
                before={"role": before},
                after={"role": role, "keys_changed": [*revoked, *lowered], "revoked_keys": list(revoked)},
                request_id=request_id,
            )
            user = (await conn.execute(sa.select(users).where(users.c.id == user_id))).one()
            memberships = await self._teams_of(conn, user_id)
        self.keys.forget(revoked)
        await self.keys.refresh(lowered)
        return describe_user(user, memberships)

    async def delete_user(self, actor: Principal, user_id: str, request_id: str | None) -> dict[str, Any]:
        """Deletes the user (kept for the ledger) and revokes every key of theirs."""
        if in_team(actor):
            raise PermissionDenied("Only organisation owners and admins may delete users.")
        if not actor.is_admin:
            raise PermissionDenied("Only owners and admins may delete users.")
        async with self.database.engine.begin() as conn:
            row = await self._user(conn, actor, user_id)
            if actor.kind != "master" and row.role and ROLE_RANK[row.role] > ROLE_RANK[actor.role]:
                raise PermissionDenied(f"A key with role '{actor.role}' cannot delete an '{row.role}'.")
            if _is_admin_role(row.role) and await self._needs_approval(actor, "change_admin_role", None):
                raise PermissionDenied(
                    "This user is an admin: take their admin role away first (a second admin approves).",
                    code="approval_required",
                )
            memberships = await self._teams_of(conn, user_id)
            for m in memberships:  # deleting them takes these roles away as removing them would
                if _is_admin_role(m["role"]) and await self._needs_approval(
                    actor, "change_admin_role", m["team_id"]
                ):
                    raise PermissionDenied(
                        f"This user is an {m['role']} of the team '{m['team_id']}': take that role away "
                        "first (a second admin approves).",
                        code="approval_required",
                    )
            before = describe_user(row, memberships)
            await conn.execute(sa.update(users).where(users.c.id == user_id).values(deleted_at=self.clock()))
            await conn.execute(sa.delete(team_members).where(team_members.c.user_id == user_id))
            revoked, _ = await self.keys.enforce_people(conn, [user_id])  # theirs, and what they issued
            after = describe_user((await conn.execute(sa.select(users).where(users.c.id == user_id))).one())
            await self.audit.record(
                conn,
                actor,
                "user.delete",
                "user",
                user_id,
                before=before,
                after={**after, "revoked_keys": list(revoked)},
                request_id=request_id,
            )
        self.keys.forget(revoked)
        return {**after, "revoked_keys": list(revoked)}
