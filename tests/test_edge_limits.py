"""The HTTP edge (`server.limits`): what a client sends is bounded before anything is authenticated.
Long request lines get 414, oversized or overfull heads 431, heads and bodies that arrive too slowly
408 — all in OpenAI's error format, with the connection closed — while the official SDK's ordinary
traffic (streams, kept-alive connections, a large body sent at normal speed) is untouched.

Deadlines are configured small (half a second) and waited for with a generous bound: the tests say
*that* a connection is answered and closed, never how fast."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.spec import validate_openai
from support.upstream import Upstream

ENV = {"UPSTREAM_KEY": UPSTREAM_KEY}
LIMITS = {
    "max_request_line": "1KiB",
    "max_header_bytes": "8KiB",
    "max_headers": 40,
    "header_timeout": "500ms",
    "body_timeout": "500ms",
    "body_min_rate": "1KiB/s",
}
BOUND = 20.0  # seconds any single wait may take before the test gives up: far beyond every deadline
CROWD = 20  # connections opened at once by the slow-client tests


@pytest.fixture
def limited(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway({**openai_doc(upstream), "server": {"limits": LIMITS, "access_log": True}}, ENV)


def _port(gateway: Gateway) -> int:
    assert gateway.server is not None
    return gateway.server.port


@contextlib.contextmanager
def _connection(gateway: Gateway) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", _port(gateway)), timeout=BOUND) as sock:
        yield sock


def _head(method: str, path: str, *headers: str) -> bytes:
    return "".join(
        [f"{method} {path} HTTP/1.1\r\n", "Host: gateway\r\n", *(h + "\r\n" for h in headers)]
    ).encode()


def _refusal(sock: socket.socket, status: int) -> dict[str, Any]:
    """Read the answer on `sock`: an OpenAI-format error with `status` and `connection: close`, after
    which the gateway closes the connection. Returns the error."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    assert response.status == status, (response.status, body[:300])
    assert response.getheader("content-type") == "application/json"
    assert response.getheader("connection") == "close"
    document = orjson.loads(body)
    validate_openai("ErrorResponse", document)
    assert _closed(sock), "the gateway kept the connection open after refusing the request"
    error: dict[str, Any] = document["error"]
    return error


