"""Candidate: a raw ASGI app with the minimal httptools client; served by uvicorn or granian."""

import os
from urllib.parse import urlsplit

from common import KEY, rewrite
from rawclient import Pool

_up = urlsplit(os.environ.get("UPSTREAM", "http://127.0.0.1:9100"))
_pool: Pool | None = None
_HDRS = "Content-Type: application/json\r\n"


async def app(scope, receive, send):
    global _pool
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                _pool = Pool(_up.hostname, _up.port)
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
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
    status, conn = await _pool.post("/v1/chat/completions", body, _HDRS)
    if not stream:
        data = b"".join([c async for c in _pool.chunks(conn)])
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})
        return
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    async for chunk in _pool.chunks(conn):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
