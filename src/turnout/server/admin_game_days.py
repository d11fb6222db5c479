"""/admin/game-days: taking a provider out of service for a share of the traffic or for chosen
teams for a window (governance/game_days.py), listing game days, ending one early."""

from __future__ import annotations

import msgspec
import orjson

from turnout.domain.errors import ServiceUnavailable
from turnout.domain.principal import Principal
from turnout.governance.game_days import GameDays, game_day_params
from turnout.server.admin_body import decode_body, reply
from turnout.server.exchange import Exchange


class NewGameDay(msgspec.Struct, forbid_unknown_fields=True):
    provider: str
    duration: str | float  # a span ("30m", "2h") or seconds; at most 7 days
    share: float | None = None  # of every request (0 < share <= 1)
    teams: list[str] | None = None  # team ids: their requests only (with `share`: that share of them)
    error_rate: float = 0.2  # the affected requests' failure rate above which it is rolled back
    min_requests: int = 20  # affected requests that must have ended before the rate is judged


class AdminGameDays:
    def __init__(self, game_days: GameDays | None) -> None:
        self.game_days = game_days

    def _service(self) -> GameDays:
        if self.game_days is None:
            raise ServiceUnavailable("Game days are not available on this instance.")
        return self.game_days

    async def list(self, x: Exchange, caller: Principal) -> None:
        data = await self._service().list(caller)
        await x.send_json(200, orjson.dumps({"object": "list", "data": data}))

    async def start(self, x: Exchange, caller: Principal) -> None:
        body: NewGameDay = decode_body(await x.body(), NewGameDay)
        params = game_day_params(
            body.provider, body.duration, body.share, body.teams, body.error_rate, body.min_requests
        )
        await reply(x, await self._service().propose(caller, params, x.request_id))

    async def end(self, x: Exchange, caller: Principal, game_day_id: str) -> None:
        await x.send_json(200, orjson.dumps(await self._service().end(caller, game_day_id, x.request_id)))
