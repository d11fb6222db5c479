"""Fuzzing the parsers: the SSE codec, the Bedrock event-stream decoder, every wire format's stream
translator and reader of whole answers, the request-body decoders and the upstream error-body
parsers (the targets in support/fuzz.py). Whatever bytes arrive, each gives a result or one of
turnout's documented errors, never another exception; and the same bytes split at other read
boundaries give the same result.

Two halves: the committed corpus (tests/fixtures/fuzz/<target>/: seeds from the recorded fixtures
and every failure found, each a regression test) replayed on every run, and Hypothesis properties
with a bounded, derandomised budget. `TURNOUT_FUZZ_EXAMPLES=N` runs N random examples per property
instead (a longer session; see tests/fuzz/README.md).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from support.fuzz import (
    TARGETS,
    admin_bodies,
    corpus,
    eventstream_message,
    string_header,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "providers"
LONG = int(os.environ.get("TURNOUT_FUZZ_EXAMPLES", "0"))


def budget(examples: int) -> settings:
    """`examples` derandomised examples in CI; TURNOUT_FUZZ_EXAMPLES random ones in a long session."""
    return settings(
        max_examples=LONG or examples,
        derandomize=not LONG,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )


# A failing example may be a long stream: its report is long, which is no reason to fail differently.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# botocore decodes every event-stream message of a read before turnout handles the first: when one
# is corrupt, the messages before it in the same read are not handled, so which error ends the
# stream (a corrupt message, or an exception message before it) depends on the reads. Whether it
# fails, and everything it yields when it does not, does not.
ANY_ERROR_ALIKE = frozenset({"eventstream", "bedrock_stream"})


def _alike(outcome: object) -> object:
    if isinstance(outcome, tuple) and outcome[:1] == ("error",):
        return ("error",)
    return [_alike(o) for o in outcome] if isinstance(outcome, list) else outcome


def _clockless(outcome: object, depth: int = 3) -> object:
    """`outcome` without the `created` times a translated answer takes from the clock (two reads
    a second apart differ there, and nowhere else): in its answers and chunks, the outer levels
    only (a hostile input nests deeper than recursion may go)."""
    if depth == 0:
        return outcome
    if isinstance(outcome, dict):
        return {k: v for k, v in outcome.items() if k != "created"}
    if isinstance(outcome, list | tuple):
        return type(outcome)(_clockless(o, depth - 1) for o in outcome)
    return outcome


def check(target: str, data: bytes, cuts: Sequence[int]) -> None:
    """The property every target has: a result or a documented error for `data`, the same one
    however its bytes are split into reads."""
    whole = _clockless(TARGETS[target]([data]))
    if cuts:
        pieces = _clockless(TARGETS[target](split(data, cuts)))
        if target in ANY_ERROR_ALIKE:
            whole, pieces = _alike(whole), _alike(pieces)
        assert pieces == whole, f"another result when read in pieces at {cuts}"


# --------------------------------------------------------------------------- the corpus, replayed


def _replay_splits(data: bytes) -> list[list[int]]:
    """Byte by byte, and a few pseudo-random splits (seeded by the input: the same every run)."""
    rng = random.Random(hashlib.sha256(data).digest())
    splits = [list(range(1, len(data)))] if len(data) <= 20_000 else []
    return splits + [sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, k))) for k in (1, 2, 7)]


@pytest.mark.parametrize(
    "path",
    [p for target in TARGETS for p in corpus(target)],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_the_corpus_replays_cleanly(path: Path) -> None:
    data = path.read_bytes()
    for cuts in _replay_splits(data):
        check(path.parent.name, data, cuts)


def test_every_target_has_a_corpus() -> None:
    for target in TARGETS:
        assert list(corpus(target)), target


# --------------------------------------------------------------------------- JSON, made hostile

DEEP = "\x00deep\x00"  # replaced after serialising by a nesting too deep to build as objects

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)  # JSON cannot carry lone surrogates
NUMBERS = (
    st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 1e308, -0.0, 5e-324])
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT | st.just(DEEP)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
# Depths around the limits that matter: orjson writes 254 levels at most and reads 1024; msgspec
# reads as deep as the interpreter's recursion limit lets it.
DEPTHS = st.sampled_from([2, 100, 254, 255, 256, 500, 990, 1000, 1024, 1025, 5000]) | st.integers(1, 3000)


def dumps(value: Any, draw: st.DrawFn) -> bytes:
    """JSON text for `value` (integers of any size, as upstreams may send them), with each DEEP
    marker replaced by a nesting of a drawn depth."""
    text = json.dumps(value, ensure_ascii=draw(st.booleans())).encode()
    while (at := text.find(json.dumps(DEEP).encode())) >= 0:
        depth, kind = draw(DEPTHS), draw(st.sampled_from([b"[]", b'{"a":}']))
        inner = (
            b"[" * depth + b"1" + b"]" * depth if kind == b"[]" else b'{"a":' * depth + b"1" + b"}" * depth
        )
        text = text[:at] + inner + text[at + len(json.dumps(DEEP)) :]
    return text


Path_ = tuple[Any, ...]


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found: list[Path_] = []
    for key, value in items:
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key))
    return found


def _at(node: Any, path: Path_) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[Any], most: int = 3) -> Any:
    """A seed document with up to `most` hostile edits: a value replaced by any JSON (deep
    nesting, huge numbers, unicode...), a field removed, or a field added with any value."""
    body = json.loads(json.dumps(draw(st.sampled_from(seeds))))
    for _ in range(draw(st.integers(0, most))):
        paths = _paths(body)
        kind = draw(st.sampled_from(["replace", "replace", "deep", "delete", "add"]))
        if kind in ("replace", "deep") and paths:
            path = draw(st.sampled_from(paths))
            _at(body, path[:-1])[path[-1]] = DEEP if kind == "deep" else draw(JSON)
        elif kind == "delete" and paths:
            path = draw(st.sampled_from(paths))
            del _at(body, path[:-1])[path[-1]]
        elif kind == "add":
            containers = [p for p in [(), *paths] if isinstance(_at(body, p), dict)]
            if containers:
                _at(body, draw(st.sampled_from(containers)))[draw(TEXT)] = draw(JSON)
    return body


@st.composite
def corrupted(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` truncated, or with a few bytes flipped, inserted or removed."""
    raw = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        how = draw(st.sampled_from(["truncate", "flip", "insert", "remove"]))
        if how == "truncate":
            del raw[at:]
        elif how == "flip" and at < len(raw):
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "insert":
            raw[at:at] = draw(
                st.binary(min_size=1, max_size=4) | st.sampled_from([b"\r", b"\n", b"\r\n", b":"])
            )
        elif how == "remove":
            del raw[at : at + draw(st.integers(1, 4))]
    return bytes(raw)


