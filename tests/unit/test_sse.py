"""The SSE decoder, fed the way sockets deliver: split anywhere, any line ending."""

from __future__ import annotations

import pytest

from turnout.providers.sse import Event, SSEDecoder, _parse_block, encode

STREAM = (
    b'data: {"a":1}\n\n'
    b": keep-alive comment\n\n"
    b'event: error\ndata: {"error":{}}\n\n'
    b"data: line one\ndata: line two\n\n"
    b"id: 7\nretry: 100\ndata: [DONE]\n\n"
)
EXPECTED: list[Event] = [
    (b'{"a":1}', None),
    (b'{"error":{}}', b"error"),
    (b"line one\nline two", None),
    (b"[DONE]", None),
]


def _decode(chunks: list[bytes]) -> list[Event]:
    decoder = SSEDecoder()
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    return events + decoder.flush()


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_every_split_point_and_line_ending_gives_the_same_events(ending: bytes) -> None:
    stream = STREAM.replace(b"\n", ending)
    assert _decode([stream]) == EXPECTED
    for cut in range(1, len(stream)):
        assert _decode([stream[:cut], stream[cut:]]) == EXPECTED, cut


def test_byte_by_byte() -> None:
    assert _decode([bytes([b]) for b in STREAM.replace(b"\n", b"\r\n")]) == EXPECTED


def test_an_unterminated_last_event_is_returned_by_flush() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a":1}\n\ndata: [DONE]') == [(b'{"a":1}', None)]
    assert decoder.pending
    assert decoder.flush() == [(b"[DONE]", None)]


def test_field_without_space_and_encoding() -> None:
    assert _decode([b"data:x\n\n"]) == [(b"x", None)]
    assert encode(b"{}") == b"data: {}\n\n"
    assert encode(b"{}", b"ping") == b"event: ping\ndata: {}\n\n"


@pytest.mark.parametrize(
    "block",
    [
        b"event: message_start\ndata: {}",
        b"event: \ndata: {}",
        b"event: ping\ndata: ",
        b"event: two\ndata: a\ndata: b",
        b"event: commented\n: keep-alive\ndata: x",
        b"event: named-only",
        b"event: x\nid: 7\ndata: y",
    ],
)
def test_named_events_read_the_same_on_the_fast_path(block: bytes) -> None:
    general = _parse_block(block)
    assert SSEDecoder().feed(block + b"\n\n") == ([general] if general is not None else [])
    assert SSEDecoder().feed(b"data: first\n\n" + block + b"\n\n")[1:] == ([general] if general else [])


DATA_ONLY = [b'data: {"n":%d}\n\n' % n for n in range(5)] + [b"data: \n\n", b"data: [DONE]\n\n"]


@pytest.mark.parametrize(
    "odd",
    [b"", b"data: one\ndata: two\n\n", b": comment\n\n", b"event: x\ndata: {}\n\n", b"\n", b"data:x\n\n"],
)
def test_many_events_in_one_read_are_the_events_read_one_by_one(odd: bytes) -> None:
    """A read holding several events (an upstream ahead of turnout) decodes as its events fed
    one at a time, whatever it mixes in, and keeps a partial last event for the next read."""
    events = [*DATA_ONLY[:3], odd, *DATA_ONLY[3:]]
    one_by_one = _decode(events)
    assert _decode([b"".join(events)]) == one_by_one
    whole = b"".join(events)
    for cut in range(1, len(whole)):
        assert _decode([whole[:cut], whole[cut:]]) == one_by_one, cut
