"""The parsers under fuzz, each as one target: the input's pieces in (the bytes as a socket might
deliver them), what the parser made of them out. A target lets turnout's own errors (TurnoutError)
through as outcomes and raises anything else: any other exception is a bug.

Shared by the properties and the corpus replay (tests/test_fuzz_parsers.py) and the atheris
harness (tests/fuzz/atheris_harness.py), so that all three run the same code on the same inputs.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import orjson

from turnout.batches.jsonl import read_batch_input
from turnout.batches.message_batches import read_message_batch
from turnout.batches.service import MAX_UPLOAD_PARTS
from turnout.domain import media, multipart
from turnout.domain.chat import (
    counted_prompt_tokens,
    estimated_prompt_tokens,
    message_has_images,
    parse_chat_request,
    prompt_characters,
)
from turnout.domain.completions import chunk_json
from turnout.domain.embeddings import parse_embedding_request
from turnout.domain.errors import TurnoutError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.domain.prompt_bounds import byte_bound, o200k_bound
from turnout.inbound import anthropic_messages
from turnout.inbound import responses_request as responses_inbound
from turnout.providers import upstream_errors
from turnout.providers.anthropic import errors as anthropic_errors
from turnout.providers.anthropic import translate as anthropic_translate
from turnout.providers.anthropic import wire as anthropic_wire
from turnout.providers.anthropic.stream import AnthropicStream, NativeAnthropicStream
from turnout.providers.bedrock import errors as bedrock_errors
from turnout.providers.bedrock import translate as bedrock_translate
from turnout.providers.bedrock import wire as bedrock_wire
from turnout.providers.bedrock.eventstream import EventStreamDecoder
from turnout.providers.bedrock.stream import BedrockStream
from turnout.providers.cohere import errors as cohere_errors
from turnout.providers.cohere import translate as cohere_translate
from turnout.providers.cohere import wire as cohere_wire
from turnout.providers.cohere.stream import CohereStream
from turnout.providers.gemini import errors as gemini_errors
from turnout.providers.gemini import translate as gemini_translate
from turnout.providers.gemini import wire as gemini_wire
from turnout.providers.gemini.stream import GeminiStream
from turnout.providers.http.connection import Connection, Deadlines, UpstreamResponse
from turnout.providers.openai_compatible import errors as openai_errors
from turnout.providers.openai_compatible import media as openai_media
from turnout.providers.openai_compatible import wire as openai_wire
from turnout.providers.openai_compatible.stream import OpenAIStream
from turnout.providers.request_json import request_json
from turnout.providers.sse import SSEDecoder
from turnout.server import admin, admin_billing, admin_budgets, admin_teams
from turnout.server.admin_body import decode_body

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "fuzz"
PROVIDER = "up"

Target = Callable[[Sequence[bytes]], object]


def failure(error: TurnoutError) -> tuple[str, str, str]:
    """A documented error as an outcome (compared across chunkings)."""
    return ("error", type(error).__name__, error.message)


# --------------------------------------------------------------------------- SSE and event streams


def sse(chunks: Sequence[bytes]) -> object:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return [*events, *decoder.flush()]


def eventstream(chunks: Sequence[bytes]) -> object:
    decoder = EventStreamDecoder(PROVIDER)
    events: list[tuple[bytes, bytes]] = []
    try:
        for chunk in chunks:
            events.extend(decoder.feed(chunk))
    except TurnoutError as error:
        return failure(error)  # the messages decoded before a corrupt one may depend on the reads
    return events


def eventstream_message(headers: Sequence[tuple[bytes, int, bytes]], payload: bytes) -> bytes:
    """One AWS event-stream message with correct lengths and CRCs; each header is (name, type,
    encoded value) as the wire has it (a string's value is its 2-byte length and bytes)."""
    encoded = b"".join(
        bytes([len(name) & 0xFF]) + name + bytes([kind]) + value for name, kind, value in headers
    )
    prelude = struct.pack(">II", 16 + len(encoded) + len(payload), len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def string_header(name: str, value: str) -> tuple[bytes, int, bytes]:
    raw = value.encode()
    return name.encode(), 7, struct.pack(">H", len(raw)) + raw


# --------------------------------------------------------------------------- stream translators


def _relay(make: Callable[[UpstreamResponse], Any], chunks: Sequence[bytes]) -> object:
    """What a stream translator yields for an upstream body read in `chunks` (the response is a
    real UpstreamResponse, fed as its connection would feed it)."""

    async def run() -> object:
        loop = asyncio.get_running_loop()
        connection = Connection(loop, lambda _: None)
        response = UpstreamResponse(connection, Deadlines(loop.time(), 3600, 3600, 3600))
        connection.response = response
        for chunk in chunks:
            response.feed(chunk)
        response.finish()
        stream = make(response)
        out: list[Any] = []
        try:
            async for batch in stream:
                out.extend(_chunk(chunk_json(chunk)) for chunk in batch)
        except TurnoutError as error:
            return failure(error)
        finally:
            await stream.aclose()
        return out, stream.usage

    return asyncio.run(run())


def _chunk(data: bytes) -> Any:
    """A translated chunk as an object, less its `created` time (which may differ between runs)."""
    if data.startswith(b"event: "):
        return data  # passed through as the upstream framed it
    try:
        chunk = orjson.loads(data)  # every chunk a translator writes is JSON
    except orjson.JSONDecodeError:
        return data  # an OpenAI upstream's chunk, passed on as it came, deeper than orjson reads
    assert isinstance(chunk, dict), chunk
    chunk.pop("created", None)
    return chunk


def openai_stream(chunks: Sequence[bytes]) -> object:
    return [
        _relay(lambda r, drop=drop: OpenAIStream(r, provider=PROVIDER, drop_usage_chunk=drop), chunks)  # type: ignore[misc]
        for drop in (False, True)
    ]


def anthropic_stream(chunks: Sequence[bytes]) -> object:
    json_mode = anthropic_translate.JsonMode(anthropic_translate.JSON_TOOL)
    outcomes = [
        _relay(
            lambda r, mode=mode: AnthropicStream(  # type: ignore[misc]
                r, provider=PROVIDER, requested_model="m", json_mode=mode, include_usage=True
            ),
            chunks,
        )
        for mode in (None, json_mode)
    ]
    native = _relay(
        lambda r: NativeAnthropicStream(
            r, provider=PROVIDER, requested_model="m", json_mode=None, include_usage=True
        ),
        chunks,
    )
    return [*outcomes, native]


def gemini_stream(chunks: Sequence[bytes]) -> object:
    return _relay(lambda r: GeminiStream(r, provider=PROVIDER, model="m", include_usage=True), chunks)


def cohere_stream(chunks: Sequence[bytes]) -> object:
    return _relay(lambda r: CohereStream(r, provider=PROVIDER, model="m", include_usage=True), chunks)


def bedrock_stream(chunks: Sequence[bytes]) -> object:
    json_mode = bedrock_translate.JsonMode(bedrock_translate.JSON_TOOL)
    return [
        _relay(
            lambda r, mode=mode: BedrockStream(  # type: ignore[misc]
                r, provider=PROVIDER, model="m", chat_id="chatcmpl-1", json_mode=mode, include_usage=True
            ),
            chunks,
        )
        for mode in (None, json_mode)
    ]


# --------------------------------------------------------------------------- request bodies


def _json(chunks: Sequence[bytes]) -> Any:
    """The body as the server reads it; not JSON is the server's 400 before any decoder runs."""
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        return msgspec.UNSET


def _chat(body: Any) -> object:
    """The chat request, and what each wire format would send upstream for it (or the documented
    error it refuses it with)."""
    request = parse_chat_request(body)
    counts = (
        estimated_prompt_tokens(request),
        counted_prompt_tokens(request),
        prompt_characters(request),
        [message_has_images(m) for m in request.messages],
    )
    # a reservation's two bounds: o200k_base spends at most a token a byte
    assert byte_bound(request) >= o200k_bound(request), body
    stream = request.stream is True
    translators: list[Callable[[], object]] = [
        lambda: anthropic_translate.request_body(request, "m", stream=stream)[0],
        lambda: bedrock_translate.request_body(request)[0],
        lambda: gemini_translate.request_body(request),
        lambda: cohere_translate.request_body(request, body, "m", stream=stream),
    ]
    upstream: list[object] = []
    for translate in translators:
        try:
            upstream.append(orjson.loads(request_json(translate())))  # as the adapters write it
        except TurnoutError as error:
            upstream.append(failure(error))
    return request, counts, upstream


def _outcome(parse: Callable[[Any], object], chunks: Sequence[bytes]) -> object:
    body = _json(chunks)
    if body is msgspec.UNSET:
        return "not json"
    try:
        return parse(body)
    except TurnoutError as error:
        return failure(error)


def chat_request(chunks: Sequence[bytes]) -> object:
    return _outcome(_chat, chunks)


def embedding_request(chunks: Sequence[bytes]) -> object:
    return _outcome(parse_embedding_request, chunks)


def anthropic_request(chunks: Sequence[bytes]) -> object:
    def parse(body: Any) -> object:
        native: list[str] = []
        translated = anthropic_messages.to_openai(body, native)
        return translated, native, _chat(translated)

    return _outcome(parse, chunks)


def responses_request(chunks: Sequence[bytes]) -> object:
    def parse(body: Any) -> object:
        responses_inbound.previous_response_id(body)
        parsed = responses_inbound.parse(body)
        return parsed.chat, _chat(parsed.chat)

    return _outcome(parse, chunks)


def admin_bodies() -> dict[str, type[msgspec.Struct]]:
    """Every request body the admin API decodes: the Structs its handlers' modules define (a new
    one is fuzzed without a change here)."""
    found: dict[str, type[msgspec.Struct]] = {}
    for module in (admin, admin_billing, admin_budgets, admin_teams):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, msgspec.Struct)
                and value.__module__ == module.__name__
            ):
                found[value.__name__] = value
    return dict(sorted(found.items()))