CUTS = st.lists(st.integers(0, 2**16), max_size=8)


# --------------------------------------------------------------------------- SSE streams


def _sse_fixture(wire: str) -> list[tuple[bytes | None, Any]]:
    """The (event name, JSON data) of every event in a wire format's recorded streams."""
    events: list[tuple[bytes | None, Any]] = []
    for path in sorted((FIXTURES / wire).glob("*.sse")):
        for block in path.read_bytes().split(b"\n\n"):
            name, data = None, None
            for line in block.splitlines():
                if line.startswith(b"event:"):
                    name = line[6:].strip()
                elif line.startswith(b"data:"):
                    data = line[5:].strip()
            if data is not None and data != b"[DONE]":
                events.append((name, json.loads(data)))
    return events


LINE_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def sse_text(draw: st.DrawFn, events: Sequence[tuple[bytes | None, Any]], done: bool = False) -> bytes:
    """Server-sent events: recorded events (their JSON made hostile, dropped, repeated, reordered),
    written with any line ending, comments, split data lines; then maybe corrupted."""
    chosen = draw(st.lists(st.sampled_from(list(events)), min_size=0, max_size=8))
    if not draw(st.integers(0, 3)):
        chosen = list(events)  # the recorded stream as it is, now and then
    out = b"" if draw(st.booleans()) else b": comment" + draw(LINE_ENDS)
    for name, data in chosen:
        end = draw(LINE_ENDS)
        raw = (
            dumps(draw(mutated([data], most=2)), draw)
            if draw(st.integers(0, 2))
            else json.dumps(data).encode()
        )
        if name is not None and draw(st.integers(0, 5)):
            out += b"event: " + name + end
        if b"\n" not in raw and draw(st.integers(0, 4)) == 0:
            cut = draw(st.integers(0, len(raw)))
            out += b"data: " + raw[:cut] + end + b"data:" + raw[cut:] + end  # one value on two data lines
        else:
            out += b"data: " + raw + end
        out += draw(LINE_ENDS)
    if done:
        out += b"data: [DONE]\n\n"
    return draw(corrupted(out)) if not draw(st.integers(0, 4)) else out


