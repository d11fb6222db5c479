"""/admin/keys: virtual keys, for owners and admins (the master key is the first owner).

The admin API as a whole (routes in server/asgi.py `admin_router`, schema at /openapi.json): JSON
in and out, errors in OpenAI's format, every call authenticated like any other. Changes need an
owner or admin within the caller's scope; reads of a team's things (its members, budgets, terms)
are open to its members too. The CLI (`turnout keys|teams|users|budgets|audit|approvals ...`) is
a thin client of it."""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec
import orjson

from turnout.config.units import parse_delay, parse_duration
from turnout.domain.errors import InvalidRequest
from turnout.domain.key_policy import KeySpec
from turnout.domain.principal import Principal
from turnout.domain.rate_limits import RateLimits, parse_limits
from turnout.keys.service import KeyService
from turnout.limits.priority import checked_metadata
from turnout.server.admin_body import decode_body, reply, usd
from turnout.server.admin_query import paging, query_params, send_page
from turnout.server.exchange import Exchange
from turnout.teams.names import Names


class Limits(msgspec.Struct, forbid_unknown_fields=True):
    """Rate limits (each a whole number from 1; null or left out: no limit of that kind)."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    parallel: int | None = None


def rate_limits(body: Limits | None, param: str = "limits") -> RateLimits | None:
    """The limits of an admin body, checked (InvalidRequest naming the field)."""
    return None if body is None else parse_limits(msgspec.structs.asdict(body), param)


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    role: Literal["owner", "admin", "member", "viewer"] = "member"
    team_id: str | None = None  # or the team's name
    user_id: str | None = None  # or the user's email
    models: list[str] | None = None
    expires_in: str | None = None  # a duration: 30d, 12h
    max_budget: str | None = None  # USD, e.g. "25.00"
    limits: Limits | None = None
    metadata: dict[str, Any] | None = None


class KeyChange(msgspec.Struct, forbid_unknown_fields=True):
    """What to change in a key; a field left out stays as it is (null clears `models`,
    `expires_in`, `max_budget`, `limits`: every model, no expiry, no budget, no limits)."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    role: Literal["owner", "admin", "member", "viewer"] | msgspec.UnsetType = msgspec.UNSET
    models: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    expires_in: str | msgspec.UnsetType | None = msgspec.UNSET  # from now: 30d, 12h
    max_budget: str | msgspec.UnsetType | None = msgspec.UNSET  # USD
    limits: Limits | msgspec.UnsetType | None = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class Rotation(msgspec.Struct, forbid_unknown_fields=True):
    grace: str = "0s"  # how long the old key keeps working


class AdminKeys:
    """Owners and admins only (the route table says so: `admin_only`)."""

    def __init__(self, keys: KeyService, names: Names) -> None:
        self.keys = keys
        self.names = names

    async def create(self, x: Exchange, issuer: Principal) -> None:
        body: NewKey = decode_body(await x.body(), NewKey)
        checked_metadata(body.metadata)
        if not body.name.strip() or len(body.name) > 200:
            raise InvalidRequest("'name' must be 1-200 characters.", param="name")
        try:
            expires = None if body.expires_in is None else time.time() + parse_duration(body.expires_in)
        except ValueError as error:
            raise InvalidRequest(str(error), param="expires_in") from None
        budget = None if body.max_budget is None else usd(body.max_budget, "max_budget", zero=True)
        spec = KeySpec(
            name=body.name,
            role=body.role,
            team_id=await self.names.team(body.team_id),
            user_id=await self.names.user(body.user_id),
            allowed_models=None if body.models is None else tuple(body.models),
            expires_at=expires,
            max_budget_micros=budget,
        )
        limits = rate_limits(body.limits)
        key, described = await self.keys.issue(
            issuer, spec, limits=limits, metadata=body.metadata, request_id=x.request_id
        )
        await x.send_json(200, orjson.dumps({**described, "key": key}))

    async def update(self, x: Exchange, issuer: Principal, key_id: str) -> None:
        """PATCH /admin/keys/{id}: the key's new attributes, within what the caller may give (202
        with a pending action when it takes a team's last admin role away)."""
        body: KeyChange = decode_body(await x.body(), KeyChange)
        changes: dict[str, Any] = {}
        if body.name is not msgspec.UNSET:
            if not body.name.strip() or len(body.name) > 200:
                raise InvalidRequest("'name' must be 1-200 characters.", param="name")
            changes["name"] = body.name
        if body.role is not msgspec.UNSET:
            changes["role"] = body.role
        if body.models is not msgspec.UNSET:
            changes["allowed_models"] = None if body.models is None else tuple(body.models)
        if body.expires_in is not msgspec.UNSET:
            try:
                changes["expires_at"] = (
                    None if body.expires_in is None else time.time() + parse_duration(body.expires_in)
                )
            except ValueError as error:
                raise InvalidRequest(str(error), param="expires_in") from None
        if body.max_budget is not msgspec.UNSET:
            changes["max_budget_micros"] = (
                None if body.max_budget is None else usd(body.max_budget, "max_budget", zero=True)
            )
        limits: Any = msgspec.UNSET
        if body.limits is not msgspec.UNSET:
            limits = rate_limits(body.limits)
        metadata = body.metadata
        if metadata is not msgspec.UNSET:
            checked_metadata(metadata)
        await reply(x, await self.keys.update(issuer, key_id, changes, limits, metadata, x.request_id))

    async def list(self, x: Exchange, issuer: Principal) -> None:
        await send_page(x, *await self.keys.list(issuer, paging(query_params(x))))

    async def one(self, x: Exchange, issuer: Principal, key_id: str, action: str) -> None:
        """GET /admin/keys/{id}; POST /admin/keys/{id}/revoke (202 with a pending action when it
        needs a second admin); POST /admin/keys/{id}/rotate."""
        if action == "revoke":
            await reply(x, await self.keys.revoke(issuer, key_id, x.request_id))
        elif action == "rotate":
            rotation: Rotation = decode_body(await x.body(), Rotation)
            try:
                grace = parse_delay(rotation.grace)
            except ValueError as error:
                raise InvalidRequest(str(error), param="grace") from None
            key, described = await self.keys.rotate(issuer, key_id, grace, x.request_id)
            await x.send_json(200, orjson.dumps({**described, "key": key}))
        else:
            await x.send_json(200, orjson.dumps(await self.keys.get(issuer, key_id)))