def admin_body(chunks: Sequence[bytes]) -> object:
    """`<Struct name>\\n<JSON body>`: the body decoded as that admin request (the first known name
    when the name is not one)."""
    name, _, raw = b"".join(chunks).partition(b"\n")
    bodies = admin_bodies()
    kind = bodies.get(name.decode("latin-1"), next(iter(bodies.values())))
    try:
        return decode_body(raw, kind)
    except TurnoutError as error:
        return failure(error)


# --------------------------------------------------------------------------- upstream error bodies

ERROR_PARSERS = {
    "openai": openai_errors.parse_error_body,
    "anthropic": anthropic_errors.parse_error_body,
    "gemini": gemini_errors.parse_error_body,
    "cohere": cohere_errors.parse_error_body,
    "bedrock": bedrock_errors.parse_error_body,
}


def error_body(chunks: Sequence[bytes]) -> object:
    """`<status>\\n<retry-after>\\n<body>`: every wire format's error parser on the body, mapped onto
    the error tree with that status and Retry-After (the status is clamped to 400-599)."""
    head, _, rest = b"".join(chunks).partition(b"\n")
    retry_after, _, raw = rest.partition(b"\n")
    status = 400 + int(head) % 200 if head.isdigit() else 500
    seconds = upstream_errors.parse_retry_after(retry_after, retry_after)
    outcomes = []
    for parse in ERROR_PARSERS.values():
        parsed = parse(raw)
        error = upstream_errors.classify(status, parsed, provider=PROVIDER, retry_after=seconds)
        outcomes.append((parsed, failure(error), error.headers()))
    return outcomes