SSE_LINES = st.lists(
    st.tuples(
        st.sampled_from([b"data", b"event", b"id", b"retry", b"", b":", b"data ", b"x"]),
        st.sampled_from([b"", b":", b": ", b":  "]),
        st.binary(max_size=10).filter(lambda b: b"\n" not in b and b"\r" not in b)
        | st.sampled_from([b"[DONE]", b"{}", b"data: x", b"\xef\xbb\xbf"]),
        LINE_ENDS,
    ),
    max_size=20,
).map(lambda lines: b"".join(field + sep + value + end for field, sep, value, end in lines))


@budget(400)
@given(data=SSE_LINES | st.binary(max_size=200) | sse_text(_sse_fixture("anthropic")), cuts=CUTS)
def test_sse_decoding_is_the_same_however_the_bytes_are_split(data: bytes, cuts: list[int]) -> None:
    check("sse", data, cuts)


WIRE_STREAMS = {
    "openai_stream": ("openai", True),
    "anthropic_stream": ("anthropic", False),
    "gemini_stream": ("gemini", False),
    "cohere_stream": ("cohere", False),
}


@pytest.mark.parametrize("target", sorted(WIRE_STREAMS))
@budget(150)
@given(data=st.data())
def test_stream_translators_give_chunks_or_a_documented_error(target: str, data: st.DataObject) -> None:
    wire, done = WIRE_STREAMS[target]
    text = data.draw(sse_text(_sse_fixture(wire), done=done), label="stream")
    check(target, text, data.draw(CUTS, label="cuts"))


# --------------------------------------------------------------------------- Bedrock's event stream

HEADER_NAMES = st.sampled_from(
    [":message-type", ":event-type", ":exception-type", ":error-code", ":error-message", ":content-type"]
) | st.text(max_size=6)
HEADER_VALUES = st.one_of(
    st.tuples(st.integers(0, 1), st.just(b"")),  # true, false
    st.tuples(st.just(2), st.binary(min_size=1, max_size=1)),
    st.tuples(st.just(3), st.binary(min_size=2, max_size=2)),
    st.tuples(st.just(4), st.binary(min_size=4, max_size=4)),
    st.tuples(st.sampled_from([5, 8]), st.binary(min_size=8, max_size=8)),
    st.tuples(st.sampled_from([6, 7]), st.binary(max_size=12).map(lambda b: struct.pack(">H", len(b)) + b)),
    st.tuples(st.just(7), st.sampled_from(["event", "exception", "error", "messageStop", "x"]).map(
        lambda s: struct.pack(">H", len(s)) + s.encode())),
    st.tuples(st.just(9), st.binary(min_size=16, max_size=16)),
    st.tuples(st.integers(0, 255), st.binary(max_size=20)),  # any type, any bytes: lengths that lie
)  # fmt: skip


