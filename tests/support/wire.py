"""Wire bodies for pure unit tests of the providers' translators: a recorded upstream body fed to a
stream translator through a real `UpstreamResponse` (as its connection would feed it, no socket),
and Bedrock's event-stream fixtures encoded into binary frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from turnout.domain.completions import chunk_json
from turnout.domain.usage import Usage
from turnout.providers.http.connection import Connection, Deadlines, UpstreamResponse

from support.fuzz import eventstream_message, string_header
from support.upstream import fixture_bytes, fixture_json


def relay(
    make: Callable[[UpstreamResponse], Any], body: bytes | Sequence[bytes]
) -> tuple[list[Any], Usage | None]:
    """What the stream translator `make` builds yields for an upstream `body` (one read, or the
    given reads): each chunk as the client gets its JSON (or as bytes when it is SSE the
    translator passes through), and the usage it read. A failure raises the translator's
    TurnoutError."""
    reads = [body] if isinstance(body, bytes) else list(body)

    async def run() -> tuple[list[Any], Usage | None]:
        loop = asyncio.get_running_loop()
        connection = Connection(loop, lambda _: None)
        response = UpstreamResponse(connection, Deadlines(loop.time(), 3600, 3600, 3600))
        connection.response = response
        for data in reads:
            response.feed(data)
        response.finish()
        stream = make(response)
        out: list[Any] = []
        try:
            async for batch in stream:
                for chunk in batch:
                    data = chunk_json(chunk)
                    out.append(data if data.startswith(b"event: ") else orjson.loads(data))
        finally:
            await stream.aclose()
        return out, stream.usage

    return asyncio.run(run())


def bedrock_message(kind: str, name: str, payload: dict[str, Any]) -> bytes:
    """One ConverseStream message: an `event` or `exception` named `name`, or an `error` whose
    code is `name` and whose message is `payload["message"]` (in headers, as Bedrock sends it)."""
    if kind == "error":
        headers = [
            string_header(":message-type", "error"),
            string_header(":error-code", name),
            string_header(":error-message", payload["message"]),
        ]
        return eventstream_message(headers, b"")
    header = ":event-type" if kind == "event" else ":exception-type"
    headers = [
        string_header(":message-type", kind),
        string_header(header, name),
        string_header(":content-type", "application/json"),
    ]
    return eventstream_message(headers, json.dumps(payload).encode())


def bedrock_stream(name: str, drop_last: int = 0) -> bytes:
    """A `stream_*.json` fixture of tests/fixtures/providers/bedrock as the bytes Bedrock sends
    (less its last `drop_last` messages)."""
    messages = fixture_json(name, "bedrock")
    kept = messages[: len(messages) - drop_last]
    return b"".join(bedrock_message(m["type"], m["name"], m["payload"]) for m in kept)


__all__ = ["bedrock_message", "bedrock_stream", "fixture_bytes", "fixture_json", "relay"]
