"""Logs cannot be forged: whatever a client puts in a path, a header or a model name, each log record
of `turnout serve` stays on one line (text and JSON formats), control characters written as escapes.

The gateway runs as `turnout serve` in its own process, so that its logging is configured exactly
as operators get it; its stderr is read whole once it has stopped."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest
import yaml
from aiohttp import web

from turnout.observability.logging import RedactingFilter, TextFormatter

from support.gateway import MASTER_KEY, UPSTREAM_KEY
from support.process import TURNOUT
from support.upstream import Upstream

FORGED = "2026-01-01 00:00:00,000 INFO    turnout: FORGED"
# every character that could end a line for some reader, or rewrite a terminal
CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@pytest.fixture
def failing_upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


async def _echoing_failure(request: web.Request) -> web.StreamResponse:
    """A provider failing with a message that quotes the request (turnout logs such messages)."""
    data = await request.json()
    quoted = f"model {data['model']} failed on: {data['messages'][0]['content']}"
    return web.json_response({"error": {"message": quoted, "type": "server_error", "code": None}}, status=500)


def _serve(tmp_path: Path, upstream: Upstream, fmt: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    config = tmp_path / "turnout.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"access_log": True},
                "storage": {"data_dir": str(tmp_path / "data")},
                "spend": {"unknown_prices": "record"},
                "routing": {"retries": {"attempts": 1}},
                "providers": {
                    "up": {
                        "type": "openai_compatible",
                        "base_url": upstream.base_url,
                        "api_key": "env:UP_KEY",
                    }
                },
                "models": {"up/*": {"provider": "up", "model": "*"}},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TURNOUT_", "OPENAI_"))}
    env |= {"TURNOUT_MASTER_KEY": MASTER_KEY, "UP_KEY": UPSTREAM_KEY}
    env |= {"TURNOUT_LOG_FORMAT": fmt, "TURNOUT_LOG_LEVEL": "info"}
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as out:
        proc = subprocess.Popen(
            [TURNOUT, "serve", "--config", str(config), "--port", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if match := re.search(rb"listening on http://127\.0\.0\.1:(\d+)", stderr.read_bytes()):
            return proc, int(match.group(1)), stderr
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("turnout serve did not start:\n" + stderr.read_text(errors="replace"))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def _send_raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_client_input_starts_a_log_line(tmp_path: Path, failing_upstream: Upstream, fmt: str) -> None:
    proc, port, stderr = _serve(tmp_path, failing_upstream, fmt)
    try:
        # a path with CR LF, a line separator, NEL and ESC (percent-encoded: the server decodes them),
        # and a header with raw NEL and LS bytes (HTTP allows such bytes in header values)
        path = "/v1/x%0D%0A" + FORGED.replace(" ", "%20") + "-PATH%E2%80%A8FORGED-LS%C2%85FORGED-NEL%1B%5B2J"
        answer = _send_raw(
            port,
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
            + b"X-Note: \xc2\x85FORGED-HEADER\xe2\x80\xa8FORGED-HEADER-LS\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 404 ")
        with openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=MASTER_KEY, max_retries=0
        ) as client:
            # a model name with control characters is refused outright: it reaches no log
            with pytest.raises(openai.BadRequestError, match="printable"):
                client.chat.completions.create(
                    model=f"up/m\r\n{FORGED}-MODEL", messages=[{"role": "user", "content": "hi"}]
                )
            # a prompt may hold anything, and a failing provider's message may quote it
            failing_upstream.then(_echoing_failure)
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(
                    model="up/m",
                    messages=[
                        {"role": "user", "content": f"\r\n{FORGED}-QUOTED\u2028FORGED-QUOTED-LS\x1b[31m"}
                    ],
                )
    finally:
        _stop(proc)
    text = stderr.read_text()
    assert not CONTROLS.search(text), "a control character reached the log"
    assert text.splitlines() == text.split("\n")[:-1]  # only LF ends lines, whoever reads them
    lines = [line for line in text.split("\n") if "FORGED" in line]
    if fmt == "json":
        messages = [orjson.loads(line)["message"] for line in lines]
    else:
        assert all(RECORD_START.match(line) for line in lines), lines
        messages = lines
    # the forgeries did reach the log, each inside a record of its own, written as escapes
    assert any(f"\\r\\n{FORGED}-PATH\\u2028FORGED-LS\\x85FORGED-NEL\\x1b[2J" in m for m in messages), text
    assert any(f"\\r\\n{FORGED}-QUOTED\\u2028FORGED-QUOTED-LS\\x1b[31m" in m for m in messages), text


def test_a_traceback_keeps_its_lines_marked_as_one_record() -> None:
    """Tracebacks are ours and keep their lines; each is marked as a continuation, and what an
    exception's message quotes from a client is escaped within it."""
    try:
        raise ValueError(f"unknown model 'm\n{FORGED}\u2028'")
    except ValueError:
        record = logging.LogRecord(
            "turnout.server", logging.ERROR, __file__, 1, "request %s failed\n", ("r1",), None
        )
        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    lines = TextFormatter().format(record).split("\n")
    assert lines[0].endswith("ERROR   turnout.server: request r1 failed")
    assert lines[1] == "  | Traceback (most recent call last):"
    assert all(line.startswith("  | ") for line in lines[1:]), lines
    assert lines[-2:] == ["  | ValueError: unknown model 'm", f"  | {FORGED}\\u2028'"]
