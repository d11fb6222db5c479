"""The prototype of a minimal keep-alive HTTP/1.1 client on asyncio + httptools.

turnout's own client (src/turnout/providers/http) grew from it."""

import asyncio

import httptools


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[bytes | None] | None = None
        self.status = asyncio.get_running_loop().create_future()
        self.keep = True

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        self.status.set_result(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        self.queue.put_nowait(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        self.keep = self.parser.should_keep_alive()
        self.queue.put_nowait(None)  # type: ignore[union-attr]

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        self.keep = False
        if self.queue is not None:
            self.queue.put_nowait(None)


class Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[_Conn] = []

    async def post(self, path: str, body: bytes, headers: str) -> tuple[int, "_Conn"]:
        loop = asyncio.get_running_loop()
        if self.idle:
            conn = self.idle.pop()
            conn.status = loop.create_future()
        else:
            conn = (await loop.create_connection(_Conn, self.host, self.port))[1]
        conn.queue = asyncio.Queue()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        conn.transport.writelines((head.encode(), body))  # type: ignore[union-attr]
        return await conn.status, conn

    async def chunks(self, conn: _Conn):
        while (chunk := await conn.queue.get()) is not None:  # type: ignore[union-attr]
            yield chunk
        if conn.keep:
            self.idle.append(conn)
