"""Server-sent events: one incremental decoder for upstream streams, one encoder for the edge."""

from __future__ import annotations

Event = tuple[bytes, bytes | None]
"""One event: its data and its `event:` name (None for the default, unnamed kind)."""


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
        if not self._buffer and not self._pending_cr and chunk[-2:] == b"\n\n":
            if chunk[:6] == b"data: ":
                body = chunk[6:-2]
                if b"\n" not in body and b"\r" not in body:
                    return [(body, None)]  # the common read: exactly one single-line data event
            elif chunk[:7] == b"event: " and b"\r" not in chunk:
                block = chunk[:-2]
                if b"\n\n" not in block and (named := _named_data(block)) is not None:
                    return [named]  # or exactly one named event with one data line
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                chunk = chunk[:-1]
                self._pending_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._buffer = buffer
            return []
        if buffer[:6] == b"data: " and (lines := _data_lines(buffer[: end + 2])) is not None:
            self._buffer = buffer[end + 2 :]
            return lines  # the other common read: several events, each one data line
        *blocks, self._buffer = buffer.split(b"\n\n")
        events: list[Event] = []
        for block in blocks:
            if block[:6] == b"data: " and b"\n" not in block:
                events.append((block[6:], None))  # the common case, inline: one data line
            elif block[:7] == b"event: " and (named := _named_data(block)) is not None:
                events.append(named)  # the other common one: a name and one data line
            elif (event := _parse_block(block)) is not None:
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


def _data_lines(complete: bytes) -> list[Event] | None:
    """Complete events that are each one `data: ...` line, taken in one split (they are exactly
    that when the split leaves no other line break); None for any other mix."""
    datas = complete[6:-2].split(b"\n\ndata: ")
    if complete.count(b"\n") != 2 * len(datas):
        return None
    return [(data, None) for data in datas]


def _named_data(block: bytes) -> Event | None:
    """`event: NAME` then one `data: ...` line, as Anthropic and Cohere send every event; None for
    any other shape (then the general parser reads it)."""
    end = block.find(b"\n")
    if end < 0 or block[end + 1 : end + 7] != b"data: " or block.find(b"\n", end + 1) >= 0:
        return None
    return block[end + 7 :], block[7:end]


def _parse_block(block: bytes) -> Event | None:
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
    return b"\n".join(data), name


def encode(data: bytes, event: bytes | None = None) -> bytes:
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event + b"\ndata: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
