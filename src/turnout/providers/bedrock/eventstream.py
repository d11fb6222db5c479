"""The `application/vnd.amazon.eventstream` framing ConverseStream answers with, decoded by
botocore's `EventStreamBuffer` (which checks both CRCs of each message).

Each message is a prelude (total length, headers length, CRC), typed headers, a payload and a CRC.
`:message-type` says what it is: an `event` (named by `:event-type`, the payload its JSON), an
`exception` (named by `:exception-type`, the payload `{"message": ...}`) or an `error` (the code and
message in `:error-code` / `:error-message` headers, no payload). Each becomes one `(payload, name)`
pair, the name prefixed with its message type: `event:contentBlockDelta`,
`exception:throttlingException`, `error:<code>`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any, cast

import orjson
from botocore.eventstream import EventStreamBuffer, ParserError

from turnout.domain.errors import UpstreamProtocolError

Event = tuple[bytes, bytes]


class EventStreamDecoder:
    """Feed raw bytes as they arrive; get back the messages completed so far."""

    def __init__(self, provider: str) -> None:
        self._buffer = EventStreamBuffer()
        self._provider = provider

    def feed(self, chunk: bytes) -> Iterator[Event]:
        """The messages `chunk` completed, one at a time: those before a corrupt message are
        handed on before its error is raised (so the client gets what came before it, however
        the reads fell)."""
        self._buffer.add_data(chunk)
        # botocore raises ParserError for a CRC mismatch or a length out of bounds, but lets through
        # what its header parser meets in a message whose CRCs are right: a header of an unknown
        # type (KeyError), a string that is not UTF-8 (ValueError), a value cut short (struct.error)
        messages = iter(self._buffer)
        while True:
            try:
                message = next(messages, None)
                if message is None:
                    return
                # (botocore-stubs type `headers` as int; it is the decoded header dict)
                event = _event(cast(Mapping[str, Any], message.headers), message.payload)
            except (ParserError, KeyError, IndexError, ValueError, struct.error):
                raise UpstreamProtocolError(
                    f"The provider '{self._provider}' sent a corrupt event-stream message."
                ) from None
            yield event


def _event(headers: Mapping[str, Any], payload: bytes) -> Event:
    kind = headers.get(":message-type")
    if kind == "event":
        return payload, b"event:" + str(headers.get(":event-type", "")).encode()
    if kind == "exception":
        return payload, b"exception:" + str(headers.get(":exception-type", "")).encode()
    if kind != "error":
        return payload, b"other:" + str(kind).encode()  # a message type added later: skipped
    code = str(headers.get(":error-code", "unknown"))
    message = headers.get(":error-message")
    return orjson.dumps({"message": None if message is None else str(message)}), b"error:" + code.encode()