def _closed(sock: socket.socket) -> bool:
    """Whether the gateway closes the connection (within the socket's timeout), discarding the rest."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


# --------------------------------------------------------------------------- sizes


def test_a_request_line_over_the_limit_gets_414(limited: Gateway, upstream: Upstream) -> None:
    with _connection(limited) as sock:
        sock.sendall(
            _head("GET", "/v1/models?q=" + "a" * 2000, f"Authorization: Bearer {MASTER_KEY}") + b"\r\n"
        )
        error = _refusal(sock, 414)
    assert error["code"] == "uri_too_long" and "1024 bytes" in error["message"]
    assert upstream.requests == []


def test_a_request_line_at_the_limit_is_served(limited: Gateway) -> None:
    path = "/v1/models?q="
    response = httpx.get(
        limited.root_url + path + "a" * (1024 - len(path)),
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert response.status_code == 200


def test_headers_over_the_byte_limit_get_431_even_from_an_ordinary_client(limited: Gateway) -> None:
    # httpx sends the whole request before it reads: the answer must still reach it
    response = httpx.get(
        limited.base_url + "/models",
        headers={"Authorization": f"Bearer {MASTER_KEY}", "X-Padding": "p" * 9000},
        timeout=BOUND,
    )
    assert response.status_code == 431
    assert response.headers["connection"] == "close"
    assert response.json()["error"]["code"] == "headers_too_large"
    assert "8192 bytes" in response.json()["error"]["message"]


def test_a_header_line_that_never_ends_gets_431(limited: Gateway) -> None:
    """One endless header value grows inside the parser, where no header callback sees it: the bytes
    received for an unfinished head are counted as they arrive."""
    with _connection(limited) as sock:
        sock.sendall(_head("GET", "/v1/models") + b"X-Endless: ")
        with contextlib.suppress(ConnectionError):  # the gateway may close while this is sending
            for _ in range(64):
                sock.sendall(b"e" * 16384)  # 1 MiB in all, no CRLF
        assert _refusal(sock, 431)["code"] == "headers_too_large"


def test_more_header_fields_than_allowed_get_431(limited: Gateway) -> None:
    headers = [f"X-Field-{i}: v" for i in range(41)]
    with _connection(limited) as sock:
        sock.sendall(_head("GET", "/v1/models", *headers) + b"\r\n")
        error = _refusal(sock, 431)
    assert error["code"] == "headers_too_large" and "40 header fields" in error["message"]


def test_endless_trailer_fields_after_a_chunked_body_get_431(limited: Gateway, upstream: Upstream) -> None:
    head = _head(
        "POST",
        "/v1/chat/completions",
        f"Authorization: Bearer {MASTER_KEY}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
    )
    with _connection(limited) as sock:
        sock.sendall(head + b"\r\n" + b"2\r\n{}\r\n0\r\n")  # the last chunk; trailer fields follow
        with contextlib.suppress(ConnectionError):
            for i in range(2000):  # 128 KB of trailer fields, never the blank line that ends them
                sock.sendall(b"X-Trailer-%04d: %s\r\n" % (i, b"t" * 40))
        assert _refusal(sock, 431)["code"] == "headers_too_large"
    assert upstream.requests == []


def test_malformed_http_gets_an_openai_format_400(limited: Gateway) -> None:
    with _connection(limited) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert _refusal(sock, 400)["code"] == "malformed_request"


# --------------------------------------------------------------------------- slow heads


def test_heads_that_never_complete_are_answered_408_and_closed(limited: Gateway) -> None:
    sockets = [socket.create_connection(("127.0.0.1", _port(limited)), timeout=BOUND) for _ in range(CROWD)]
    try:
        for sock in sockets:
            sock.sendall(_head("POST", "/v1/chat/completions", "Content-Type: application/json"))
        for sock in sockets:  # all of them at once, never the rest of the head
            error = _refusal(sock, 408)
            assert error["code"] == "request_timeout"
    finally:
        for sock in sockets:
            sock.close()


def test_connections_that_send_nothing_are_closed(limited: Gateway) -> None:
    sockets = [socket.create_connection(("127.0.0.1", _port(limited)), timeout=BOUND) for _ in range(CROWD)]
    try:
        for sock in sockets:
            assert sock.recv(1) == b"", "a connection that sent nothing was answered or kept open"
    finally:
        for sock in sockets:
            sock.close()


def test_a_kept_alive_connection_idles_but_its_next_head_has_a_deadline(limited: Gateway) -> None:
    """The head deadline of a later request runs from its first byte: an idle kept-alive connection
    is governed by the keep-alive timeout, not by `header_timeout`."""
    connection = http.client.HTTPConnection("127.0.0.1", _port(limited), timeout=BOUND)
    try:
        auth = {"Authorization": f"Bearer {MASTER_KEY}"}
        connection.request("GET", "/v1/models", headers=auth)
        assert connection.getresponse().read() and connection.sock is not None
        sock = connection.sock
        time.sleep(3 * 0.5)  # idle for three header timeouts: no timer may be running now
        connection.request("GET", "/v1/models", headers=auth)
        assert connection.getresponse().status == 200
        assert connection.sock is sock, "the idle kept-alive connection was closed"
        sock.sendall(_head("GET", "/v1/models"))  # a third request that stops halfway
        assert _refusal(sock, 408)["code"] == "request_timeout"
    finally:
        connection.close()


# --------------------------------------------------------------------------- slow bodies


async def _trickle(port: int, head: bytes, gap: float) -> bytes:
    """Send `head`, then one byte of body every `gap` seconds until the gateway closes the
    connection; what it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def feed() -> None:
        writer.write(head + b"{")
        while not writer.is_closing() and not reader.at_eof():
            await asyncio.sleep(gap)
            writer.write(b" ")
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    feeding = asyncio.create_task(feed())
    received = bytearray()
    try:
        async with asyncio.timeout(BOUND):
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):
                    received += chunk
    finally:
        feeding.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return bytes(received)


