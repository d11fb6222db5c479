"""One keep-alive HTTP/1.1 connection to an upstream, and the response read from it.

Chosen over aiohttp/httpx by measurement (docs/architecture.md): on the benchmark's request this
costs ~50 µs of CPU per call against ~200 µs for aiohttp's client. Responses are parsed by
httptools (the parser uvicorn uses). Every phase of the exchange is timed by one timer that is
re-armed lazily, so a hung upstream always ends in `UpstreamTimeout`, never a stuck client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import zlib
from collections.abc import AsyncIterator, Callable
from typing import cast

import httptools

from turnout.domain.errors import (
    UpstreamAnswerCut,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStaleConnection,
    UpstreamTimeout,
)
from turnout.providers.http.inflate import Inflater

# Pause reading the upstream when this much of its body is waiting for the client; resume below
# LOW_WATER. With the client connection's own write buffer, a stream holds well under 1 MiB however
# slowly its client reads; the upstream is held back by TCP meanwhile.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
INFLATE_STEP = 64 * 1024  # a compressed body is decompressed this much at a time
# Pieces of the body already here are handed on joined, up to this many bytes: one stream read
# decoded, relayed and written once, with what it holds (decoded chunks) kept small.
JOIN_UP_TO = 16 * 1024


class Deadlines:
    """When each phase of one exchange must end, on the event loop's clock."""

    __slots__ = ("first_byte", "idle", "total")

    def __init__(self, now: float, first_byte: float, idle: float, total: float) -> None:
        self.total = now + total
        self.first_byte = min(now + first_byte, self.total)
        self.idle = idle


class Connection(asyncio.Protocol):
    """An upstream connection. It carries one exchange at a time and returns itself to its pool."""

    __slots__ = ("_release", "closed", "idle_since", "loop", "parser", "response", "reused", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop, release: Callable[[Connection], None]) -> None:
        self.loop = loop
        self._release = release
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.response: UpstreamResponse | None = None

    # ------------------------------------------------------------------ lifecycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and not response.complete:
            if self.reused and not response.got_bytes:
                # the upstream closed it while idle, or crashed after reading the request: nothing
                # tells the two apart, so it is an attempt like any other (never resent silently)
                response.fail(
                    UpstreamStaleConnection(
                        "the upstream closed a reused connection before answering the request"
                    )
                )
            else:
                response.fail(
                    UpstreamConnectionError(
                        "the upstream closed the connection before the response was complete"
                    )
                )

    def eof_received(self) -> bool:
        if self.response is None:
            # the upstream closed an idle keep-alive connection: never hand it out again (the
            # transport closes itself, but its pool may look before `connection_lost` runs)
            self.closed = True
            return False
        with contextlib.suppress(httptools.HttpParserError):
            self.parser.feed_data(b"")  # lets a close-delimited body finish
        return False

    @property
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------ one exchange

    def send(self, head: bytes, body: bytes, deadlines: Deadlines) -> UpstreamResponse:
        assert self.transport is not None
        self.response = response = UpstreamResponse(self, deadlines)
        self.parser = httptools.HttpResponseParser(self)
        if len(body) < 16384:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
        return response

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes while idle: the server is not speaking HTTP/1.1 as agreed
            self.close()
            return
        response.last_activity = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            response.fail(UpstreamProtocolError("the upstream tried to switch protocols"))
            self.close()
        except httptools.HttpParserError:
            response.fail(UpstreamProtocolError("the upstream sent a malformed HTTP response"))
            self.close()

    # httptools callbacks ------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.parser.get_status_code()
        response.keep_alive = self.parser.should_keep_alive()
        response.got_bytes = True
        response.headers_received()

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response.feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        response.finish()

    # ------------------------------------------------------------------ flow control

    def pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def exchange_done(self, response: UpstreamResponse, reusable: bool) -> None:
        """The consumer is finished with `response`: reuse the connection or drop it."""
        if self.response is not response:
            return
        self.response = None
        if reusable and self.usable:
            self.reused = True
            self.idle_since = self.loop.time()
            self._release(self)
        else:
            self.close()


