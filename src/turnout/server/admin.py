"""The admin API under /admin/ (keys, for now): JSON in and out, errors in OpenAI's format, every
call authenticated like any other and allowed to owners and admins only (the master key is the
first owner). The CLI (`turnout keys ...`) is a thin client of these endpoints."""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec
import orjson

from turnout.config.units import parse_delay, parse_duration
from turnout.domain.errors import InvalidRequest, PermissionDenied
from turnout.domain.key_policy import KeySpec
from turnout.domain.pricing import decimal_price
from turnout.domain.principal import Principal
from turnout.keys.index import KeyIndex
from turnout.keys.service import KeyService
from turnout.server.exchange import Exchange


class Limits(msgspec.Struct, forbid_unknown_fields=True):
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    role: Literal["owner", "admin", "member", "viewer"] = "member"
    team_id: str | None = None
    user_id: str | None = None
    models: list[str] | None = None
    expires_in: str | None = None  # a duration: 30d, 12h
    max_budget: str | None = None  # USD, e.g. "25.00"
    limits: Limits | None = None
    metadata: dict[str, Any] | None = None


class Rotation(msgspec.Struct, forbid_unknown_fields=True):
    grace: str = "0s"  # how long the old key keeps working


def decode_body(raw: bytes, kind: type[msgspec.Struct]) -> Any:
    """An admin request's JSON body as `kind`, or a 400 naming the field at fault."""
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as error:
        path = str(error).rsplit(" - at `$.", 1)
        param = path[1].rstrip("`") if len(path) == 2 else None
        raise InvalidRequest(str(error).split(" - at ")[0] + ".", param=param) from None
    except msgspec.DecodeError:
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json") from None


class AdminKeys:
    def __init__(self, keys: KeyService, index: KeyIndex) -> None:
        self.keys = keys
        self.index = index

    async def _admin(self, x: Exchange) -> Principal:
        principal = await self.index.resolve(x.credential())
        if not principal.is_admin:
            raise PermissionDenied("The admin API is for owners and admins.")
        return principal

    async def create(self, x: Exchange) -> None:
        issuer = await self._admin(x)
        body: NewKey = decode_body(await x.body(), NewKey)
        if not body.name.strip() or len(body.name) > 200:
            raise InvalidRequest("'name' must be 1-200 characters.", param="name")
        try:
            expires = None if body.expires_in is None else time.time() + parse_duration(body.expires_in)
        except ValueError as error:
            raise InvalidRequest(str(error), param="expires_in") from None
        try:
            budget = None if body.max_budget is None else int(decimal_price(body.max_budget) * 1_000_000)
        except ValueError as error:
            raise InvalidRequest(str(error).replace("per 1M tokens", "(USD)"), param="max_budget") from None
        spec = KeySpec(
            name=body.name,
            role=body.role,
            team_id=body.team_id,
            user_id=body.user_id,
            allowed_models=None if body.models is None else tuple(body.models),
            expires_at=expires,
            max_budget_micros=budget,
        )
        limits = None
        if body.limits is not None:
            limits = {k: v for k, v in msgspec.structs.asdict(body.limits).items() if v is not None}
        key, described = await self.keys.issue(
            issuer, spec, limits=limits, metadata=body.metadata, request_id=x.request_id
        )
        await x.send_json(200, orjson.dumps({**described, "key": key}))

    async def list(self, x: Exchange) -> None:
        data = await self.keys.list(await self._admin(x))
        await x.send_json(200, orjson.dumps({"object": "list", "data": data}))

    async def one(self, x: Exchange, key_id: str, action: str) -> None:
        """GET /admin/keys/{id}; POST /admin/keys/{id}/revoke; POST /admin/keys/{id}/rotate."""
        issuer = await self._admin(x)
        if action == "revoke":
            await x.send_json(200, orjson.dumps(await self.keys.revoke(issuer, key_id, x.request_id)))
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