# --------------------------------------------------------------------------- whole answers


def _answer_outcomes(raw: bytes) -> list[object]:
    """A whole (non-streamed) answer as each wire format's adapter reads it: decoded (a body that
    does not decode is the adapter's UpstreamProtocolError), translated, written for the client."""

    def each(
        decode: Callable[[], Any], translate: Callable[[Any], Any], usage: Callable[[Any], Any]
    ) -> object:
        try:
            answer = decode()
        except DECODE_ERRORS:
            return "malformed"
        try:
            out = translate(answer)
        except TurnoutError as error:
            return failure(error)
        return msgspec.json.decode(msgspec.json.encode(out)), usage(answer)

    anthropic_json = anthropic_translate.JsonMode(anthropic_translate.JSON_TOOL)
    bedrock_json = bedrock_translate.JsonMode(bedrock_translate.JSON_TOOL)
    return [
        each(
            lambda: openai_wire.completion_decoder.decode(raw),
            lambda peek: {},
            lambda peek: peek.usage and peek.usage.canonical(),
        ),
        *(
            each(
                lambda: anthropic_wire.message_decoder.decode(raw),
                lambda m, mode=mode: anthropic_translate.completion(m, mode, requested_model="m"),  # type: ignore[misc]
                lambda m: m.usage and m.usage.canonical(),
            )
            for mode in (None, anthropic_json)
        ),
        *(
            each(
                lambda: bedrock_wire.response_decoder.decode(raw),
                lambda a, mode=mode: bedrock_translate.completion(a, mode, model="m", chat_id="c"),  # type: ignore[misc]
                lambda a: a.usage and a.usage.canonical(),
            )
            for mode in (None, bedrock_json)
        ),
        each(
            lambda: gemini_wire.response_decoder.decode(raw),
            lambda a: gemini_translate.completion(a, model="m"),
            lambda a: a.usage_metadata and a.usage_metadata.canonical(),
        ),
        each(
            lambda: cohere_wire.response_decoder.decode(raw),
            lambda a: cohere_translate.completion(a, model="m"),
            lambda a: a.usage and a.usage.canonical(),
        ),
    ]