def _bedrock_fixture() -> list[dict[str, Any]]:
    return [
        m for path in sorted(FIXTURES.glob("bedrock/stream_*.json")) for m in json.loads(path.read_bytes())
    ]


@st.composite
def bedrock_messages(draw: st.DrawFn) -> bytes:
    """Event-stream messages with correct CRCs: recorded events (payloads made hostile), messages
    with headers of any type and value, and now and then bytes corrupted after framing."""
    out = b""
    recorded = _bedrock_fixture()
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 3)):
            m = draw(st.sampled_from(recorded))
            named = ":event-type" if m["type"] == "event" else ":exception-type"
            headers = [string_header(":message-type", m["type"]), string_header(named, m["name"])]
            payload = dumps(draw(mutated([m["payload"]], most=2)), draw)
        else:
            headers = [
                (name.encode(), kind, value)
                for name, (kind, value) in draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4))
            ]
            payload = draw(st.binary(max_size=30) | st.just(b'{"message": "boom"}'))
        out += eventstream_message(headers, payload)
    return draw(corrupted(out)) if out and not draw(st.integers(0, 5)) else out


@budget(300)
@given(data=bedrock_messages(), cuts=CUTS)
def test_event_stream_decoding_gives_messages_or_a_documented_error(data: bytes, cuts: list[int]) -> None:
    check("eventstream", data, cuts)


@budget(150)
@given(data=bedrock_messages(), cuts=CUTS)
def test_bedrock_translation_gives_chunks_or_a_documented_error(data: bytes, cuts: list[int]) -> None:
    check("bedrock_stream", data, cuts)


# --------------------------------------------------------------------------- request bodies


def _seeds(target: str) -> list[Any]:
    return [json.loads(p.read_bytes()) for p in corpus(target) if p.name.startswith("seed-")]


@st.composite
def request_bodies(draw: st.DrawFn, target: str) -> bytes:
    body = draw(mutated(_seeds(target)) | JSON)
    raw = dumps(body, draw)
    return draw(corrupted(raw)) if not draw(st.integers(0, 6)) else raw


@pytest.mark.parametrize(
    "target",
    [
        "chat_request",
        "embedding_request",
        "anthropic_request",
        "responses_request",
        "message_batch",
        "media_request",
    ],
)
@budget(250)
@given(data=st.data())
def test_request_decoders_give_a_request_or_a_documented_error(target: str, data: st.DataObject) -> None:
    check(target, data.draw(request_bodies(target), label="body"), [])


@pytest.mark.parametrize("target", ["batch_form", "batch_file"])
@budget(250)
@given(data=st.data())
def test_batch_uploads_give_their_parts_or_a_documented_error(target: str, data: st.DataObject) -> None:
    """A batch upload's form and file, a seed with a stretch of it replaced by any bytes."""
    seed = data.draw(st.sampled_from([p.read_bytes() for p in corpus(target)]), label="seed")
    start = data.draw(st.integers(0, len(seed)), label="start")
    end = data.draw(st.integers(start, len(seed)), label="end")
    junk = data.draw(st.binary(max_size=40) | st.sampled_from([b"\r\n", b"--xx", b"\r\n\r\n", b'"', b"\n"]))
    check(target, seed[:start] + junk + seed[end:], data.draw(CUTS, label="cuts"))


