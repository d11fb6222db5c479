"""/admin/providers: the configured providers, and taking one out of service or back."""

from __future__ import annotations

import orjson

from turnout.governance.providers import ProviderControl
from turnout.keys.index import KeyIndex
from turnout.server.admin_teams import reply
from turnout.server.exchange import Exchange


class AdminProviders:
    def __init__(self, control: ProviderControl, index: KeyIndex) -> None:
        self.control = control
        self.index = index

    async def list(self, x: Exchange) -> None:
        data = await self.control.list(await self.index.resolve(x.credential()))
        await x.send_json(200, orjson.dumps({"object": "list", "data": data}))

    async def remove(self, x: Exchange, name: str) -> None:
        caller = await self.index.resolve(x.credential())
        await reply(x, await self.control.remove(caller, name, x.request_id))

    async def restore(self, x: Exchange, name: str) -> None:
        caller = await self.index.resolve(x.credential())
        await x.send_json(200, orjson.dumps(await self.control.restore(caller, name, x.request_id)))
