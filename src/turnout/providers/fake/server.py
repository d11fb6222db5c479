"""The fake upstream's HTTP server: OpenAI's wire format on 127.0.0.1, in turnout's own event loop.

It is a real server (requests go out through turnout's HTTP client and come back over a socket),
so its failures are real too: a hang is a silent socket, a reset is an aborted connection, a
truncated stream is a chunked body that never ends properly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import httptools
import orjson

from turnout.config.settings import FakeSettings
from turnout.domain.media import Form
from turnout.providers.fake import media, ranking, responses
from turnout.providers.fake.behaviour import BadDirective, Behaviour, behaviour_for

log = logging.getLogger("turnout.fake")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    529: "Overloaded",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class FakeUpstream:
    """Start with `await start()`; it answers until `await stop()`."""

    def __init__(self, settings: FakeSettings, name: str = "fake") -> None:
        self.settings = settings
        self.name = name
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)
        self._connections: set[_Connection] = set()
        self.port = 0

    async def start(self, host: str = "127.0.0.1") -> int:
        loop = asyncio.get_running_loop()
        # a restart takes the port it had, so clients see the same upstream come back
        port = self.settings.port or self.port or 0
        self._server = await loop.create_server(lambda: _Connection(self), host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                conn.abort()
            await self._server.wait_closed()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def next_id(self) -> str:
        return f"chatcmpl-fake{next(self._ids):06d}"

    def models(self) -> list[str]:
        return list(self.settings.models) or ["fake-model"]


class _Connection(asyncio.Protocol):
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.queue: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.upstream._connections.add(self)
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.upstream._connections.discard(self)
        if self.worker is not None:
            self.worker.cancel()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(
                400,
                {
                    "error": {
                        "message": "malformed HTTP request",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
                keep_alive=False,
            )

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = httptools.parse_url(self.url).path.decode("latin-1")
        self.queue.put_nowait((path, b"".join(self.body), self.parser.should_keep_alive()))
        self.url, self.body = b"", []

    async def _serve(self) -> None:
        try:
            while True:
                path, body, keep_alive = await self.queue.get()
                await self._handle(path, body, keep_alive)
                if not keep_alive:
                    self._close()
                    return
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug in the fake must not take the gateway down with it
            log.exception("fake upstream %s failed", self.upstream.name)
            self.abort()

    # ------------------------------------------------------------------ routing

    async def _handle(self, path: str, raw: bytes, keep_alive: bool) -> None:
        self.upstream.requests += 1
        if path.endswith("/models"):
            data = [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "turnout-fake"}
                for m in self.upstream.models()
            ]
            self._write(200, {"object": "list", "data": data}, keep_alive)
            return
        form = None
        try:
            form, request = _request_of(path, raw)
            b = behaviour_for(str(request.get("model", "")), self.upstream.settings)
        except (ValueError, BadDirective) as error:
            self._error(400, str(error), keep_alive)
            return
        failure = b.failing()
        stream = bool(request.get("stream")) and path.endswith("/chat/completions")
        if b.latency:
            await asyncio.sleep(b.latency)
        if failure == "hang":
            await asyncio.Event().wait()  # until the client goes away
        if failure == "reset" and not stream:
            self.abort()
            return
        if failure is not None and failure.isdigit():
            self._error(int(failure), f"fake failure {failure}", keep_alive, retry_after=b.retry_after)
            return
        if path.endswith("/chat/completions"):
            if stream:
                await self._stream(request, b, failure, keep_alive)
            elif failure == "malformed":
                body = b'{"id": "broken", "choices": ['
                self._head(200, "application/json", keep_alive, length=len(body))
                self._send(body)
            elif failure == "error_event":
                self._error(500, "the fake model failed", keep_alive)
            elif failure == "truncate":
                body = orjson.dumps(
                    responses.completion(request, b, ident=self.upstream.next_id(), created=int(time.time()))
                )
                self._head(200, "application/json", keep_alive, length=len(body))
                self._send(body[: len(body) // 2])
                self.abort()
            else:
                self._write(
                    200,
                    responses.completion(request, b, ident=self.upstream.next_id(), created=int(time.time())),
                    keep_alive,
                )
        elif form is not None or path.endswith(("/images/generations", "/audio/speech")):
            kind, body = media.answer(path, request, form)
            self._head(200, kind, keep_alive, length=len(body))
            self._send(body)
        else:
            self._answer_other(path, request, b, keep_alive)

    def _answer_other(self, path: str, request: dict[str, Any], b: Behaviour, keep_alive: bool) -> None:
        """Embeddings, rerank (vLLM's and Jina's `/rerank`) and moderations; 404 for the rest."""
        makers: dict[str, Callable[[], dict[str, Any]]] = {
            "/embeddings": lambda: responses.embeddings(request, b),
            "/rerank": lambda: ranking.rerank(request, b.model, self.upstream.next_id()),
            "/moderations": lambda: ranking.moderation(request, b.model, self.upstream.next_id()),
        }
        make = next((m for suffix, m in makers.items() if path.endswith(suffix)), None)
        if make is None:
            self._error(404, f"no route {path}", keep_alive)
            return
        try:
            answer = make()
        except ValueError as error:
            self._error(400, str(error), keep_alive)
            return
        self._write(200, answer, keep_alive)

    async def _stream(
        self, request: dict[str, Any], b: Behaviour, failure: str | None, keep_alive: bool
    ) -> None:
        self._head(200, "text/event-stream", keep_alive)
        content_chunks = 0
        for chunk in responses.chunks(request, b, ident=self.upstream.next_id(), created=int(time.time())):
            is_content = bool(chunk["choices"]) and chunk["choices"][0]["finish_reason"] is None
            if failure in ("reset", "truncate", "malformed", "error_event") and content_chunks >= b.after:
                if failure == "malformed":
                    self._chunk(b'data: {"id": "broken", "choices": [\n\n')
                elif failure == "error_event":
                    error = {
                        "error": {
                            "message": "the fake model failed mid-answer",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                    self._chunk(b"data: " + orjson.dumps(error) + b"\n\n")
                    self._chunk(b"")
                    return
                self.abort() if failure == "reset" else self._close()
                return
            self._chunk(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if is_content:
                content_chunks += 1
                if b.gap:
                    await asyncio.sleep(b.gap)
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    # ------------------------------------------------------------------ writing

    def _error(self, status: int, message: str, keep_alive: bool, retry_after: str | None = None) -> None:
        body = {
            "error": {
                "message": message,
                "type": _ERROR_TYPES.get(status, "server_error"),
                "param": None,
                "code": None,
            }
        }
        self._write(status, body, keep_alive, retry_after=retry_after)

    def _write(self, status: int, doc: Any, keep_alive: bool, retry_after: str | None = None) -> None:
        body = orjson.dumps(doc)
        self._head(status, "application/json", keep_alive, length=len(body), retry_after=retry_after)
        self._send(body)

    def _head(
        self,
        status: int,
        content_type: str,
        keep_alive: bool,
        *,
        length: int | None = None,
        retry_after: str | None = None,
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
            f"content-type: {content_type}",
            "content-length: " + str(length) if length is not None else "transfer-encoding: chunked",
        ]
        if retry_after:
            lines.append(f"retry-after: {retry_after}")
        if not keep_alive:
            lines.append("connection: close")
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _chunk(self, data: bytes) -> None:
        self._send(b"%x\r\n%s\r\n" % (len(data), data))

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.close()


def _request_of(path: str, raw: bytes) -> tuple[Form | None, dict[str, Any]]:
    """The request: its JSON body, or (a transcription) its form and the form's fields."""
    if path.endswith("/audio/transcriptions"):
        form = media.form_of(raw)
        return form, dict(form.fields)
    request = orjson.loads(raw)
    if not isinstance(request, dict):
        raise ValueError("the body must be a JSON object")
    return None, request
