"""/admin/teams and /admin/users: teams, users and memberships (see teams/directory.py). An
action under the two-person rule answers 202 with the pending action a second admin approves."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import orjson

from turnout.domain.errors import InvalidRequest
from turnout.domain.principal import Principal, Priority
from turnout.server.admin import Limits, rate_limits
from turnout.server.admin_body import decode_body, reply
from turnout.server.admin_query import paging, query_params, send_page
from turnout.server.exchange import Exchange
from turnout.teams.directory import Directory
from turnout.teams.limits import LimitSettings
from turnout.teams.names import Names

RoleName = Literal["owner", "admin", "member", "viewer"]


class NewTeam(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    metadata: dict[str, Any] | None = None


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    name: str | None = None
    role: RoleName = "member"


class UserChange(msgspec.Struct, forbid_unknown_fields=True):
    """A user's organisation-wide role and/or rate limits (all their keys together; null: none)."""

    role: RoleName | msgspec.UnsetType = msgspec.UNSET
    limits: Limits | msgspec.UnsetType | None = msgspec.UNSET


class TeamChange(msgspec.Struct, forbid_unknown_fields=True):
    """A team's rate limits (all its keys together), its defaults for new keys (both organisation
    admins') and its priority class under overload (its keys without a class of their own; the
    team's admins may set it up to their own class); a field left out stays as it is, null removes
    it."""

    limits: Limits | msgspec.UnsetType | None = msgspec.UNSET
    key_limits: Limits | msgspec.UnsetType | None = msgspec.UNSET
    priority: Priority | msgspec.UnsetType | None = msgspec.UNSET


class Membership(msgspec.Struct, forbid_unknown_fields=True):
    user_id: str  # or the user's email
    role: RoleName = "member"


def _name(value: str, param: str, limit: int = 200) -> str:
    value = value.strip()
    if not value or len(value) > limit:
        raise InvalidRequest(f"'{param}' must be 1-{limit} characters.", param=param)
    return value


class AdminTeams:
    def __init__(self, directory: Directory, names: Names, limits: LimitSettings) -> None:
        self.directory = directory
        self.names = names
        self.limits = limits

    async def update_team(self, x: Exchange, caller: Principal, team_id: str) -> None:
        """PATCH /admin/teams/{id}: its rate limits and new keys' defaults (organisation admins), its
        priority class."""
        change: TeamChange = decode_body(await x.body(), TeamChange)
        limits = change.limits if change.limits is msgspec.UNSET else rate_limits(change.limits)
        key_limits = (
            change.key_limits
            if change.key_limits is msgspec.UNSET
            else rate_limits(change.key_limits, "key_limits")
        )
        changed = await self.limits.set_team(
            caller, team_id, limits, key_limits, x.request_id, priority=change.priority
        )
        await x.send_json(200, orjson.dumps(changed))

    async def create_team(self, x: Exchange, caller: Principal) -> None:
        body: NewTeam = decode_body(await x.body(), NewTeam)
        name = _name(body.name, "name")
        if name.startswith("team_"):  # what team ids look like: a team is named by either
            raise InvalidRequest("A team's name cannot start with 'team_'.", param="name")
        team = await self.directory.create_team(caller, name, body.metadata, x.request_id)
        await x.send_json(200, orjson.dumps(team))

    async def list_teams(self, x: Exchange, caller: Principal) -> None:
        await send_page(x, *await self.directory.list_teams(caller, paging(query_params(x))))

    async def team(self, x: Exchange, caller: Principal, team_id: str) -> None:
        if x.scope["method"] == "DELETE":
            await reply(x, await self.directory.delete_team(caller, team_id, x.request_id))
        else:
            await x.send_json(200, orjson.dumps(await self.directory.get_team(caller, team_id)))

    async def add_member(self, x: Exchange, caller: Principal, team_id: str) -> None:
        body: Membership = decode_body(await x.body(), Membership)
        user_id = await self.names.user(body.user_id) or body.user_id
        await reply(x, await self.directory.set_role(caller, user_id, team_id, body.role, x.request_id))

    async def remove_member(self, x: Exchange, caller: Principal, team_id: str, user_id: str) -> None:
        await reply(x, await self.directory.set_role(caller, user_id, team_id, None, x.request_id))

    async def revoke_keys(self, x: Exchange, caller: Principal, team_id: str) -> None:
        await reply(x, await self.directory.revoke_team_keys(caller, team_id, x.request_id))

    async def create_user(self, x: Exchange, caller: Principal) -> None:
        body: NewUser = decode_body(await x.body(), NewUser)
        email = _name(body.email, "email", 320)
        if "@" not in email:
            raise InvalidRequest("'email' must be an email address.", param="email")
        name = None if body.name is None else _name(body.name, "name")
        user = await self.directory.create_user(caller, email, name, body.role, x.request_id)
        await x.send_json(202 if "pending_action" in user else 200, orjson.dumps(user))

    async def list_users(self, x: Exchange, caller: Principal) -> None:
        await send_page(x, *await self.directory.list_users(caller, paging(query_params(x))))

    async def user(self, x: Exchange, caller: Principal, user_id: str) -> None:
        method = x.scope["method"]
        if method == "DELETE":
            await reply(x, await self.directory.delete_user(caller, user_id, x.request_id))
        elif method == "PATCH":
            change: UserChange = decode_body(await x.body(), UserChange)
            if change.role is msgspec.UNSET and change.limits is msgspec.UNSET:
                raise InvalidRequest("Give 'role', 'limits' or both.", param="role")
            if change.limits is not msgspec.UNSET:
                limits = rate_limits(change.limits)
                await self.limits.set_user(caller, user_id, limits, x.request_id)
            if change.role is msgspec.UNSET:
                await x.send_json(200, orjson.dumps(await self.directory.get_user(caller, user_id)))
                return
            await reply(x, await self.directory.set_role(caller, user_id, None, change.role, x.request_id))
        else:
            await x.send_json(200, orjson.dumps(await self.directory.get_user(caller, user_id)))