def _value_for(info: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    """Values of a msgspec type, and hostile ones of any other."""
    plausible: st.SearchStrategy[Any]
    if isinstance(info, msgspec.inspect.StructType):
        plausible = st.fixed_dictionaries(
            {}, optional={f.encode_name: _value_for(f.type) for f in info.fields}
        )
    elif isinstance(info, msgspec.inspect.UnionType):
        plausible = st.one_of([_value_for(t) for t in info.types])
    elif isinstance(info, msgspec.inspect.LiteralType):
        plausible = st.sampled_from(info.values)
    elif isinstance(info, msgspec.inspect.StrType):
        plausible = TEXT | st.sampled_from(
            ["10", "0.000001", "1e3", "-5", "30d", "1h", "a@b.c", "UTC", "NaN"]
        )
    else:
        plausible = JSON
    return plausible | JSON


@st.composite
def admin_requests(draw: st.DrawFn) -> bytes:
    name, kind = draw(st.sampled_from(sorted(admin_bodies().items())))
    body = draw(_value_for(msgspec.inspect.type_info(kind)))
    return name.encode() + b"\n" + dumps(body, draw)


@budget(300)
@given(data=admin_requests())
def test_admin_bodies_decode_or_give_a_documented_error(data: bytes) -> None:
    check("admin_body", data, [])


# --------------------------------------------------------------------------- upstream error bodies


@st.composite
def error_answers(draw: st.DrawFn) -> bytes:
    seeds = [json.loads(p.read_bytes()) for p in sorted(FIXTURES.glob("*/error_*.json"))]
    body = (
        dumps(draw(mutated(seeds) | JSON), draw) if draw(st.integers(0, 4)) else draw(st.binary(max_size=60))
    )
    status = str(draw(st.integers(0, 999))).encode()
    retry_after = draw(
        st.sampled_from(
            [b"", b"2", b"0.5", b"-1", b"1e400", b"nan", b"inf", b"Wed, 21 Oct 2015 07:28:00 GMT"]
        )
        | st.binary(max_size=30).filter(lambda b: b"\n" not in b)
        | NUMBERS.map(lambda n: str(n).encode())
    )
    return status + b"\n" + retry_after + b"\n" + body


@budget(300)
@given(data=error_answers())
def test_upstream_error_bodies_map_onto_the_error_tree(data: bytes) -> None:
    check("error_body", data, [])


# --------------------------------------------------------------------------- whole answers

ANSWER_FIXTURES = [
    "openai/chat_completion*.json", "anthropic/message*.json", "bedrock/converse*.json",
    "gemini/generate_content.json", "gemini/function_call.json", "gemini/*_blocked.json", "cohere/chat*.json",
]  # fmt: skip


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    seeds = [
        json.loads(p.read_bytes()) for pattern in ANSWER_FIXTURES for p in sorted(FIXTURES.glob(pattern))
    ]
    raw = dumps(draw(mutated(seeds) | JSON), draw)
    return draw(corrupted(raw)) if not draw(st.integers(0, 6)) else raw


@budget(300)
@given(data=answers())
def test_whole_answers_translate_or_give_a_documented_error(data: bytes) -> None:
    check("answer", data, [])


@st.composite
def forms(draw: st.DrawFn) -> bytes:
    """A seed form with its bytes corrupted (its boundary, headers, parts cut or changed), or any
    bytes under a form's content type."""
    seeds = [p.read_bytes() for p in corpus("multipart_form") if p.name.startswith("seed-")]
    if not draw(st.integers(0, 4)):
        return b"multipart/form-data; boundary=b0undary\n" + draw(st.binary(max_size=300))
    return draw(corrupted(draw(st.sampled_from(seeds))))


@budget(300)
@given(data=forms())
def test_forms_give_a_transcription_request_or_a_documented_error(data: bytes) -> None:
    check("multipart_form", data, [])


@st.composite
def media_answers(draw: st.DrawFn) -> bytes:
    seeds = [json.loads(p.read_bytes()) for p in corpus("media_answer") if p.name.startswith("seed-")]
    raw = dumps(draw(mutated(seeds) | JSON), draw)
    return draw(corrupted(raw)) if not draw(st.integers(0, 6)) else raw


@budget(200)
@given(data=media_answers())
def test_image_and_transcription_answers_are_read_or_give_a_documented_error(data: bytes) -> None:
    check("media_answer", data, [])