def answer(chunks: Sequence[bytes]) -> object:
    return _answer_outcomes(b"".join(chunks))


# --------------------------------------------------------------------------- batch uploads


def batch_form(chunks: Sequence[bytes]) -> object:
    try:
        form = multipart.parse_form(b"".join(chunks), b"xx", max_parts=MAX_UPLOAD_PARTS)
    except TurnoutError as error:
        return failure(error)
    return form.fields, [(f.name, f.filename, f.content_type, f.data) for f in form.files]


def batch_file(chunks: Sequence[bytes]) -> object:
    try:
        return read_batch_input(b"".join(chunks))
    except TurnoutError as error:
        return failure(error)


def message_batch(chunks: Sequence[bytes]) -> object:
    return _outcome(read_message_batch, chunks)


# --------------------------------------------------------------------------- images and audio


def media_request(chunks: Sequence[bytes]) -> object:
    """A JSON body read as an image request and as a speech request, with what each is billed for."""

    def parse(body: Any) -> object:
        outcomes: list[object] = []
        for read in (media.parse_image_request, media.parse_speech_request):
            try:
                request = read(body)
                outcomes.append((request, request.units()))
            except TurnoutError as error:
                outcomes.append(failure(error))
        return outcomes

    return _outcome(parse, chunks)


def multipart_form(chunks: Sequence[bytes]) -> object:
    """`<content-type>\n<body>`: the form as a transcription request reads it (the file by its size
    and digest), and the form it would send upstream read back the same way."""
    head, _, body = b"".join(chunks).partition(b"\n")
    try:
        boundary = multipart.form_boundary(head)
        request = media.transcription_request(multipart.parse_form(body, boundary))
    except TurnoutError as error:
        return failure(error)
    sent, kind = openai_media.transcription_form(request, "m")
    again = multipart.parse_form(sent, multipart.form_boundary(kind.encode()))
    # the file byte for byte (its name's quotes and line breaks percent-encoded, as RFC 7578 says)
    assert [(f.name, f.data) for f in again.files] == [(f.name, f.data) for f in request.form.files]

    def shown(form: media.Form) -> object:
        files = [(f.name, f.filename, f.content_type, hashlib.sha256(f.data).hexdigest()) for f in form.files]
        return form.fields, files

    return shown(request.form), request.model, request.response_format, request.units(), shown(again)[1]


def media_answer(chunks: Sequence[bytes]) -> object:
    """An upstream's answer to an image or transcription request, read for what it is billed."""
    raw = b"".join(chunks)
    image = media.ImageRequest(prompt="p", n=2, size="1024x1024")
    outcomes: list[object] = []
    readers: list[Callable[[], object]] = [lambda: openai_media.image_usage(image, raw, PROVIDER)]
    for fmt in sorted(media.TRANSCRIPTION_FORMATS):
        form = media.Form((("model", "m"),), (media.Upload("file", "a", "audio/wav", b"x"),))
        request = media.TranscriptionRequest("m", form.files[0], form, fmt)
        readers.append(lambda r=request: openai_media.transcription_answer(r, raw, PROVIDER))  # type: ignore[misc]
    for read in readers:
        try:
            outcomes.append(read())
        except TurnoutError as error:
            outcomes.append(failure(error))
    return outcomes


TARGETS: dict[str, Target] = {
    "sse": sse,
    "eventstream": eventstream,
    "openai_stream": openai_stream,
    "anthropic_stream": anthropic_stream,
    "gemini_stream": gemini_stream,
    "cohere_stream": cohere_stream,
    "bedrock_stream": bedrock_stream,
    "chat_request": chat_request,
    "embedding_request": embedding_request,
    "anthropic_request": anthropic_request,
    "responses_request": responses_request,
    "admin_body": admin_body,
    "error_body": error_body,
    "answer": answer,
    "batch_form": batch_form,
    "batch_file": batch_file,
    "message_batch": message_batch,
    "media_request": media_request,
    "multipart_form": multipart_form,
    "media_answer": media_answer,
}


def corpus(target: str) -> Iterator[Path]:
    """The committed inputs of a target: seeds from the recorded fixtures and every failure found."""
    folder = CORPUS / target
    return iter(sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")))
