"""Candidate: a raw ASGI app with an httpx client; served by uvicorn."""

import httpx

from common import KEY, UPSTREAM, rewrite

_client: httpx.AsyncClient | None = None


async def app(scope, receive, send):
    global _client
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                _client = httpx.AsyncClient(
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=1000)
                )
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await _client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    auth = dict(scope["headers"]).get(b"authorization", b"")
    if auth != KEY:
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    chunks = []
    more = True
    while more:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        more = msg.get("more_body", False)
    body, stream = rewrite(b"".join(chunks))
    req = _client.build_request("POST", UPSTREAM, content=body, headers={"Content-Type": "application/json"})
    up = await _client.send(req, stream=True)
    try:
        await send(
            {
                "type": "http.response.start",
                "status": up.status_code,
                "headers": [(b"content-type", b"text/event-stream" if stream else b"application/json")],
            }
        )
        if not stream:
            await send({"type": "http.response.body", "body": await up.aread()})
            return
        async for chunk in up.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await up.aclose()
