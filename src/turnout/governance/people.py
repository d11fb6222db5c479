"""The people behind keys, read from the store: a key's current state (authority is checked when an
action runs, against what the key is now, not what it was when it was cached or proposed), its
lineage (who it acts for and who could use it), and a person's current authority over a scope.
It is governance's, not the key service's: the two-person rule asks it, and the key service (which
records every change through governance) asks it too, so it sits below both.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.domain.errors import AuthenticationFailed
from turnout.domain.key_policy import ADMIN_ROLES, MASTER_LINEAGE, Lineage, higher, lowest, one_person
from turnout.domain.principal import MASTER_PERSON, Principal, Role
from turnout.domain.rate_limits import stored_limits
from turnout.limits.priority import priority_of
from turnout.storage.database import Database
from turnout.storage.tables import api_keys, key_controllers, team_members, users
from turnout.storage.times import unix_seconds

MASTER_KEY_ID = "master"
# A console session signed in through single sign-on acts as a person, not a key: its principal's
# key_id is this prefix and the user's id (never an api_keys id), its rights the user's as they are.
PERSON_KEY_PREFIX = "sso:"


def person_key_id(user_id: str) -> str:
    return PERSON_KEY_PREFIX + user_id


UNKNOWN_PERSON = "key:"  # the person of a key with no record of who issued it: itself
MAX_ROTATIONS = 100  # how far a rotated key is followed to its replacement


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
        person=row.person or row.user_id,
        priority=priority_of(orjson.loads(row.metadata)) if row.metadata else None,
        limits=stored_limits(row.limits),
        replaced_by=row.rotated_to,
        issuer_user=None if row.user_id else _a_user(row.person),
    )


def _a_user(person: str | None) -> str | None:
    """`person` if it is a user (not the master key, nor a key of unknown issuer)."""
    if person is None or person == MASTER_PERSON or person.startswith(UNKNOWN_PERSON):
        return None
    return person


def master_principal(name: str) -> Principal:
    return Principal(key_id=MASTER_KEY_ID, name=name, role="owner", kind="master", person=MASTER_PERSON)


def in_scope(column: sa.ColumnElement[Any], team_id: str | None) -> sa.ColumnElement[bool]:
    """`column` names the team `team_id` (None: the organisation's, no team)."""
    return column.is_(None) if team_id is None else column == team_id


def active_admin_key(now: Any) -> tuple[sa.ColumnElement[bool], ...]:
    """Conditions on `api_keys` for a virtual owner or admin key that works at `now`."""
    return (
        api_keys.c.kind == "virtual",
        api_keys.c.revoked_at.is_(None),
        api_keys.c.role.in_(ADMIN_ROLES),
        sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
    )


def _active(row: Any) -> bool:
    expires = unix_seconds(row.expires_at)
    return row.revoked_at is None and (expires is None or expires > time.time())


class People:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def current(self, principal: Principal) -> Principal:
        """What the key `principal` was read as is now: its stored state (role lowered, budget,
        models), or 401 if it was revoked or expired meanwhile. The master key is the master."""
        if principal.kind == "master":
            return principal
        if principal.key_id.startswith(PERSON_KEY_PREFIX):
            person = await self.person(principal.key_id[len(PERSON_KEY_PREFIX) :])
            if person is None:
                raise AuthenticationFailed("This user has been deleted.", code="invalid_api_key")
            return person
        async with self.database.engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == principal.key_id))).first()
        if row is None or not _active(row):
            raise AuthenticationFailed(
                "This API key has been revoked or has expired.", code="invalid_api_key"
            )
        return principal_of(row)

    async def now(self, key_id: str) -> Principal | None:
        """The key `key_id` as it is now, following rotations to the key that replaced it; None if
        it (and its replacement) no longer works. The master key is always the master (one
        person, whichever key holds the role now)."""
        if key_id == MASTER_KEY_ID:
            return master_principal("master key")
        if key_id.startswith(PERSON_KEY_PREFIX):
            return await self.person(key_id[len(PERSON_KEY_PREFIX) :])
        async with self.database.engine.connect() as conn:
            for _ in range(MAX_ROTATIONS):
                row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).first()
                if row is None:
                    return None
                if row.rotated_to is not None and (row.revoked_at is not None or not _active(row)):
                    key_id = row.rotated_to
                    continue
                return principal_of(row) if _active(row) else None
        return None

    async def person(self, user_id: str) -> Principal | None:
        """The user `user_id` as a caller, with their rights as they are now (None: no such user, or
        deleted): their organisation-wide role; a user who is no organisation admin but an owner or
        admin of exactly one team acts as that team's. Their lineage is themselves alone."""
        async with self.database.engine.connect() as conn:
            user = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
            if user is None or user.deleted_at is not None:
                return None
            query = sa.select(team_members.c.team_id, team_members.c.role).where(
                team_members.c.user_id == user_id, team_members.c.role.in_(ADMIN_ROLES)
            )
            led = (await conn.execute(query)).all()
        role = cast("Role", user.role or "member")
        team_id = None
        if role not in ADMIN_ROLES and len(led) == 1:
            team_id, role = led[0].team_id, cast("Role", led[0].role)
        return Principal(
            key_id=person_key_id(user_id),
            name=user.name or user.email,
            role=role,
            team_id=team_id,
            user_id=user_id,
            person=user_id,
        )

    async def lineage(self, conn: AsyncConnection, principal: Principal) -> Lineage:
        if principal.kind == "master":
            return MASTER_LINEAGE
        query = sa.select(key_controllers.c.person).where(key_controllers.c.key_id == principal.key_id)
        controllers = frozenset((await conn.execute(query)).scalars())
        stored = sa.select(api_keys.c.person).where(api_keys.c.id == principal.key_id)
        person = (await conn.execute(stored)).scalar() or principal.person or principal.user_id
        if person is None:  # no record of who issued it: it stands for no one but itself
            person = UNKNOWN_PERSON + principal.key_id
        return Lineage(person, controllers | {person})

    async def one_person(self, a: Principal, b: Principal) -> bool:
        """Could one person act through both keys (see domain.key_policy.one_person)?"""
        async with self.database.engine.connect() as conn:
            return one_person(await self.lineage(conn, a), await self.lineage(conn, b))

    async def another_could_approve(self, actor: Principal, team_id: str | None, now: Any) -> bool:
        """Is there a key of another person that could approve `actor`'s action on `team_id`: the
        master key, or an active admin key of the organisation (or of that team)?"""
        async with self.database.engine.connect() as conn:
            mine = await self.lineage(conn, actor)
            if not one_person(mine, MASTER_LINEAGE):
                return True
            scope = in_scope(api_keys.c.team_id, team_id)
            if team_id is not None:  # the organisation's admins decide a team's actions too
                scope = sa.or_(scope, api_keys.c.team_id.is_(None))
            query = sa.select(api_keys).where(*active_admin_key(now), scope)
            for row in await conn.execute(query):
                if not one_person(mine, await self.lineage(conn, principal_of(row))):
                    return True
        return False

    async def controlled_by(self, conn: AsyncConnection, persons: Iterable[str]) -> list[Any]:
        """The active virtual keys some of `persons` could use."""
        ids = sa.select(key_controllers.c.key_id).where(key_controllers.c.person.in_(list(persons)))
        query = sa.select(api_keys).where(
            api_keys.c.id.in_(ids), api_keys.c.kind == "virtual", api_keys.c.revoked_at.is_(None)
        )
        return list((await conn.execute(query)).all())

    async def ceiling(self, conn: AsyncConnection, key: Any) -> Role | None:
        """The highest role `key` may hold now: no more than any person who could use it may give
        in its scope (its own user: their role there; the others: what they could issue there).
        None: one of them has no authority there at all (deleted, or left the team)."""
        query = sa.select(key_controllers.c.person).where(key_controllers.c.key_id == key.id)
        persons = [p for p in (await conn.execute(query)).scalars() if p != MASTER_PERSON]
        if key.user_id is not None and key.user_id not in persons:
            persons.append(key.user_id)
        return lowest([await self._authority(conn, p, key.team_id, own=p == key.user_id) for p in persons])

    async def _authority(
        self, conn: AsyncConnection, person: str, team_id: str | None, *, own: bool
    ) -> Role | None:
        user = (
            await conn.execute(sa.select(users.c.role, users.c.deleted_at).where(users.c.id == person))
        ).first()
        if user is None or user.deleted_at is not None:
            return None
        in_team: Role | None = None
        if team_id is not None:
            query = sa.select(team_members.c.role).where(
                team_members.c.team_id == team_id, team_members.c.user_id == person
            )
            in_team = cast("Role | None", (await conn.execute(query)).scalar())
            if own:
                return in_team  # a key of a team for its user: their role in that team
        return higher(cast("Role | None", user.role), in_team)
