"""One HTTP exchange over ASGI: reads the request (within its size limit) and writes the answer.

It is the pipeline's `Inbound` and `Responder`. Bodies over the limit are refused with 413 as
soon as that is known (from Content-Length, or while reading) and the connection is closed, so
the rest is never read. Streams are relayed chunk by chunk, each flushed at once; a client that
goes away stops the upstream call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from turnout.domain.completions import Chunk, encoder
from turnout.domain.errors import (
    AuthenticationFailed,
    RequestTooLarge,
    TurnoutError,
    UnsupportedMediaType,
    UpstreamAnswerCut,
    UpstreamError,
    UpstreamRejected,
)
from turnout.domain.json_body import loads
from turnout.domain.rate_limits import Quota
from turnout.domain.steering_fields import refuse_steering_fields
from turnout.observability.redaction import hide_addresses
from turnout.providers.base import ChatResult
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.sse import DONE
from turnout.routing.relay import RelayStream
from turnout.routing.values import NO_STEERING, Served, Steering
from turnout.server.auth_guard import AuthGuard
from turnout.server.errors import error_body
from turnout.server.errors import error_event as openai_error_event

log = logging.getLogger("turnout.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = (b"content-type", b"application/json")
KEEP_ALIVE_BODY = 64 * 1024  # a refused request's body up to this size is taken if it comes at once:
KEEP_ALIVE_WAIT = 0.01  # within this many seconds (then its connection can serve the next request)
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Framing(Protocol):
    """How another API writes a stream: (frame a batch of chunks, the end, a terminal error)."""

    def parts(
        self,
    ) -> tuple[
        Callable[[list[Chunk]], bytes], bytes | Callable[[], bytes], Callable[[TurnoutError], bytes]
    ]: ...


class ClientGone(Exception):
    """The client disconnected before the request was read."""


def _frame(batch: list[Chunk]) -> bytes:
    """Chunks as SSE events, in one buffer (one write): an upstream's own JSON as it came, a
    translated chunk encoded here, once."""
    encode = encoder.encode
    if len(batch) == 1:
        chunk = batch[0]
        raw = chunk.raw
        return b"data: " + (encode(chunk.view) if raw is None else raw) + b"\n\n"
    datas = [encode(c.view) if c.raw is None else c.raw for c in batch]
    return b"data: " + b"\n\ndata: ".join(datas) + b"\n\n"


_ID_PREFIX = "req_" + os.urandom(6).hex()  # random per process: ids never repeat across restarts
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """Unique per request without a syscall: a per-process random prefix and a counter."""
    return f"{_ID_PREFIX}{next(_id_counter):010x}"


class Exchange:
    api = "chat"  # for the ledger: the OpenAI endpoints' exchanges (other APIs wrap one)

    __slots__ = (
        "_body_read",
        "_disconnected",
        "_known_headers",
        "guard",
        "max_body",
        "quota",
        "quota_headers",
        "receive",
        "render_error",
        "request_id",
        "scope",
        "send",
        "started",
    )

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, max_body: int, guard: AuthGuard | None = None
    ) -> None:
        self.scope = scope
        self.guard = guard  # counts failed authentications per client address (None: no limit)
        self.receive = receive
        self.send = send
        self.max_body = max_body
        self.request_id = new_request_id()
        self.started = False
        self._disconnected = False
        self._body_read = False
        self._known_headers: dict[bytes, bytes] | None = None
        self.render_error = error_body  # the API's own error format (Anthropic's on /v1/messages)
        self.quota: Quota | None = None  # the rate limits it was admitted (or refused) under
        self.quota_headers = Quota.openai_headers  # ... as the API's own headers name them

    # ------------------------------------------------------------------ request

    def _known(self) -> dict[bytes, bytes]:
        """The headers turnout reads on every request, in one pass (the first of each)."""
        known = self._known_headers
        if known is None:
            known = {}
            for key, value in self.scope["headers"]:
                if key in KNOWN_HEADERS and key not in known:
                    known[key] = bytes(value)
            self._known_headers = known
        return known

    def header(self, name: bytes) -> bytes | None:
        if name in KNOWN_HEADERS:
            return self._known().get(name)
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None

    def credential(self) -> str | None:
        """The API key: `Authorization: Bearer KEY`, else `x-api-key`, else `api-key` (Anthropic and
        Azure clients send those). A client that failed to authenticate too often lately is
        refused here (429), before its key is looked at."""
        known = self._known()
        key = None
        authorization = known.get(b"authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(b" ")
            token = token.strip()
            if scheme.lower() == b"bearer" and token:
                key = token.decode("latin-1")
        else:
            other = known.get(b"x-api-key") or known.get(b"api-key")
            if other is not None:
                key = other.decode("latin-1").strip() or None
        if key is not None and self.guard is not None:
            self.guard.check(self.scope)
        return key

    def steering(self) -> Steering:
        """The client's routing wishes: `x-turnout-deployment` pins a deployment by name,
        `x-turnout-tags` (comma-separated) keeps to deployments carrying every tag."""
        known = self._known()
        pinned, tagged = known.get(b"x-turnout-deployment"), known.get(b"x-turnout-tags")
        if pinned is None and tagged is None:
            return NO_STEERING
        deployment = None if pinned is None else pinned.decode("latin-1").strip() or None
        tags: frozenset[str] = frozenset()
        if tagged is not None:
            tags = frozenset(t for t in tagged.decode("latin-1").replace(" ", "").split(",") if t)
        if deployment is None and not tags:
            return NO_STEERING
        return Steering(deployment, tags)

    def trace_context(self) -> tuple[str | None, str | None]:
        """The client's W3C trace context: its `traceparent` and `tracestate` headers."""
        parent, state = self.header(b"traceparent"), self.header(b"tracestate")
        return (
            None if parent is None else parent.decode("latin-1"),
            None if state is None else state.decode("latin-1"),
        )

    def native(self) -> None:
        """OpenAI-format requests need no native form: same-format deployments get the body as is."""

    async def body(self, *, json_only: bool = True) -> bytes:
        """The request body (JSON, but for a pass-through's), within the size limit."""
        length = self.header(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise self._too_large()
        if length != b"0" and json_only:
            self._check_json_type()
        self._body_read = True
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body:
                    raise self._too_large()
                parts.append(chunk)
            if not message.get("more_body", False):
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _body_unread(self) -> bool:
        """Was the request refused before its body was read (whose rest is then never read: the
        connection closes after the answer)?"""
        if self._body_read:
            return False
        length = self.header(b"content-length")
        return (length is not None and length != b"0") or self.header(b"transfer-encoding") is not None

    async def _body_arrived(self) -> bool:
        """Take the body of a refused request if it arrives at once (a small one sent right behind
        its head, as SDKs send them), so that the connection stays open for the client's next
        request (its retry after a 429 or 503, say) instead of a new connection each time. A body
        that has not arrived within `KEEP_ALIVE_WAIT` is not waited for: the connection closes."""
        length = self.header(b"content-length")
        if self.header(b"transfer-encoding") is not None or length is None or not length.isdigit():
            return False
        if self.header(b"expect") is not None:  # reading it would ask the client for it (100 Continue)
            return False
        if int(length) > KEEP_ALIVE_BODY:
            return False
        self._body_read = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KEEP_ALIVE_WAIT
        while True:
            try:
                message = await asyncio.wait_for(self.receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                return False
            if message["type"] != "http.request":
                return False
            if not message.get("more_body", False):
                return True

    def _too_large(self) -> RequestTooLarge:
        return RequestTooLarge(f"The request body is larger than the limit of {self.max_body} bytes.")

    def _check_json_type(self) -> None:
        """A body declared as something else than JSON is refused (415) before it is read; none
        declared is accepted (some clients send none)."""
        declared = self.header(b"content-type")
        if declared is None or is_json_type(declared):
            return
        shown = declared.decode("latin-1").split(";", 1)[0].strip()[:100]
        raise UnsupportedMediaType(
            f"The request body must be JSON ('Content-Type: application/json'), not '{shown}'.",
            param="Content-Type",
        )

    async def json(self) -> Any:
        """The body decoded, within turnout's limits for JSON (json_body), with no field that would
        steer the upstream (steering_fields)."""
        body = loads(await self.body())
        refuse_steering_fields(body)
        return body

    # ------------------------------------------------------------------ response

    def rate_limited(self, quota: Quota) -> None:
        self.quota = quota

    def response_headers(self, served: Served | None) -> list[tuple[bytes, bytes]]:
        headers = [(b"x-request-id", self.request_id.encode())]
        if self.quota is not None:
            headers += self.quota_headers(self.quota)
        if served is not None:
            headers.append((b"x-turnout-deployment", served.target.label.encode("ascii", "replace")))
            headers.append((b"x-turnout-attempts", str(served.attempts).encode()))
            if served.resumable:
                headers.append((b"x-turnout-stream-resume", b"enabled"))
            if served.hedged:
                headers.append((b"x-turnout-hedged", b"true"))
        return headers

    async def send_json(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.started = True
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [JSON_TYPE, *self.response_headers(None), *(headers or ())],
            }
        )
        await self.send({"type": "http.response.body", "body": body})

    async def answer(self, body: bytes, served: Served) -> None:
        self.started = True
        await self.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [JSON_TYPE, *self.response_headers(served)],
            }
        )
        await self.send({"type": "http.response.body", "body": body})

    async def relay(self, response: UpstreamResponse, content_type: bytes | None = None) -> None:
        """An upstream's 2xx answer passed on as it arrives (a file's content), with its content type
        (or `content_type` where it sent none); the connection is released at the end."""
        try:
            kind = response.header(b"content-type") or content_type or b"application/octet-stream"
            self.started = True
            headers = [(b"content-type", kind), *self.response_headers(None)]
            await self.send({"type": "http.response.start", "status": 200, "headers": headers})
            while (chunk := await response.next_chunk()) is not None:
                await self.send({"type": "http.response.body", "body": chunk, "more_body": True})
            await self.send({"type": "http.response.body", "body": b""})
        finally:
            response.release()

    async def answer_chat(self, result: ChatResult, served: Served) -> None:
        """A chat answer as OpenAI JSON: the upstream's bytes, or the typed answer encoded once."""
        await self.answer(result.body, served)

    async def answer_native(self, body: bytes, served: Served) -> None:
        await self.answer(body, served)

    async def error(self, error: TurnoutError) -> None:
        if isinstance(error, AuthenticationFailed) and error.code != "missing_api_key" and self.guard:
            self.guard.failed(self.scope)  # a key was tried and refused
        if self.started:
            return
        error = _for_client(error, self.request_id)
        headers = error.headers()
        if isinstance(error, RequestTooLarge) or (self._body_unread() and not await self._body_arrived()):
            headers = [*headers, (b"connection", b"close")]  # do not read the rest of the body
        if error.status == 401:
            headers = [*headers, (b"www-authenticate", b'Bearer realm="turnout"')]
        if error.attempts:
            headers = [*headers, (b"x-turnout-attempts", str(error.attempts).encode())]
            if error.attempts > 1 and not isinstance(error, UpstreamAnswerCut):  # (says so itself)
                # turnout has already retried and failed over: an SDK retrying on top would only
                # multiply the attempts (the official SDKs obey this header)
                headers = [*headers, (b"x-should-retry", b"false")]
        await self.send_json(error.status, self.render_error(error), headers)

    async def stream(self, stream: RelayStream, served: Served, framing: Framing | None = None) -> None:
        """Relay `stream` as SSE (OpenAI's framing unless another API's is given). The edge only
        frames: the stream has accounted for itself by the time `rest` ends."""
        frame, end, error_event = (_frame, DONE, openai_error_event) if framing is None else framing.parts()
        self.started = True
        send = self.send
        watcher = asyncio.get_running_loop().create_task(self._watch_disconnect(stream))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*SSE_HEADERS, *self.response_headers(served)],
                }
            )
            if stream.first:
                await send({"type": "http.response.body", "body": frame(stream.first), "more_body": True})
            try:
                async for batch in stream.rest:
                    await send({"type": "http.response.body", "body": frame(batch), "more_body": True})
            except TurnoutError as error:
                if not self._disconnected:
                    log.warning("stream %s failed after its first byte: %s", self.request_id, error.message)
                    error = _for_client(error, self.request_id)
                    await send({"type": "http.response.body", "body": error_event(error)})
                return
            if not self._disconnected:
                await send({"type": "http.response.body", "body": end() if callable(end) else end})
        finally:
            watcher.cancel()
            await stream.aclose()

    async def _watch_disconnect(self, stream: RelayStream) -> None:
        """Wait for the client to go away; then stop the upstream (its tokens cost money) and
        make sure the stream is never continued for nobody."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    self._disconnected = True
                    await stream.abandon()
                    return


KNOWN_HEADERS = frozenset(
    {
        b"authorization",
        b"x-api-key",
        b"api-key",
        b"content-length",
        b"content-type",
        b"transfer-encoding",
        b"x-turnout-deployment",
        b"x-turnout-tags",
    }
)


def is_json_type(content_type: bytes) -> bool:
    """`application/json` or `application/<anything>+json`, with any parameters (charset...)."""
    media = content_type.split(b";", 1)[0].strip().lower()
    if not media:
        return True  # an empty header says as little as none
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def _for_client(error: TurnoutError, request_id: str) -> TurnoutError:
    """An upstream's error with the addresses of upstreams removed from what it relays (its message,
    and the type, param and code it named); the error as it came (its credentials already
    redacted) goes to the log with the request id."""
    if isinstance(error, UpstreamError | UpstreamRejected):
        relayed = (error.message, error.error_type, error.param, error.code)
        message, error_type = hide_addresses(error.message), hide_addresses(error.error_type)
        param = None if error.param is None else hide_addresses(error.param)
        code = None if error.code is None else hide_addresses(error.code)
        if (message, error_type, param, code) != relayed:
            log.warning(
                "request %s: upstream error (its addresses hidden): %s (type %s, param %s, code %s)",
                request_id,
                *relayed,
            )
            error.message, error.error_type, error.param, error.code = message, error_type, param, code
    return error


class WrappedExchange:
    """The base of another API's exchange (Anthropic's Messages, OpenAI's Responses): the request
    as the one HTTP exchange reads it, its answers written through it."""

    api = ""

    def __init__(self, x: Exchange) -> None:
        self.x = x

    @property
    def request_id(self) -> str:
        return self.x.request_id

    def credential(self) -> str | None:
        return self.x.credential()

    def steering(self) -> Steering:
        return self.x.steering()

    def rate_limited(self, quota: Quota) -> None:
        self.x.rate_limited(quota)

    def trace_context(self) -> tuple[str | None, str | None]:
        return self.x.trace_context()

    async def answer(self, body: bytes, served: Served) -> None:
        await self.x.answer(body, served)

    async def answer_native(self, body: bytes, served: Served) -> None:
        await self.x.answer(body, served)
