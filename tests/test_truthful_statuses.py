"""The ledger says how a request really ended. A stream whose upstream sent an error event after its
first chunk is a failed row — with the status that error answers over HTTP and its code as the
reason, never 200 — and is billed for what the upstream produced, whatever the wire format. A stream
the gateway's shutdown cut short when its grace ran out is neither a 200 nor a client that left
(499): its client gets a `gateway_shutdown` error event, its row is a 503 `gateway_shutdown`,
billed for what was produced.

Real upstreams on 127.0.0.1 (each holds its error back until the client has the first chunk, so the
error is always mid-stream), real gateways, the official OpenAI and Anthropic SDKs; the shutdown is
a SIGTERM to a `turnout serve` process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import yaml
from aiohttp import web

from support.databases import ledger_rows
from support.gateway import MASTER_KEY, UPSTREAM_KEY, Gateway, settings_for
from support.process import Served, start_serve
from support.upstream import Action, Upstream, sse_events
from support.wire import bedrock_message, fixture_json

USER = [{"role": "user", "content": "Tell me about railway switches."}]
PRICE = {"input": "1000", "output": "2000"}  # a token costs a milli-dollar or two: visible
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY, "AWS_SECRET": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
EVENT_STREAM = "application/vnd.amazon.eventstream"


def held_stream(before: list[bytes], after: list[bytes], go: threading.Event, content_type: str) -> Action:
    """An upstream stream that sends `before`, waits until the test says the client has the first
    chunk (`go`), then sends `after`."""

    async def action(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        for event in before:
            await response.write(event)
        await asyncio.get_running_loop().run_in_executor(None, go.wait, 20)
        for event in after:
            await response.write(event)
        await response.write_eof()
        return response

    return action


def openai_error(error: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps({"error": error}).encode() + b"\n\n"


def anthropic_error(kind: str, message: str) -> bytes:
    error = {"type": "error", "error": {"type": kind, "message": message}}
    return b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"


def gemini_error(code: int, status: str, message: str) -> bytes:
    return (
        b"data: "
        + json.dumps({"error": {"code": code, "message": message, "status": status}}).encode()
        + b"\n\n"
    )


def cohere_error(message: str) -> bytes:
    event = {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": message}}
    return b"event: message-end\ndata: " + json.dumps(event).encode() + b"\n\n"


def bedrock_frames(name: str) -> list[bytes]:
    return [bedrock_message(m["type"], m["name"], m["payload"]) for m in fixture_json(name, "bedrock")]


def provider(wire: str, upstream: Upstream) -> dict[str, Any]:
    if wire == "bedrock":
        aws = {
            "region": "us-east-1",
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "secret_access_key": "env:AWS_SECRET",
        }
        return {"type": "bedrock", "base_url": upstream.root_url, "aws": aws}
    base = upstream.root_url + "/v2" if wire == "cohere" else upstream.base_url
    return {"type": wire, "base_url": base, "api_key": "env:UPSTREAM_KEY"}


def start(tmp_path: Path, upstream: Upstream, wire: str) -> Gateway:
    doc = {
        "routing": {"retries": {"attempts": 1}},
        "providers": {"up": provider(wire, upstream)},
        "models": {"chat": {"targets": [{"provider": "up", "model": "m", "price": PRICE}]}},
    }
    return Gateway(settings_for(doc, tmp_path, ENV)).start()


OPENAI = sse_events("chat_stream.sse")
ANTHROPIC = sse_events("stream_text.sse", "anthropic")
GEMINI = sse_events("stream.sse", "gemini")
COHERE = sse_events("stream.sse", "cohere")
BEDROCK = bedrock_frames("stream_throttled.json")  # messageStart, "Once upon", a throttlingException

# wire format: (events before the error, the error, content type, the row's status and reason)
CASES: dict[str, tuple[str, list[bytes], list[bytes], str, int, str]] = {
    "openai-server-error": (
        "openai_compatible",
        OPENAI[:3],
        [
            openai_error(
                {"message": "The server had an error while processing your request.", "type": "server_error"}
            )
        ],
        "text/event-stream",
        502,
        "upstream_server_error",
    ),
    "openai-rate-limit": (
        "openai_compatible",
        OPENAI[:3],
        [openai_error({"message": "Rate limit reached.", "type": "requests", "code": "rate_limit_exceeded"})],
        "text/event-stream",
        429,
        "rate_limit_exceeded",
    ),
    "anthropic-overloaded": (
        "anthropic",
        ANTHROPIC[:4],
        [anthropic_error("overloaded_error", "Overloaded")],
        "text/event-stream",
        503,
        "upstream_unavailable",
    ),
    "gemini-internal": (
        "gemini",
        GEMINI[:1],  # its usage so far counts the prompt only: the text it produced is counted too
        [gemini_error(500, "INTERNAL", "An internal error has occurred.")],
        "text/event-stream",
        502,
        "upstream_server_error",
    ),
    "cohere-error": (
        "cohere",
        COHERE[:3],
        [cohere_error("internal server error, this has been reported to our developers")],
        "text/event-stream",
        502,
        "upstream_server_error",
    ),
    "bedrock-throttled": ("bedrock", BEDROCK[:2], BEDROCK[2:], EVENT_STREAM, 429, "rate_limit_error"),
}


def only_row(tmp_path: Path) -> dict[str, Any]:
    rows = ledger_rows(tmp_path)
    assert len(rows) == 1, rows
    return rows[0]


def assert_billed_for_what_was_produced(row: dict[str, Any]) -> None:
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0, row
    assert row["cost_micros"] == 1000 * row["input_tokens"] + 2000 * row["output_tokens"]


@pytest.mark.parametrize("case", list(CASES))
def test_a_stream_that_ends_with_an_error_event_is_a_failed_row_billed_for_what_was_produced(
    tmp_path: Path, upstream: Upstream, case: str
) -> None:
    wire, before, after, content_type, status, reason = CASES[case]
    go = threading.Event()
    upstream.then(held_stream(before, after, go, content_type))
    gateway = start(tmp_path, upstream, wire)
    try:
        with openai.OpenAI(
            base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30
        ) as client:
            chunks = iter(client.chat.completions.create(model="chat", messages=USER, stream=True))
            next(chunks)  # the stream has started: a 200 with its first chunk
            go.set()
            with pytest.raises(openai.APIError) as caught:
                for _ in chunks:
                    pass
        assert not isinstance(caught.value, openai.APIStatusError)  # the stream's error event
    finally:
        go.set()
        gateway.stop()
    row = only_row(tmp_path)
    assert (row["status"], row["reason"], row["deployment"], row["stream"]) == (status, reason, "up/m", True)
    assert_billed_for_what_was_produced(row)


def test_an_anthropic_client_s_native_stream_that_ends_with_an_error_event_is_a_failed_row(
    tmp_path: Path, upstream: Upstream
) -> None:
    go = threading.Event()
    upstream.then(
        held_stream(ANTHROPIC[:4], [anthropic_error("api_error", "Internal")], go, "text/event-stream")
    )
    gateway = start(tmp_path, upstream, "anthropic")
    try:
        with (
            anthropic.Anthropic(
                base_url=gateway.root_url, api_key=MASTER_KEY, max_retries=0, timeout=30
            ) as client,
            client.messages.stream(model="chat", max_tokens=200, messages=USER) as stream,
        ):
            events = iter(stream)
            next(events)
            go.set()
            with pytest.raises(anthropic.APIError):
                for _ in events:
                    pass
    finally:
        go.set()
        gateway.stop()
    row = only_row(tmp_path)
    assert (row["status"], row["reason"], row["api"]) == (502, "upstream_server_error", "messages")
    assert_billed_for_what_was_produced(row)


def test_a_complete_stream_is_still_a_200_with_no_reason(tmp_path: Path, upstream: Upstream) -> None:
    """The counterpart: an upstream that finishes its stream makes an answered row."""
    upstream.reply_sse(OPENAI)
    gateway = start(tmp_path, upstream, "openai_compatible")
    try:
        with openai.OpenAI(
            base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30
        ) as client:
            assert list(client.chat.completions.create(model="chat", messages=USER, stream=True))
    finally:
        gateway.stop()
    row = only_row(tmp_path)
    assert (row["status"], row["reason"]) == (200, None)


# --------------------------------------------------------------------------- the shutdown's grace

SHUTDOWN_KEY = "sk-master-for-cut-streams-Qm7c1dXbH0lY2Zr8sWkTnVa3pEoJ6uFgI9tCyRq4LxM"
STORY = [{"role": "user", "content": "switch " * 1000}]  # the fake echoes it: about 1,000 tokens


def serve(tmp_path: Path, upstream: Upstream) -> Served:
    """`turnout serve` with a 1 s shutdown grace: `story` streams its 1,000 tokens over 20 s (fake),
    `late` is answered by `upstream`."""
    path = tmp_path / "turnout.yaml"
    slow = {"provider": "local", "model": "story?chunks=2000&gap=10ms", "price": PRICE}
    late = {"provider": "up", "model": "m", "price": PRICE}
    doc = {
        "server": {"shutdown_grace": "1s"},
        "storage": {"data_dir": str(tmp_path / "data")},
        "providers": {
            "local": {"type": "fake"},
            "up": {"type": "openai_compatible", "base_url": upstream.base_url, "api_key": "env:UPSTREAM_KEY"},
        },
        "models": {"story": {"targets": [slow]}, "late": {"targets": [late]}},
    }
    path.write_text(yaml.safe_dump(doc))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "OPENAI_"))}
    env = {**clean, **ENV, "TURNOUT_LOG_LEVEL": "warning", "TURNOUT_MASTER_KEY": SHUTDOWN_KEY}
    return start_serve(path, env)


def sdk(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.base_url, api_key=SHUTDOWN_KEY, max_retries=0, timeout=30)


def test_a_stream_the_shutdown_grace_cuts_short_is_told_why_and_recorded_as_the_shutdown_s_doing(
    tmp_path: Path, upstream: Upstream
) -> None:
    served = serve(tmp_path, upstream)
    try:
        with sdk(served) as client:
            chunks = iter(client.chat.completions.create(model="story", messages=STORY, stream=True))
            received = [next(chunks)]
            served.proc.send_signal(signal.SIGTERM)  # the stream outlasts the grace (1 s) by far
            with pytest.raises(openai.APIError) as caught:
                for chunk in chunks:
                    received.append(chunk)
        assert caught.value.code == "gateway_shutdown"  # its last event says why: not a broken stream
        assert not any(c.choices and c.choices[0].finish_reason for c in received)
        assert "".join(c.choices[0].delta.content or "" for c in received if c.choices)
        assert served.proc.wait(30) == 0  # it stops by itself once the grace has run out
    finally:
        served.stop(signal.SIGKILL)
    row = only_row(tmp_path / "data")
    assert (row["status"], row["reason"]) == (503, "gateway_shutdown")  # not 499: the client stayed
    assert_billed_for_what_was_produced(row)
    assert row["output_tokens"] < 900  # what it produced before the cut, not the whole answer


def test_a_request_still_waiting_when_the_grace_runs_out_is_recorded_as_the_shutdown_s_doing(
    tmp_path: Path, upstream: Upstream
) -> None:
    arrived = threading.Event()
    upstream.hang(arrived=arrived)
    served = serve(tmp_path, upstream)
    errors: list[BaseException] = []

    def ask() -> None:
        with sdk(served) as client:
            try:
                client.chat.completions.create(model="late", messages=USER)
            except openai.APIError as error:
                errors.append(error)

    asker = threading.Thread(target=ask)
    try:
        asker.start()
        assert arrived.wait(20), "the request never reached the provider"
        served.proc.send_signal(signal.SIGTERM)
        asker.join(30)
        assert served.proc.wait(30) == 0  # it stops by itself once the grace has run out
    finally:
        served.stop(signal.SIGKILL)
    assert errors, "a request the shutdown cut short was answered"
    row = only_row(tmp_path / "data")
    assert (row["status"], row["reason"], row["alias"]) == (503, "gateway_shutdown", "late")
    assert row["input_tokens"] > 0 and row["output_tokens"] == 0  # the provider had the prompt