async def test_trickled_bodies_are_answered_408_and_the_application_sees_the_client_leave(
    limited: Gateway, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="turnout.access")
    head = _head(
        "POST",
        "/v1/chat/completions",
        f"Authorization: Bearer {MASTER_KEY}",
        "Content-Type: application/json",
        "Content-Length: 10000000",
    )
    answers = await asyncio.gather(*(_trickle(_port(limited), head + b"\r\n", 0.05) for _ in range(CROWD)))
    for answer in answers:
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 408 Request Timeout", answer[:300]
        document = orjson.loads(rest.partition(b"\r\n\r\n")[2])
        validate_openai("ErrorResponse", document)
        assert document["error"]["code"] == "request_timeout"
        assert b"connection: close" in rest.lower()

    def gone() -> int:  # the application's receive() said http.disconnect: it logs 499, sends nothing
        return sum(" 499 " in r.getMessage() for r in caplog.records if r.name == "turnout.access")

    deadline = time.monotonic() + BOUND
    while gone() < CROWD:
        assert time.monotonic() < deadline, f"only {gone()} of {CROWD} requests saw their client leave"
        await asyncio.sleep(0.05)
    assert upstream.requests == []


def test_a_slow_but_steady_body_is_served(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> None:
    """A body may take longer than `body_timeout` as long as it keeps coming at `body_min_rate`."""
    limits = {**LIMITS, "body_timeout": "1s"}
    gateway = start_gateway({**openai_doc(upstream), "server": {"limits": limits}}, ENV)
    body = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "s" * 6000}]})
    pieces = [body[i : i + 1024] for i in range(0, len(body), 1024)]
    with _connection(gateway) as sock:
        sock.sendall(
            _head(
                "POST",
                "/v1/chat/completions",
                f"Authorization: Bearer {MASTER_KEY}",
                "Content-Type: application/json",
                f"Content-Length: {len(body)}",
            )
            + b"\r\n"
        )
        for piece in pieces:  # about 4 KiB/s for about 1.5 s, past body_timeout
            sock.sendall(piece)
            time.sleep(0.25)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200, response.read()[:300]
    assert upstream.requests[-1].json["messages"][0]["content"] == "s" * 6000


# --------------------------------------------------------------------------- ordinary clients


