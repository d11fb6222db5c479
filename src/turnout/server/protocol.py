"""The HTTP edge: uvicorn's httptools protocol with bounds that hold before anything is authenticated.

A request's head is limited in size and field count and must be complete within a deadline; its
body must keep arriving at a minimum rate (`server.limits`). Refusals are OpenAI-format errors with
`connection: close`, written here: the application never sees a request whose head was refused,
and sees `http.disconnect` when its body is cut off.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Set
from typing import Any, ClassVar, cast

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from turnout.config.settings import HttpLimits
from turnout.domain.errors import HeadersTooLarge, MalformedRequest, RequestTimeout, TurnoutError, UriTooLong
from turnout.server.errors import error_body

log = logging.getLogger("turnout.edge")

# What a connection waits for.
_IDLE = 0  # nothing of ours: between requests, or a request read in full and being answered
_HEAD = 1  # the rest of a request's head (request line and header fields)
_BODY = 2  # the rest of a request's body
_CLOSING = 3  # nothing more: a refusal was written, what still arrives is discarded

# After a refusal the connection stays open about this long, reading and discarding, so that a
# client still sending its request reads the answer instead of a reset (Go's server waits 500 ms).
LINGER_SECONDS = 1.0
_NEVER = sys.maxsize


def edge_protocol(limits: HttpLimits) -> type[EdgeProtocol]:
    """The protocol class uvicorn builds each connection with (its `http=`): one per server, bound
    to `limits` and to one watch over its connections' deadlines."""

    class BoundEdgeProtocol(EdgeProtocol):
        pass

    BoundEdgeProtocol.limits = limits
    BoundEdgeProtocol.watch = DeadlineWatch(min(limits.header_timeout, limits.body_timeout) / 4)
    return BoundEdgeProtocol


