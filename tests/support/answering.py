"""An OpenAI-format upstream whose answers depend on the request: each chat request's last user
message picks a scripted `Reply` (text or tool calls, finish reason, usage, a delay before the
answer), served whole or as an SSE stream as the request asks. It can also hold requests from a
given one on until released, to stop a client mid-way."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from support.upstream import Upstream


@dataclass(frozen=True)
class Reply:
    text: str | None = None
    tool_calls: tuple[tuple[str, str], ...] = ()  # (name, arguments as JSON text)
    finish_reason: str = "stop"
    prompt_tokens: int = 10
    completion_tokens: int = 5
    delay: float = 0.0  # seconds before the answer starts


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message["content"]
            return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
    return ""


@dataclass
class AnsweringUpstream(Upstream):
    replies: dict[str, Reply] = field(default_factory=dict)  # by the last user message
    hold_from: int | None = None  # the chat request (1, 2, ...) from which answers wait for `release`
    fallback: Reply | None = None  # the answer to any other message (None: every one is scripted)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.chat_requests = 0
        self.in_flight = 0
        self.most_at_once = 0  # chat requests answered at the same time, at most
        self._released: asyncio.Event | None = None
        self.held = threading.Event()  # set once a request is being held

    def release(self) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._held_event().set)

    def _held_event(self) -> asyncio.Event:
        if self._released is None:
            self._released = asyncio.Event()
        return self._released

    async def _default(self, request: web.Request, body: bytes) -> web.StreamResponse:
        if not request.path.endswith("/chat/completions"):
            return await super()._default(request, body)
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            return await self._answer(request, body)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, body: bytes) -> web.StreamResponse:
        data = json.loads(body)
        self.chat_requests += 1
        if self.hold_from is not None and self.chat_requests >= self.hold_from:
            released = self._held_event()
            if not released.is_set():
                self.held.set()
                await released.wait()
        reply = self.replies.get(last_user_text(data), self.fallback)
        if reply is None:
            return web.json_response({"error": {"message": "unscripted", "type": "server_error"}}, status=500)
        if reply.delay:
            await asyncio.sleep(reply.delay)  # the upstream is slow: that is what it is scripted to be
        if data.get("stream"):
            return await self._stream(request, data, reply)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
                for i, (name, arguments) in enumerate(reply.tool_calls)
            ]
        return web.json_response(
            {
                "id": "chatcmpl-answering",
                "object": "chat.completion",
                "created": 1741569952,
                "model": data["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
                "usage": _usage(reply),
            }
        )

    async def _stream(self, request: web.Request, data: dict[str, Any], reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            chunk = {
                "id": "chatcmpl-answering",
                "object": "chat.completion.chunk",
                "created": 1741569952,
                "model": data["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        if reply.text:
            half = len(reply.text) // 2
            await send({"content": reply.text[:half]})
            await send({"content": reply.text[half:]})
        for i, (name, arguments) in enumerate(reply.tool_calls):
            start = {
                "index": i,
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            await send({"tool_calls": [start]})
            await send({"tool_calls": [{"index": i, "function": {"arguments": arguments}}]})
        await send({}, reply.finish_reason)
        if (data.get("stream_options") or {}).get("include_usage"):
            chunk = {
                "id": "chatcmpl-answering",
                "object": "chat.completion.chunk",
                "created": 1741569952,
                "model": data["model"],
                "choices": [],
                "usage": _usage(reply),
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }
