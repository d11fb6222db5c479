"""turnout's upstream HTTP client against real servers on 127.0.0.1: keep-alive, stale connections,
compression, chunked bodies, backpressure and every timeout phase."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from turnout.config.settings import Timeouts
from turnout.domain.errors import (
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStaleConnection,
    UpstreamTimeout,
)
from turnout.providers.http.client import Endpoint, HttpClient

from support.upstream import Upstream

FAST = Timeouts(connect=2, first_byte=2, idle=2, total=5)


@pytest.fixture
def server() -> Iterator[Upstream]:
    up = Upstream().start()
    yield up
    up.stop()


def _endpoint(up: Upstream, path: str = "/v1/chat/completions") -> Endpoint:
    return Endpoint("POST", up.root_url + path, [("content-type", "application/json")])


async def test_keep_alive_reuses_one_connection(server: Upstream) -> None:
    peers: list[object] = []

    async def record(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.json_response({"ok": True})

    server.then(record, times=5)
    client = HttpClient()
    for _ in range(5):
        response = await client.send(_endpoint(server), b"{}", FAST)
        assert await response.read(1024) == b'{"ok": true}'
    await client.aclose()
    assert len(set(peers)) == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced(server: Upstream) -> None:
    async def close_after(request: web.Request) -> web.StreamResponse:
        return web.json_response({"n": 1}, headers={"Connection": "close"})

    server.then(close_after)
    client = HttpClient()
    first = await client.send(_endpoint(server), b"{}", FAST)
    await first.read(1024)
    second = await client.send(_endpoint(server), b"{}", FAST)  # default answer on a new connection
    assert second.status == 200
    await second.read(1 << 20)
    await client.aclose()


async def test_a_pooled_connection_dropped_after_reading_is_reported_not_resent() -> None:
    """A raw server that answers once, then reads the next request on the kept-alive connection and
    closes it unanswered: it did receive the request, so the client reports a stale connection
    (the router's attempt to count) instead of resending it; the next send uses a fresh one."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    received: list[bytes] = []

    def serve() -> None:
        first, _ = listener.accept()
        received.append(first.recv(65536))
        first.sendall(answer)
        received.append(first.recv(65536))  # the second request on the same connection...
        first.close()  # ...is dropped unanswered
        second, _ = listener.accept()
        received.append(second.recv(65536))
        second.sendall(answer)
        second.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = HttpClient()
    endpoint = Endpoint("POST", f"http://127.0.0.1:{port}/x", [])
    assert await (await client.send(endpoint, b"{}", FAST)).read(10) == b"ok"
    with pytest.raises(UpstreamStaleConnection):
        await client.send(endpoint, b"{}", FAST)
    assert len(received) == 2  # sent once, not resent
    assert await (await client.send(endpoint, b"{}", FAST)).read(10) == b"ok"
    await client.aclose()
    thread.join(5)
    listener.close()
    assert len(received) == 3


async def test_gzip_and_chunked_bodies_are_decoded(server: Upstream) -> None:
    payload = b'{"text": "' + b"turnout " * 5000 + b'"}'

    async def gzipped(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )
        await response.prepare(request)
        data = gzip.compress(payload)
        for i in range(0, len(data), 1000):  # chunked transfer, several writes
            await response.write(data[i : i + 1000])
        await response.write_eof()
        return response

    server.then(gzipped)
    client = HttpClient()
    response = await client.send(_endpoint(server), b"{}", FAST)
    assert await response.read(1 << 20) == payload
    await client.aclose()


async def test_a_body_over_the_limit_is_refused(server: Upstream) -> None:
    server.reply_json({"big": "x" * 5000})
    client = HttpClient()
    response = await client.send(_endpoint(server), b"{}", FAST)
    with pytest.raises(UpstreamProtocolError):
        await response.read(1000)
    await client.aclose()


async def test_a_slow_reader_pauses_the_upstream_and_still_gets_everything(server: Upstream) -> None:
    block = b"x" * 65536
    blocks = 64  # 4 MiB, far over the client's buffer high-water mark

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(blocks):
            await response.write(block)
        await response.write_eof()
        return response

    server.then(big)
    client = HttpClient()
    response = await client.send(
        _endpoint(server), b"{}", Timeouts(connect=2, first_byte=5, idle=5, total=30)
    )
    received = 0
    async for chunk in response.iter_chunks():
        received += len(chunk)
        await asyncio.sleep(0)  # a consumer that yields between chunks
    assert received == len(block) * blocks
    await client.aclose()


async def test_first_byte_timeout(server: Upstream) -> None:
    server.hang()
    client = HttpClient()
    with pytest.raises(UpstreamTimeout) as caught:
        await client.send(_endpoint(server), b"{}", Timeouts(connect=2, first_byte=0.2, idle=5, total=5))
    assert caught.value.phase == "first_byte" and caught.value.status == 504
    await client.aclose()


async def test_idle_timeout_mid_body(server: Upstream) -> None:
    server.reply_sse([b"data: {}\n\n", b"data: {}\n\n", b"data: {}\n\n"], hang_after=1)
    client = HttpClient()
    response = await client.send(
        _endpoint(server), b"{}", Timeouts(connect=2, first_byte=5, idle=0.2, total=10)
    )
    chunks = []
    with pytest.raises(UpstreamTimeout) as caught:
        async for chunk in response.iter_chunks():
            chunks.append(chunk)
    assert caught.value.phase == "idle"
    assert b"".join(chunks) == b"data: {}\n\n"
    await client.aclose()


async def test_total_timeout(server: Upstream) -> None:
    events = [b"data: {}\n\n"] * 1000
    server.reply_sse(events, gap=0.05)
    client = HttpClient()
    response = await client.send(
        _endpoint(server), b"{}", Timeouts(connect=2, first_byte=2, idle=2, total=0.5)
    )
    with pytest.raises(UpstreamTimeout) as caught:
        async for _ in response.iter_chunks():
            pass
    assert caught.value.phase == "total"
    await client.aclose()


async def test_connection_refused_and_reset(server: Upstream) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    client = HttpClient()
    with pytest.raises(UpstreamConnectionError, match="refused"):
        await client.send(Endpoint("POST", f"http://127.0.0.1:{closed_port}/x", []), b"{}", FAST)
    server.reset(times=2)  # the retry on a fresh connection is reset too
    with pytest.raises(UpstreamConnectionError):
        await client.send(_endpoint(server), b"{}", FAST)
    await client.aclose()


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError, match="line breaks"):
        Endpoint("POST", "http://127.0.0.1:1/x", [("x-test", "a\r\nevil: 1")])