class DeadlineWatch:
    """One timer per server, checking every waiting connection each `tick`: cheaper than a timer
    per connection or per request (arming and cancelling a uvloop timer costs about 3 µs), at the
    price of deadlines kept to within a tick."""

    def __init__(self, tick: float) -> None:
        self.tick = min(1.0, max(0.05, tick))
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, loop: asyncio.AbstractEventLoop, connections: Set[asyncio.Protocol]) -> None:
        """Make sure the watch runs (it stops by itself once no connection is left)."""
        if self._timer is None:
            self._timer = loop.call_later(self.tick, self._check, loop, connections)

    def _check(self, loop: asyncio.AbstractEventLoop, connections: Set[asyncio.Protocol]) -> None:
        self._timer = None
        if not connections:
            return
        now = loop.time()
        for connection in list(connections):  # a refusal closes, and closing changes the set
            if isinstance(connection, EdgeProtocol) and connection.waiting != _IDLE:
                connection.check(now)
        self._timer = loop.call_later(self.tick, self._check, loop, connections)


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; `data_received` answers with `error`."""

    def __init__(self, error: TurnoutError) -> None:
        super().__init__(error.message)
        self.error = error


class _Discard:
    """The parser of a connection being closed: what still arrives is dropped unread."""

    def feed_data(self, data: bytes) -> None:
        pass


_DISCARD = _Discard()


class EdgeProtocol(HttpToolsProtocol):
    """One client connection. Over uvicorn's, a read costs one addition and two comparisons, a
    request two clock reads and a size check per header field; no timer is armed."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    watch: ClassVar[DeadlineWatch] = DeadlineWatch(1.0)

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._max_head = self.limits.max_header_bytes
        self._max_headers = self.limits.max_headers
        self.waiting = _HEAD
        self._since = 0.0  # when the current head's deadline started, or its body began
        self._received = 0  # bytes received on this connection
        # `_received` beyond which the current head is too large (give or take one read); none
        # while a body is read
        self._head_ends = self._max_head
        self._head_room = 0  # what the current head may still grow by, as parsed (URL, fields)
        self._began = False  # a byte of the current request has arrived
        self._body_from = 0  # `_received` when the current body began

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that sends nothing is not an idle keep-alive one: its clock runs from now.
        self._since = self.loop.time()
        self.watch.watch(self.loop, self.connections)

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting = _IDLE
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
                return
            self._unsupported_upgrade_warning()
        except httptools.HttpParserError as error:
            refused = error.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.error)
            else:
                self._refuse(MalformedRequest("The request is not valid HTTP/1.1."))
            return
        if self._received > self._head_ends:
            # one header line that never ends grows inside the parser, unseen by on_header
            self._refuse(self._head_too_large())

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._began = True
        if self.waiting != _HEAD:  # kept alive: this head's clock starts with its first byte
            self.waiting = _HEAD
            self._since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url  # what uvicorn's on_url does
        self._head_room = self._max_head - len(self.url)
        if len(self.url) > self.limits.max_request_line:
            limit = self.limits.max_request_line
            raise _Refused(UriTooLong(f"The request URL is longer than the limit of {limit} bytes."))

    def on_header(self, name: bytes, value: bytes) -> None:
        # trailers count too: a chunked body's endless trailer fields are refused like headers
        self._head_room -= len(name) + len(value) + 4  # ": " and CRLF
        if self._head_room < 0:
            raise _Refused(self._head_too_large())
        # what uvicorn's own on_header does (inlined: this runs for every header of every request)
        name = name.lower()
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        # counted once here: one read (at most 256 KiB) holds only so many, and the head's size is
        # checked after every read
        if len(self.headers) > self._max_headers:
            raise _Refused(HeadersTooLarge(f"The request has more than {self._max_headers} header fields."))
        self.waiting = _BODY
        self._since = self.loop.time()
        self._body_from = self._received
        self._head_ends = _NEVER
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.waiting = _IDLE
        self._began = False
        self._head_ends = self._received + self._max_head
        super().on_message_complete()

    # ------------------------------------------------------------------ deadlines

    def check(self, now: float) -> None:
        """Called by the watch while this connection waits for something."""
        if self.transport.is_closing():
            return
        limits = self.limits
        if self.waiting == _HEAD:
            if now < self._since + limits.header_timeout:
                return
            if not self._began:
                log.debug("closed a connection from %s that sent nothing", _peer(self.client))
                self.transport.close()
                return
            seconds = limits.header_timeout
            self._refuse(RequestTimeout(f"The request's headers did not arrive within {seconds:g} s."))
        elif self.waiting == _BODY:
            if self.flow.read_paused:
                # turnout holds the client back (a pipelined request waits for the one before it,
                # or the application is slow to read): the body's allowance starts again
                self._since, self._body_from = now, self._received
                return
            due = self._since + limits.body_timeout
            if limits.body_min_rate:
                due += (self._received - self._body_from) / limits.body_min_rate
            if now < due:
                return
            self._refuse(
                RequestTimeout(
                    f"The request body arrived too slowly (allowed: {limits.body_timeout:g} s, "
                    f"and one more second for every {limits.body_min_rate} bytes received)."
                )
            )
        elif self.waiting == _CLOSING and now >= self._since + LINGER_SECONDS:
            self.transport.close()

    # ------------------------------------------------------------------ refusing

    def _head_too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(f"The request's headers are larger than the limit of {self._max_head} bytes.")

    def _refuse(self, error: TurnoutError) -> None:
        """Answer `error` if no other response is on the wire, and close the connection."""
        waiting, self.waiting = self.waiting, _CLOSING
        self._head_ends = _NEVER
        cycle: RequestResponseCycle | None = self.cycle  # None until the first request
        if waiting == _BODY:  # the request refused is `cycle`'s; pipelined, another one is answering
            current, busy = cycle, bool(self.pipeline)
        else:  # a request without a cycle yet: `cycle`, if any, is the previous one
            current, busy = None, cycle is not None and not cycle.response_complete
        if current is not None and not current.response_complete:
            current.disconnected = True  # its application's next receive() is http.disconnect
            current.message_event.set()
        log.info("refused a request from %s: %d %s", _peer(self.client), error.status, error.message)
        if busy or (current is not None and current.response_started):
            self.transport.close()
            return
        body = error_body(error)
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-type: application/json\r\nconnection: close\r\n")
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        if not self.transport.can_write_eof():  # TLS
            self.transport.close()
            return
        self.transport.write_eof()  # the answer, then FIN; the client's own FIN ends it sooner
        self.parser = cast(httptools.HttpRequestParser, _DISCARD)
        self.flow.resume_reading()  # drain what the client still sends, so it gets to read this
        self._since = self.loop.time()  # the watch closes the connection after LINGER_SECONDS


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown address"
