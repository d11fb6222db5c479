"""Every request turnout sends upstream is an attempt it counts: a pooled connection that breaks
before answering is never resent behind the router's back, and one the upstream closed while idle
is never used. The client's `x-turnout-attempts` equals what the upstream received."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from aiohttp import web

from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, openai_doc
from support.upstream import Upstream, fixture_bytes, sse_events

USER: Any = [{"role": "user", "content": "hi"}]


def _doc(upstream: Upstream, attempts: int) -> dict[str, Any]:
    doc = openai_doc(upstream)
    doc["routing"] = {**doc["routing"], "retries": {"attempts": attempts, "backoff_base": "1ms"}}
    return doc


@pytest.fixture
def sdk(upstream: Upstream, start_gateway: Callable[..., Gateway]) -> Iterator[openai.OpenAI]:
    gateway = start_gateway(_doc(upstream, attempts=3), {"UPSTREAM_KEY": UPSTREAM_KEY})
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as c:
        yield c


def _ask(client: openai.OpenAI, stream: bool) -> tuple[str, str]:
    """One chat request: (its x-turnout-attempts, the answer's text)."""
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER, stream=stream)
    attempts = raw.headers["x-turnout-attempts"]
    if not stream:
        return attempts, raw.parse().choices[0].message.content or ""
    chunks = list(raw.parse())
    return attempts, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _warm_pool(client: openai.OpenAI, upstream: Upstream) -> None:
    """One answered request, so the next one goes out on a pooled (reused) connection."""
    assert _ask(client, stream=False)[0] == "1"
    upstream.clear()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_reused_connection_reset_after_reading_is_an_attempt_not_a_hidden_resend(
    sdk: openai.OpenAI, upstream: Upstream, stream: bool
) -> None:
    # The upstream reads the request and drops the connection without a byte of answer: first on
    # the pooled connection, then on a fresh one; the third attempt is answered.
    _warm_pool(sdk, upstream)
    upstream.reset(times=2)
    attempts, text = _ask(sdk, stream)
    assert text
    assert attempts == "3"
    assert len(upstream.requests) == 3


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_when_every_attempt_is_reset_the_error_counts_every_request_sent(
    sdk: openai.OpenAI, upstream: Upstream, stream: bool
) -> None:
    _warm_pool(sdk, upstream)
    upstream.reset(times=3)
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="gpt-4o", messages=USER, stream=stream)
    assert caught.value.status_code == 502
    assert caught.value.response.headers["x-turnout-attempts"] == "3"
    assert len(upstream.requests) == 3


def _answer_then_close(stream: bool) -> Callable[[web.Request], Any]:
    """An upstream that answers in full, keep-alive as far as the headers go, then closes the
    connection while it is idle (as servers do when their keep-alive timeout expires)."""

    async def action(request: web.Request) -> web.StreamResponse:
        if stream:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for event in sse_events("chat_stream_usage.sse"):
                await response.write(event)
        else:
            body = fixture_bytes("chat_completion.json")
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body)
        await response.write_eof()
        assert request.transport is not None
        request.transport.close()  # after the answer: FIN on an idle connection
        return response

    return action


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_connection_the_upstream_closed_while_idle_is_never_used(
    upstream: Upstream, start_gateway: Callable[..., Gateway], stream: bool
) -> None:
    # One attempt allowed: a closed connection taken from the pool would fail the request.
    gateway = start_gateway(_doc(upstream, attempts=1), {"UPSTREAM_KEY": UPSTREAM_KEY})
    with openai.OpenAI(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20) as client:
        for answered in range(1, 6):
            upstream.then(_answer_then_close(stream))
            attempts, text = _ask(client, stream)
            assert text
            assert attempts == "1"
            assert len(upstream.requests) == answered
            _until_the_gateway_saw_the_close(gateway)


def _until_the_gateway_saw_the_close(gateway: Gateway) -> None:
    """The upstream's FIN can still be on its way when the client has read the answer: wait for
    the condition (the gateway's pool no longer holds a usable connection), not for a time. What
    the test asserts is that a connection whose close was seen is never handed out again."""

    def usable_idle() -> int:
        pools = gateway.services.client._pools.values()
        return sum(1 for pool in pools for conn in pool.idle if conn.usable)

    deadline = time.monotonic() + 10
    while gateway.call(usable_idle) and time.monotonic() < deadline:
        time.sleep(0.005)