def test_the_official_sdk_is_unaffected(limited: Gateway, upstream: Upstream) -> None:
    """A stream that outlasts every deadline, a kept-alive connection reused after idling past the
    head deadline, and a 5 MB body sent at normal speed on it."""
    with httpx.Client(limits=httpx.Limits(max_connections=1)) as http_client:
        client = openai.OpenAI(
            base_url=limited.base_url,
            api_key=MASTER_KEY,
            max_retries=0,
            timeout=BOUND,
            http_client=http_client,
        )
        upstream.reply_sse("chat_stream.sse", gap=0.1)  # 12 events: over a second in all
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        def local_address(response: Any) -> Any:
            return response.http_response.extensions["network_stream"].get_extra_info("client_addr")

        before = local_address(client.models.with_raw_response.list())
        time.sleep(3 * 0.5)  # idle past the head deadline
        big = "b" * (5 * 1024 * 1024)
        answer = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": big}]
        )
        assert answer.parse().choices[0].message.content
        assert local_address(answer) == before, "the kept-alive connection was not reused"
        assert local_address(client.models.with_raw_response.list()) == before
    chats = [r for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert chats[-1].json["messages"][0]["content"] == big


# --------------------------------------------------------------------------- settings


def test_limits_are_validated_with_their_path() -> None:
    from turnout.config.loader import ConfigError
    from turnout.providers.config_loader import build_settings

    with pytest.raises(ConfigError) as caught:
        build_settings(
            {
                "server": {
                    "limits": {
                        "max_request_line": "128KiB",
                        "max_headers": 3,
                        "header_timeout": 0,
                        "body_timeout": "soon",
                        "body_min_rate": "1KiB/min",
                    }
                }
            },
            {},
            source="t.yaml",
        )
    problems = str(caught.value)
    assert "server.limits.max_request_line: 131072 bytes is more than max_header_bytes (65536)" in problems
    assert "server.limits.max_headers: must be at least 32" in problems
    assert "server.limits.header_timeout: a duration must be positive" in problems
    assert "server.limits.body_timeout: expected a duration" in problems
    assert "server.limits.body_min_rate: expected a rate such as 16KiB/s" in problems
    with pytest.raises(ConfigError, match=r"server\.limits\.max_header_bytes: must be at least 1024 bytes"):
        build_settings({"server": {"limits": {"max_header_bytes": 64}}}, {}, source="t.yaml")
    with pytest.raises(ConfigError, match=r"server\.limits\.max_request_bytes: unknown key"):
        build_settings({"server": {"limits": {"max_request_bytes": "1MiB"}}}, {}, source="t.yaml")


def test_limits_have_defaults_and_units() -> None:
    from turnout.providers.config_loader import build_settings

    default = build_settings({}, {}, source="t.yaml").server.limits
    assert (default.max_request_line, default.max_header_bytes, default.max_headers) == (16384, 65536, 100)
    assert (default.header_timeout, default.body_timeout, default.body_min_rate) == (10.0, 30.0, 16384)
    written = build_settings({"server": {"limits": LIMITS}}, {}, source="t.yaml").server.limits
    assert (written.max_request_line, written.max_header_bytes, written.max_headers) == (1024, 8192, 40)
    assert (written.header_timeout, written.body_timeout, written.body_min_rate) == (0.5, 0.5, 1024)
    assert (
        build_settings(
            {"server": {"limits": {"body_min_rate": 0}}}, {}, source="t"
        ).server.limits.body_min_rate
        == 0
    )


# --------------------------------------------------------------------------- refusals and keep-alive


def _chat_request(key: str, body: bytes, *, send_body: bool = True) -> bytes:
    head = _head(
        "POST",
        "/v1/chat/completions",
        f"Authorization: Bearer {key}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    )
    return head + b"\r\n" + (body if send_body else b"")


CHAT_BODY = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})


def test_a_refused_request_whose_body_came_with_it_keeps_its_connection(
    limited: Gateway, upstream: Upstream
) -> None:
    """A client retrying after a refusal (a wrong key here; a 429 or 503 alike) reuses its
    connection: the small body that arrived with the head is taken, not left to close the socket."""
    with _connection(limited) as sock:
        sock.sendall(_chat_request("sk-not-a-key", CHAT_BODY))
        refused = http.client.HTTPResponse(sock)
        refused.begin()
        assert refused.status == 401, refused.read()[:300]
        assert refused.getheader("connection") != "close"
        assert orjson.loads(refused.read())["error"]["code"] == "invalid_api_key"
        sock.sendall(_chat_request(MASTER_KEY, CHAT_BODY))  # the same socket
        served = http.client.HTTPResponse(sock)
        served.begin()
        assert served.status == 200
        assert orjson.loads(served.read())["choices"][0]["message"]["content"]
    assert len(upstream.requests) == 1


def test_a_refused_request_whose_body_has_not_arrived_closes_its_connection(limited: Gateway) -> None:
    """The body is not waited for: the refusal says `connection: close` and the socket closes."""
    with _connection(limited) as sock:
        sock.sendall(_chat_request("sk-not-a-key", CHAT_BODY, send_body=False))
        assert _refusal(sock, 401)["code"] == "invalid_api_key"
