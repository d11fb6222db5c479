"""A TCP forwarder on 127.0.0.1 that a test can cut (connections refused and dropped) or stall
(connections accepted and kept, nothing forwarded: a network black hole): what a database outage
looks like to the gateway, without touching the shared server."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class TcpForwarder:
    def __init__(self, target_host: str, target_port: int, *, record: bool = False) -> None:
        self.target = (target_host, target_port)
        self.record = record
        self.sent = bytearray()  # with `record`: every byte the clients sent (to count commands)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()  # cleared while stalled
        self._flowing.set()
        self._connected = threading.Event()  # a client has connected at least once
        self._lose_after: bytes | None = None  # `lose_answer_to`: the request whose answer goes
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> TcpForwarder:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self._connected.set()
        await self._flowing.wait()  # a connection made while stalled hangs, unanswered
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        losing = False  # this connection's answers are lost from now on (`lose_answer_to`)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upward: bool) -> None:
            nonlocal losing
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    await self._flowing.wait()  # while stalled, bytes are held, never delivered
                    if upward:
                        if self.record:
                            self.sent += data
                        if self._lose_after is not None and self._lose_after in data:
                            self._lose_after, losing = None, True
                    elif losing:
                        continue
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def wait_for_connection(self, timeout: float) -> None:
        """Until a client has connected (stalled or not)."""
        if not self._connected.wait(timeout):
            raise TimeoutError(f"nothing connected to the forwarder within {timeout} s")

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""

        async def cut() -> None:
            assert self._server is not None
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            self._writers.clear()

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(10)

    def reopen(self) -> None:
        """Accept connections again, on the same port (after `cut`)."""

        async def reopen() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

        asyncio.run_coroutine_threadsafe(reopen(), self._loop).result(10)

    def lose_answer_to(self, marker: bytes) -> None:
        """Once: the next request whose bytes contain `marker` reaches the server, and its answer
        (and everything after it on that connection) never comes back — a reply lost on the way,
        after the server acted on the request."""
        self._loop.call_soon_threadsafe(setattr, self, "_lose_after", marker)

    def stall(self) -> None:
        """Stop forwarding: connections (open and new) stay up, and nothing gets through."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        """Forward again (after `stall`)."""
        self._loop.call_soon_threadsafe(self._flowing.set)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.cut()
        self.resume()

        async def close_all() -> None:
            for writer in self._writers:
                writer.transport.abort()
            self._writers.clear()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
