"""Streams that fail. Before the first chunk a failure is an ordinary HTTP error; after it, the client
gets the chunks that were real and then one terminal `data: {"error": {...}}` event — never a `[DONE]`
or an invented `finish_reason`, never the upstream's garbage. A client that leaves stops the upstream."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.spec import validate_openai
from support.upstream import Action, Upstream, sse_events

USER = [{"role": "user", "content": "Hello!"}]
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY}
EVENTS = sse_events("chat_stream.sse")  # 10 chunks (the last with finish_reason "stop"), then [DONE]
CHUNKS = EVENTS[:-1]
# Small timeouts so that a silent upstream is given up on quickly (the tests assert codes, not times).
QUICK = {"connect": "1s", "first_byte": "1s", "idle": "500ms", "total": "5s"}


def error_event(error: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps({"error": error}).encode() + b"\n\n"


@pytest.fixture
def quick_gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway(openai_doc(upstream, timeouts=QUICK), ENV)


def sdk_for(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def read_stream(gateway: Gateway) -> tuple[httpx.Response, str]:
    with httpx.stream(
        "POST",
        gateway.base_url + "/chat/completions",
        json={"model": "gpt-4o", "messages": USER, "stream": True},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=20,
    ) as response:
        return response, response.read().decode()


def failed_stream(gateway: Gateway) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Read a stream that must fail after its first byte: (the chunks, the terminal error, the text)."""
    response, text = read_stream(gateway)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in text, "a failed stream must not look complete"
    events = [e for e in text.split("\n\n") if e.strip()]
    assert all(e.startswith("data: ") for e in events), text
    *chunks, last = [json.loads(e.removeprefix("data: ")) for e in events]
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk)
    validate_openai("ErrorResponse", last)
    assert last["error"]["message"]
    for secret in (UPSTREAM_KEY, MASTER_KEY):
        assert secret not in text
    assert "Traceback" not in text
    return chunks, last["error"], text


def sdk_fails_mid_stream(gateway: Gateway) -> tuple[list[Any], openai.APIError]:
    """Iterate with the SDK until it raises; the error must come from the terminal event."""
    received: list[Any] = []
    with sdk_for(gateway) as c, pytest.raises(openai.APIError) as caught:
        for chunk in c.chat.completions.create(model="gpt-4o", messages=USER, stream=True):
            received.append(chunk)
    # exactly APIError, raised for the error event: not a connection error or a parse failure
    assert type(caught.value) is openai.APIError, repr(caught.value)
    assert isinstance(caught.value.body, dict)
    return received, caught.value


def contents(chunks: list[dict[str, Any]]) -> list[str | None]:
    return [c["choices"][0]["delta"].get("content") for c in chunks]


def expected_contents(k: int) -> list[str | None]:
    return contents([json.loads(e.removeprefix(b"data: ")) for e in CHUNKS[:k]])


# --------------------------------------------------------------------------- before the first chunk


BEFORE_FIRST_CHUNK = {
    "500": (lambda u: u.reply_fixture("error_500_server.json", status=500), 502, "upstream_server_error"),
    "429": (
        lambda u: u.reply_fixture("error_429_rate_limit.json", status=429, headers={"Retry-After": "7"}),
        429,
        "rate_limit_exceeded",
    ),
    "503": (lambda u: u.reply_fixture("error_503_overloaded.json", status=503), 503, "upstream_unavailable"),
    "401": (lambda u: u.reply_fixture("error_401_invalid_key.json", status=401), 502, "upstream_auth_error"),
    "hang": (lambda u: u.hang(), 504, "upstream_timeout"),  # not even a status line
    "silent": (lambda u: u.reply_sse(EVENTS, hang_after=0), 504, "upstream_timeout"),
    "reset": (lambda u: u.reset(), 502, "upstream_connection_error"),
    "cut": (lambda u: u.reply_sse(EVENTS, cut_after=0), 502, "upstream_connection_error"),
    "json": (lambda u: u.reply_fixture("chat_completion.json"), 502, "bad_upstream_response"),  # not SSE
    "garbage": (lambda u: u.reply_sse([b"data: <html>oops</html>\n\n"]), 502, "bad_upstream_response"),
}


