"""A client that stops reading costs turnout a bounded amount of memory, and holds the upstream
back instead: measured on `turnout serve` as a real process (its resident memory, read from /proc)
against a real upstream that counts what it managed to send."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from support.gateway import MASTER_KEY
from support.process import Served, start_serve
from support.upstream import Upstream

MiB = 1024 * 1024
PIECE = "0123456789abcdef" * 64  # each event carries 1 KiB of answer text
USAGE_EVENT = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
)
BOUND = 4 * MiB  # what one paused stream may cost the gateway, all buffers included


def _event(i: int) -> bytes:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": f"{i:08d}{PIECE}"}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _answer(events: int) -> str:
    return "".join(f"{i:08d}{PIECE}" for i in range(events))


class CountingStream:
    """An upstream answer streamed event by event; `sent` is how many bytes the upstream's
    writes have handed to TCP (a write waits while the connection's buffers are full)."""

    def __init__(self, events: int, *, compressed: bool = False) -> None:
        self.events = events
        self.compressed = compressed
        self.sent = 0
        self.finished = threading.Event()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "text/event-stream"}
        if self.compressed:
            headers["Content-Encoding"] = "gzip"
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        for piece in self._pieces():
            await response.write(piece)
            self.sent += len(piece)
        await response.write_eof()
        self.finished.set()
        return response

    def _pieces(self) -> Iterator[bytes]:
        events = (_event(i) for i in range(self.events))
        if not self.compressed:
            yield from events
            yield USAGE_EVENT + b"data: [DONE]\n\n"
            return
        body = gzip.compress(b"".join(events) + USAGE_EVENT + b"data: [DONE]\n\n")
        for start in range(0, len(body), 16 * 1024):
            yield body[start : start + 16 * 1024]


def _status(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory field, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for process {pid}")


def _reset_peak(pid: int) -> None:
    """Restart VmHWM (the process's peak resident memory) from its current resident memory."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@pytest.fixture
def served(tmp_path: Path, upstream: Upstream) -> Iterator[Served]:
    config = tmp_path / "turnout.yaml"
    doc: dict[str, Any] = {
        "storage": {"data_dir": str(tmp_path / "data")},
        "spend": {"unknown_prices": "record"},
        # the copy of the answer kept to continue a broken stream elsewhere is bounded on its
        # own; this measures everything else a stream holds
        "routing": {"retries": {"attempts": 1}, "stream_resume": False},
        "providers": {
            "up": {"type": "openai_compatible", "base_url": upstream.base_url, "api_key": "env:UP"}
        },
        "models": {"m": {"provider": "up", "model": "m"}},
    }
    config.write_text(yaml.safe_dump(doc))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "OPENAI_"))}
    env = {**clean, "TURNOUT_MASTER_KEY": MASTER_KEY, "UP": "sk-up", "TURNOUT_LOG_LEVEL": "warning"}
    server = start_serve(config, env)
    yield server
    server.stop(signal.SIGKILL)


def _request() -> bytes:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: turnout\r\n"
        f"authorization: Bearer {MASTER_KEY}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body.encode()


def _slow_client(port: int) -> socket.socket:
    """A client that sends a stream request and does not read: its receive buffer is small."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    client.sendall(_request())
    return client


def _read_all(client: socket.socket) -> bytes:
    received = bytearray()
    client.settimeout(60)
    while not received.endswith(b"\r\n0\r\n\r\n"):  # the last chunk of a chunked body
        data = client.recv(64 * 1024)
        assert data, "the gateway closed the connection before the stream's end"
        received += data
    client.close()
    return bytes(received)


def _answer_text(raw: bytes) -> str:
    """The answer a client reads from a raw chunked SSE response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower()
    payload, at = bytearray(), 0
    while at < len(body):
        line_end = body.index(b"\r\n", at)
        size = int(body[at:line_end], 16)
        payload += body[line_end + 2 : line_end + 2 + size]
        at = line_end + 2 + size + 2
    text = []
    for event in bytes(payload).split(b"\n\n"):
        if event.startswith(b"data: {"):
            chunk = json.loads(event[6:])
            text += [c["delta"].get("content") or "" for c in chunk["choices"]]
    return "".join(text)


def _until_still(read: Any, *, rounds: int = 10, interval: float = 0.1, limit: float = 60.0) -> int:
    """`read()` once it gives the same value `rounds` times running (the transfer has stopped)."""
    deadline = time.monotonic() + limit
    last, same = read(), 0
    while same < rounds and time.monotonic() < deadline:
        time.sleep(interval)
        now = read()
        same = same + 1 if now == last else 0
        last = now
    return int(last)


def _warm_up(served: Served, upstream: Upstream) -> None:
    """One small stream of the same shape, read at once: what a first request builds (imports,
    caches, pools) is not counted against the paused one."""
    for compressed in (False, True):
        upstream.then(CountingStream(200, compressed=compressed))
        with _slow_client(served.port) as client:
            assert _answer_text(_read_all(client)) == _answer(200)


def test_a_paused_client_holds_the_upstream_back_and_costs_bounded_memory(
    served: Served, upstream: Upstream
) -> None:
    events = 32 * 1024  # 32 MiB of answer: far more than the sockets' kernel buffers hold
    stream = CountingStream(events)
    _warm_up(served, upstream)
    upstream.then(stream)
    pid = served.proc.pid
    _reset_peak(pid)
    before = _status(pid, "VmRSS")

    with _slow_client(served.port) as client:
        sent_while_paused = _until_still(lambda: stream.sent)
        assert sent_while_paused < events * len(_event(0)) // 2  # the upstream was held back
        assert not stream.finished.is_set()
        assert _status(pid, "VmHWM") - before < BOUND

        text = _answer_text(_read_all(client))  # the client reads at last: everything arrives
    assert text == _answer(events)
    assert stream.finished.is_set()
    assert _status(pid, "VmHWM") - before < BOUND


def test_a_compressed_answer_is_not_expanded_ahead_of_its_reader(served: Served, upstream: Upstream) -> None:
    # 16 MiB of answer is about 100 KiB of gzip: the upstream sends it all at once, and turnout
    # must not decompress it faster than the client reads.
    events = 16 * 1024
    stream = CountingStream(events, compressed=True)
    _warm_up(served, upstream)
    upstream.then(stream)
    pid = served.proc.pid
    _reset_peak(pid)
    before = _status(pid, "VmRSS")

    with _slow_client(served.port) as client:
        _until_still(lambda: _status(pid, "VmRSS") // MiB)
        assert _status(pid, "VmHWM") - before < BOUND

        text = _answer_text(_read_all(client))
    assert text == _answer(events)
    assert _status(pid, "VmHWM") - before < BOUND
