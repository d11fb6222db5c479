"""Candidate: a raw ASGI app (no framework) with an aiohttp client; served by uvicorn or granian."""

import aiohttp

from common import KEY, UPSTREAM, rewrite

_session: aiohttp.ClientSession | None = None


async def app(scope, receive, send):
    global _session
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await _session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    auth = b""
    for k, v in scope["headers"]:
        if k == b"authorization":
            auth = v
    if auth != KEY:
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"error":"auth"}'})
        return
    chunks = []
    more = True
    while more:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        more = msg.get("more_body", False)
    body, stream = rewrite(b"".join(chunks))
    async with _session.post(UPSTREAM, data=body, headers={"Content-Type": "application/json"}) as up:
        if not stream:
            data = await up.read()
            await send(
                {
                    "type": "http.response.start",
                    "status": up.status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": data})
            return
        await send(
            {
                "type": "http.response.start",
                "status": up.status,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        async for chunk in up.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