@pytest.mark.parametrize("case", list(BEFORE_FIRST_CHUNK))
def test_failure_before_the_first_chunk_is_an_http_error(
    quick_gateway: Gateway, upstream: Upstream, case: str
) -> None:
    script, status, code = BEFORE_FIRST_CHUNK[case]
    script(upstream)
    exception = openai.RateLimitError if status == 429 else openai.InternalServerError
    with sdk_for(quick_gateway) as c, pytest.raises(exception) as caught:
        c.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    response = caught.value.response
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")  # not a 200 stream
    body = response.json()
    validate_openai("ErrorResponse", body)
    assert body["error"]["code"] == code
    if status == 429:
        assert response.headers["retry-after"] == "7"
    for secret in (UPSTREAM_KEY, MASTER_KEY):
        assert secret not in response.text
    assert "oops" not in response.text and "Incorrect API key" not in response.text


# --------------------------------------------------------------------------- after the first chunk


@pytest.mark.parametrize("k", [1, 3])
def test_upstream_cut_mid_stream_ends_with_an_error_event(
    gateway: Gateway, upstream: Upstream, k: int
) -> None:
    upstream.reply_sse(EVENTS, cut_after=k).reply_sse(EVENTS, cut_after=k)
    chunks, error, _ = failed_stream(gateway)
    assert contents(chunks) == expected_contents(k)  # the real chunks arrived, untouched
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks), "an invented finish_reason"
    assert error["code"] == "upstream_connection_error"

    received, raised = sdk_fails_mid_stream(gateway)
    assert [c.choices[0].delta.content for c in received] == expected_contents(k)
    assert raised.code == "upstream_connection_error"


def test_upstream_silent_mid_stream_ends_with_a_timeout_event(
    quick_gateway: Gateway, upstream: Upstream
) -> None:
    upstream.reply_sse(EVENTS, hang_after=3).reply_sse(EVENTS, hang_after=3)
    chunks, error, _ = failed_stream(quick_gateway)
    assert contents(chunks) == expected_contents(3)
    assert error["code"] == "upstream_timeout"
    assert error["type"] == "timeout_error"

    received, raised = sdk_fails_mid_stream(quick_gateway)
    assert len(received) == 3
    assert raised.code == "upstream_timeout"


def test_stream_over_its_total_time_ends_with_a_timeout_event(
    upstream: Upstream, start_gateway: Callable[..., Gateway]
) -> None:
    timeouts = {"connect": "1s", "first_byte": "1s", "idle": "1s", "total": "1500ms"}
    gateway = start_gateway(openai_doc(upstream, timeouts=timeouts), ENV)
    upstream.reply_sse(EVENTS, gap=0.3)  # never silent for long, but 3.3 s in all: over `total`
    chunks, error, _ = failed_stream(gateway)
    assert chunks, "the stream had started"
    assert error["code"] == "upstream_timeout"


def test_malformed_chunk_mid_stream_is_not_forwarded(gateway: Gateway, upstream: Upstream) -> None:
    garbage = b"data: {this is not JSON, it is garbage\n\n"
    events = [*EVENTS[:2], garbage, *EVENTS[2:]]
    upstream.reply_sse(events).reply_sse(events)
    chunks, error, text = failed_stream(gateway)
    assert contents(chunks) == expected_contents(2)
    assert "garbage" not in text
    assert error["code"] == "bad_upstream_response"

    received, raised = sdk_fails_mid_stream(gateway)
    assert len(received) == 2
    assert raised.code == "bad_upstream_response"


