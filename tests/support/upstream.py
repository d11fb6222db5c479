"""A scriptable OpenAI-format upstream for tests: a real HTTP server on 127.0.0.1 (aiohttp, in its
own thread) that answers from the recorded fixtures and records exactly what turnout sent it."""

from __future__ import annotations

import asyncio
import collections
import json
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"

Action = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fixture_bytes(name: str, provider: str = "openai") -> bytes:
    return (FIXTURES / provider / name).read_bytes()


def fixture_json(name: str, provider: str = "openai") -> Any:
    return json.loads(fixture_bytes(name, provider))


def sse_events(name: str, provider: str = "openai") -> list[bytes]:
    """The events of a `.sse` fixture, each with its trailing blank line."""
    text = fixture_bytes(name, provider)
    return [block + b"\n\n" for block in text.split(b"\n\n") if block.strip()]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw_path: str = ""  # as sent, percent-encoding kept (`path` is decoded)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Upstream:
    """Start with `start()`; script answers with the `reply_*` / failure methods (each scripted action
    answers one request, in order); unscripted requests get the default fixture answer."""

    port: int = 0
    requests: list[Recorded] = field(default_factory=list)
    ssl_context: ssl.SSLContext | None = None  # serve HTTPS with this context
    # How unscripted chat requests are answered: "ok" (the fixtures), "500", "429" (with
    # Retry-After: 1), "hang" (until the test ends), "cut" (streams drop the connection after two
    # events) or "malformed" (streams send a broken event after two); plain answers to the last
    # two get 500.
    mode: str = "ok"

    def __post_init__(self) -> None:
        self._script: collections.deque[Action] = collections.deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def root_url(self) -> str:
        if self.ssl_context is not None:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as error:  # reported to the starting thread
                errors.append(error)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="test-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        assert self._release is not None and self._runner is not None
        self._release.set()
        await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    # ------------------------------------------------------------------ scripting

    def clear(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    def then(self, action: Action, times: int = 1) -> Upstream:
        with self._lock:
            self._script.extend([action] * times)
        return self

    def reply_json(
        self, body: Any, status: int = 200, headers: dict[str, str] | None = None, times: int = 1
    ) -> Upstream:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()

        async def action(request: web.Request) -> web.StreamResponse:
            return web.Response(body=raw, status=status, content_type="application/json", headers=headers)

        return self.then(action, times)

    def reply_fixture(
        self, name: str, status: int = 200, headers: dict[str, str] | None = None, times: int = 1
    ) -> Upstream:
        return self.reply_json(fixture_bytes(name), status, headers, times)

    def reply_raw(self, body: bytes, status: int = 200, content_type: str = "text/plain") -> Upstream:
        async def action(request: web.Request) -> web.StreamResponse:
            return web.Response(body=body, status=status, content_type=content_type)

        return self.then(action)

    def reply_sse(
        self,
        events: list[bytes] | str,
        *,
        gap: float = 0.0,
        cut_after: int | None = None,
        hang_after: int | None = None,
        content_type: str = "text/event-stream",
        headers: dict[str, str] | None = None,
    ) -> Upstream:
        """Stream `events` (or a fixture's); `cut_after=k` drops the connection after k events,
        `hang_after=k` goes silent after k events. `content_type` for other framings (each event
        is written as given: any bytes)."""
        chosen = sse_events(events) if isinstance(events, str) else events

        async def action(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": content_type, **(headers or {})})
            await response.prepare(request)
            for i, event in enumerate(chosen):
                if cut_after is not None and i == cut_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if hang_after is not None and i == hang_after:
                    await self._wait_released()
                    return response
                await response.write(event)
                if gap:
                    await asyncio.sleep(gap)
            await response.write_eof()
            return response

        return self.then(action)

    def hang(self, times: int = 1, arrived: threading.Event | None = None) -> Upstream:
        """Accept the request and never answer (until the test ends); `arrived` is set when it has
        the request."""

        async def action(request: web.Request) -> web.StreamResponse:
            if arrived is not None:
                arrived.set()
            await self._wait_released()
            return web.Response(status=500)

        return self.then(action, times)

    def reset(self, times: int = 1) -> Upstream:
        """Drop the connection without answering."""

        async def action(request: web.Request) -> web.StreamResponse:
            assert request.transport is not None
            request.transport.abort()
            response = web.StreamResponse()
            return response

        return self.then(action, times)

    async def _wait_released(self) -> None:
        assert self._release is not None
        await self._release.wait()

    # ------------------------------------------------------------------ serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self.requests.append(
                Recorded(
                    request.method,
                    request.path,
                    dict(request.query),
                    {k.lower(): v for k, v in request.headers.items()},
                    body,
                    request.raw_path,
                )
            )
            action = self._script.popleft() if self._script else None
        if action is not None:
            return await action(request)
        return await self._default(request, body)

    async def _default(self, request: web.Request, body: bytes) -> web.StreamResponse:
        path = request.path
        if path.endswith("/models"):
            return web.Response(body=fixture_bytes("models.json"), content_type="application/json")
        if path.endswith("/embeddings"):
            return web.Response(body=fixture_bytes("embeddings.json"), content_type="application/json")
        if path.endswith("/chat/completions") and self.mode != "ok":
            data = json.loads(body)
            if self.mode == "hang":
                await self._wait_released()
            if self.mode in ("cut", "malformed") and data.get("stream"):
                response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await response.prepare(request)
                for event in sse_events("chat_stream_usage.sse")[:2]:
                    await response.write(event)
                if self.mode == "malformed":
                    await response.write(b'data: {"id": "chatcmpl-123", "choices": [{"delta": \n\n')
                    await response.write(b"data: [DONE]\n\n")
                    await response.write_eof()
                    return response
                assert request.transport is not None
                request.transport.abort()
                return response
            if self.mode == "429":
                return web.json_response(
                    {"error": {"message": "rate limited", "type": "rate_limit_error", "code": None}},
                    status=429,
                    headers={"Retry-After": "1"},
                )
            return web.json_response(
                {"error": {"message": "upstream trouble", "type": "server_error", "code": None}},
                status=500,
            )
        if path.endswith("/chat/completions"):
            data = json.loads(body)
            if data.get("stream"):
                with_usage = (data.get("stream_options") or {}).get("include_usage")
                name = "chat_stream_usage.sse" if with_usage else "chat_stream.sse"
                response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await response.prepare(request)
                for event in sse_events(name):
                    await response.write(event)
                await response.write_eof()
                return response
            return web.Response(body=fixture_bytes("chat_completion.json"), content_type="application/json")
        return web.Response(
            status=404,
            body=b'{"error":{"message":"no such route","type":"invalid_request_error",'
            b'"param":null,"code":null}}',
            content_type="application/json",
        )
