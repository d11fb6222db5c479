"""/admin/providers: the configured providers, and taking one out of service or back."""

from __future__ import annotations

import orjson

from turnout.domain.principal import Principal
from turnout.governance.providers import ProviderControl
from turnout.server.admin_body import reply
from turnout.server.exchange import Exchange


class AdminProviders:
    def __init__(self, control: ProviderControl) -> None:
        self.control = control

    async def list(self, x: Exchange, caller: Principal) -> None:
        data = await self.control.list(caller)
        await x.send_json(200, orjson.dumps({"object": "list", "data": data}))

    async def remove(self, x: Exchange, caller: Principal, name: str) -> None:
        await reply(x, await self.control.remove(caller, name, x.request_id))

    async def restore(self, x: Exchange, caller: Principal, name: str) -> None:
        await x.send_json(200, orjson.dumps(await self.control.restore(caller, name, x.request_id)))