def test_error_event_mid_stream_is_relayed_as_the_terminal_event(
    gateway: Gateway, upstream: Upstream
) -> None:
    upstream_error = {
        "message": f"The server had an error while processing your request (key {UPSTREAM_KEY}).",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    events = [*EVENTS[:2], error_event(upstream_error), *EVENTS[2:]]
    upstream.reply_sse(events).reply_sse(events)
    chunks, error, _ = failed_stream(gateway)  # also checks the key was not passed on
    assert contents(chunks) == expected_contents(2)
    assert error["message"]

    received, raised = sdk_fails_mid_stream(gateway)
    assert len(received) == 2
    assert raised.message == error["message"]


@pytest.mark.parametrize("k", [5, len(CHUNKS)], ids=["mid-answer", "after-finish-reason"])
def test_stream_ending_without_done_is_an_error(gateway: Gateway, upstream: Upstream, k: int) -> None:
    upstream.reply_sse(CHUNKS[:k]).reply_sse(CHUNKS[:k])  # a clean end of the body, but no [DONE]
    chunks, error, _ = failed_stream(gateway)
    assert contents(chunks) == expected_contents(k)
    assert error["code"] == "upstream_connection_error"

    received, raised = sdk_fails_mid_stream(gateway)
    assert len(received) == k
    assert raised.code == "upstream_connection_error"


def test_complete_stream_still_ends_with_done(gateway: Gateway, upstream: Upstream) -> None:
    """The counterpart of the failures above: with `[DONE]` from the upstream, no error event."""
    response, text = read_stream(gateway)
    assert response.status_code == 200
    assert text.endswith("data: [DONE]\n\n")
    assert '"error"' not in text


# --------------------------------------------------------------------------- the client leaves


def endless_slow_stream(closed: threading.Event) -> Action:
    """An upstream that streams a chunk every 50 ms for up to a minute, and notes when it can no
    longer write because turnout closed the connection."""
    chunk = CHUNKS[1]

    async def action(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for _ in range(1200):
                await response.write(chunk)
                await asyncio.sleep(0.05)
        except ConnectionResetError:  # aiohttp: "Cannot write to closing transport"
            closed.set()
        except asyncio.CancelledError:  # the handler is cancelled when its connection is lost
            closed.set()
            raise
        return response

    return action


def requests_in_flight_end(gateway: Gateway, timeout: float) -> bool:
    """Wait until every request the gateway's server is handling has ended."""
    assert gateway.server is not None and gateway.loop is not None
    server = gateway.server
    ended = threading.Event()

    pending: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        pending.discard(task)
        if not pending:
            ended.set()

    def watch() -> None:
        pending.update(server.server_state.tasks)
        if not pending:
            ended.set()
        for task in list(pending):
            task.add_done_callback(finished)

    gateway.loop.call_soon_threadsafe(watch)
    return ended.wait(timeout)


@pytest.fixture
def leaving_gateway(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Gateway:
    # A short grace, so a request that never ends cannot hold the test's shutdown for long.
    return start_gateway({**openai_doc(upstream), "server": {"shutdown_grace": "1s"}}, ENV)


def _leave_after_first_chunk(gateway: Gateway, upstream: Upstream) -> threading.Event:
    closed = threading.Event()
    upstream.then(endless_slow_stream(closed))
    with sdk_for(gateway) as c:
        stream = c.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
        first = next(iter(stream))
        assert first.choices[0].delta.content == "Hello"
        stream.close()  # the client goes away mid-stream
    return closed


def test_client_disconnect_closes_the_upstream_connection(
    leaving_gateway: Gateway, upstream: Upstream
) -> None:
    closed = _leave_after_first_chunk(leaving_gateway, upstream)
    assert closed.wait(15), "turnout kept reading (and paying for) a stream nobody receives"
    # and the gateway is none the worse for it
    with sdk_for(leaving_gateway) as c:
        assert c.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content


def test_client_disconnect_ends_the_request(leaving_gateway: Gateway, upstream: Upstream) -> None:
    closed = _leave_after_first_chunk(leaving_gateway, upstream)
    assert closed.wait(15)
    # A request that outlives its client holds graceful shutdown for the whole grace period, and
    # never settles its spend nor frees its admission ticket.
    assert requests_in_flight_end(leaving_gateway, 10), "the abandoned stream's request never ended"
