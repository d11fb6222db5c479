"""Candidate: Starlette routing on uvicorn with an aiohttp client (framework overhead)."""

import contextlib

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from common import KEY, UPSTREAM, rewrite

state: dict[str, aiohttp.ClientSession] = {}


async def chat(request: Request) -> Response:
    if request.headers.get("authorization", "").encode() != KEY:
        return JSONResponse({"error": "auth"}, status_code=401)
    body, stream = rewrite(await request.body())
    session = state["session"]
    if not stream:
        async with session.post(UPSTREAM, data=body, headers={"Content-Type": "application/json"}) as up:
            return Response(await up.read(), status_code=up.status, media_type="application/json")
    up = await session.post(UPSTREAM, data=body, headers={"Content-Type": "application/json"})

    async def relay():
        try:
            async for chunk in up.content.iter_any():
                yield chunk
        finally:
            up.release()

    return StreamingResponse(relay(), status_code=up.status, media_type="text/event-stream")


@contextlib.asynccontextmanager
async def lifespan(app):
    state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await state["session"].close()


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan)
