"""Candidate: granian's RSGI protocol (Rust HTTP server) with an aiohttp client."""

import aiohttp

from common import KEY, UPSTREAM, rewrite


class App:
    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    def __rsgi_init__(self, loop) -> None:
        async def make() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        self.session = loop.run_until_complete(make())

    async def __rsgi__(self, scope, proto):
        if scope.headers.get("authorization", "").encode() != KEY:
            proto.response_bytes(401, [("content-type", "application/json")], b'{"error":"auth"}')
            return
        body, stream = rewrite(await proto())
        async with self.session.post(UPSTREAM, data=body, headers={"Content-Type": "application/json"}) as up:
            if not stream:
                proto.response_bytes(up.status, [("content-type", "application/json")], await up.read())
                return
            transport = proto.response_stream(up.status, [("content-type", "text/event-stream")])
            async for chunk in up.content.iter_any():
                await transport.send_bytes(chunk)


app = App()
