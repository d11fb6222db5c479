"""Candidate: aiohttp web server + aiohttp client."""

import sys

import aiohttp
import uvloop
from aiohttp import web

from common import KEY, UPSTREAM, rewrite


async def chat(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Authorization", "").encode() != KEY:
        return web.json_response({"error": "auth"}, status=401)
    body, stream = rewrite(await request.read())
    session: aiohttp.ClientSession = request.app["session"]
    async with session.post(UPSTREAM, data=body, headers={"Content-Type": "application/json"}) as up:
        if not stream:
            return web.Response(body=await up.read(), status=up.status, content_type="application/json")
        resp = web.StreamResponse(status=up.status, headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)

    async def session_ctx(app: web.Application):
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app["session"].close()

    app.cleanup_ctx.append(session_ctx)
    return app


if __name__ == "__main__":
    web.run_app(
        make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, loop=uvloop.new_event_loop()
    )