class UpstreamResponse:
    """An upstream's answer: status and headers first, then the body in full or chunk by chunk."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_deadlines",
        "_error",
        "_headers_waiter",
        "_inflater",
        "_loop",
        "_paused",
        "_released",
        "_timer",
        "_waiter",
        "complete",
        "got_body_byte",
        "got_bytes",
        "headers",
        "keep_alive",
        "last_activity",
        "status",
    )

    def __init__(self, conn: Connection, deadlines: Deadlines) -> None:
        self._conn = conn
        self._loop = conn.loop
        self._deadlines = deadlines
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.got_bytes = False
        self.got_body_byte = False
        self.complete = False
        self.last_activity = self._loop.time()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._headers_waiter: asyncio.Future[None] | None = self._loop.create_future()
        self._inflater: Inflater | None = None
        self._released = False
        self._timer = self._loop.call_at(deadlines.first_byte, self._on_timer)

    # ------------------------------------------------------------------ fed by the connection

    def headers_received(self) -> None:
        encoding = self.header(b"content-encoding")
        if encoding:
            kind = encoding.strip().lower()
            if kind in (b"gzip", b"x-gzip", b"deflate"):
                self._inflater = Inflater(gzip=kind != b"deflate")
            elif kind != b"identity":
                self.fail(
                    UpstreamProtocolError(
                        f"the upstream used an unsupported content-encoding ({kind.decode('latin-1')[:20]})"
                    )
                )
                self._conn.close()
                return
        if self._headers_waiter is not None and not self._headers_waiter.done():
            self._headers_waiter.set_result(None)

    def feed(self, body: bytes) -> None:
        inflater = self._inflater
        if inflater is None:
            if body and self.got_body_byte:  # `_append`'s usual case inline: once a chunk of a stream
                self._chunks.append(body)
                self._buffered += len(body)
            else:
                self._append(body)
        else:
            inflater.feed(body)
            self._inflate(inflater)
        if not self._paused and (self._buffered > HIGH_WATER or (inflater is not None and inflater.pending)):
            self._paused = True
            self._conn.pause()
        self._wake()

    def _append(self, body: bytes) -> None:
        if not body:
            return
        if not self.got_body_byte:
            self.got_body_byte = True
            self._timer.cancel()
            d = self._deadlines
            self._timer = self._loop.call_at(min(self.last_activity + d.idle, d.total), self._on_timer)
        self._chunks.append(body)
        self._buffered += len(body)

    def _inflate(self, inflater: Inflater) -> None:
        """Decompress what has arrived until HIGH_WATER bytes wait to be read; the rest stays
        compressed (and the upstream paused) until the reader catches up."""
        try:
            while inflater.pending and self._buffered <= HIGH_WATER:
                self._append(inflater.take(INFLATE_STEP))
        except zlib.error:
            self.fail(UpstreamProtocolError("the upstream sent a corrupt compressed body"))
            self._conn.close()

    def finish(self) -> None:
        self.complete = True
        self.got_body_byte = True
        self._timer.cancel()
        self._wake()

    def fail(self, error: BaseException) -> None:
        if self.complete or self._error is not None:
            return
        self._error = error
        self._timer.cancel()
        if self._headers_waiter is not None and not self._headers_waiter.done():
            self._headers_waiter.set_exception(error)
            self._headers_waiter.exception()  # retrieved here; raised again by the reader
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ timing

    def _on_timer(self) -> None:
        now = self._loop.time()
        d = self._deadlines
        if now >= d.total:
            self._time_out("total")
        elif not self.got_body_byte:
            if now >= d.first_byte:
                self._time_out("first_byte")
            else:
                self._timer = self._loop.call_at(d.first_byte, self._on_timer)
        elif now >= (idle_end := self.last_activity + d.idle):
            self._time_out("idle")
        else:
            self._timer = self._loop.call_at(min(idle_end, d.total), self._on_timer)

    def _time_out(self, phase: str) -> None:
        descriptions = {
            "first_byte": "did not start answering in time",
            "idle": "stopped sending in the middle of the response",
            "total": "did not finish the response in time",
        }
        self.fail(UpstreamTimeout(f"the upstream {descriptions[phase]} ({phase} timeout)", phase=phase))
        self._conn.close()

    # ------------------------------------------------------------------ read by the consumer

    async def wait_headers(self) -> None:
        waiter = self._headers_waiter
        if waiter is not None:
            try:
                await waiter
            finally:
                self._headers_waiter = None
        if self._error is not None:
            raise self._error

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def next_chunk(self) -> bytes | None:
        """What has arrived of the body since the last call, in one piece (waiting for the next
        piece if nothing has); None once it is complete. The caller must `release()` the response
        when done with it.

        Pieces already here are joined (up to JOIN_UP_TO bytes): a stream whose events came in one
        read (its upstream a little ahead of turnout, as under load) is then decoded, relayed and
        written to the client once, not once per event."""
        while True:
            inflater = self._inflater
            chunks = self._chunks
            if inflater is not None and not chunks and inflater.pending:
                self._inflate(inflater)
            if chunks:
                if len(chunks) == 1:
                    chunk = chunks.popleft()
                elif self._buffered <= JOIN_UP_TO:
                    chunk = b"".join(chunks)
                    chunks.clear()
                else:
                    chunk = self._join_some(chunks)
                self._buffered -= len(chunk)
                if self._paused and self._buffered < LOW_WATER and not (inflater and inflater.pending):
                    self._paused = False
                    self._conn.resume()
                return chunk
            if self._error is not None:
                raise self._error
            if self.complete:
                if inflater is not None:  # the body's last bytes, if the compressor kept any back
                    self._inflater = None
                    tail = inflater.flush()
                    if tail:
                        return tail
                return None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    @staticmethod
    def _join_some(chunks: collections.deque[bytes]) -> bytes:
        """The first pieces, up to JOIN_UP_TO bytes (at least one piece), joined."""
        parts = [chunks.popleft()]
        size = len(parts[0])
        while chunks and size + len(chunks[0]) <= JOIN_UP_TO:
            piece = chunks.popleft()
            parts.append(piece)
            size += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read(self, limit: int) -> bytes:
        """The whole body (at most `limit` bytes), then the connection goes back to its pool."""
        parts: list[bytes] = []
        try:
            await self._collect(parts, limit)
        finally:
            self.release()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read_answer(self, limit: int, provider: str) -> bytes:
        """The body of a 2xx answer the provider generated (a non-streamed chat completion), read
        as `read` does; but when it breaks off, `UpstreamAnswerCut` with what did arrive: the
        provider made (and bills) that answer, so it must not be asked again elsewhere."""
        parts: list[bytes] = []
        try:
            await self._collect(parts, limit)
        except UpstreamError as error:
            if not 200 <= self.status < 300:
                raise
            received = b"".join(parts)
            raise UpstreamAnswerCut(
                f"The provider '{provider}' answered, but its answer was cut off before it was "
                f"complete ({error.message}; {len(received)} bytes of it arrived). turnout did not "
                "send the request again: the provider had already generated the answer, and bills "
                "for it.",
                received=received,
                deployment=provider,
            ) from None
        finally:
            self.release()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _collect(self, parts: list[bytes], limit: int) -> None:
        """Append the body's pieces to `parts` until it is complete (at most `limit` bytes)."""
        size = 0
        while (chunk := await self.next_chunk()) is not None:
            size += len(chunk)
            if size > limit:
                raise UpstreamProtocolError(f"the upstream's response is larger than {limit} bytes")
            parts.append(chunk)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives. Stopping early drops the connection (it is mid-response)."""
        try:
            while (chunk := await self.next_chunk()) is not None:
                yield chunk
        finally:
            self.release()

    def release(self) -> None:
        """Give the connection back (if the exchange ended cleanly) or drop it. A reader still
        waiting for the rest of the body is woken with an error, never left waiting."""
        if self._released:
            return
        self._released = True
        self._timer.cancel()
        clean = self.complete and self._error is None and self.keep_alive
        if clean and self._paused:  # its next exchange must be read
            self._conn.resume()
        if not self.complete and self._error is None:
            self._error = UpstreamConnectionError("the upstream call was abandoned before it finished")
            self._wake()
        self._conn.exchange_done(self, clean)
