"""Server-sent events: one incremental decoder for upstream streams, one encoder for the edge."""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    data: bytes
    event: bytes | None = None


class SSEDecoder:
    """Feed raw bytes as they arrive; get back the events completed so far.

    Handles LF, CRLF and CR line endings (also when split across reads), comments, `event:`
    names and multi-line `data:`. `id:` and `retry:` are ignored: nothing turnout relays needs them.
    """

    __slots__ = ("_buffer", "_pending_cr")

    def __init__(self) -> None:
        self._buffer = b""
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[Event]:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                chunk = chunk[:-1]
                self._pending_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\n\n" not in buffer:
            self._buffer = buffer
            return []
        *blocks, self._buffer = buffer.split(b"\n\n")
        events = []
        for block in blocks:
            event = _parse_block(block)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[Event]:
        """Whatever is left when the stream ends (a final event without its blank line)."""
        rest, self._buffer = self._buffer, b""
        event = _parse_block(rest.strip(b"\n")) if rest.strip() else None
        return [event] if event is not None else []

    @property
    def pending(self) -> bool:
        return bool(self._buffer.strip())


def _parse_block(block: bytes) -> Event | None:
    if block.startswith(b"data: ") and b"\n" not in block:
        return Event(block[6:])  # the common case, one line
    data: list[bytes] = []
    name: bytes | None = None
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    if not data and name is None:
        return None
    return Event(b"\n".join(data), name)


def encode(data: bytes, event: bytes | None = None) -> bytes:
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event + b"\ndata: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
