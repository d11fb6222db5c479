"""OpenAI's image-generation, transcription and speech endpoints on an OpenAI-format deployment:
the request forwarded with the deployment's model (a transcription's form rebuilt as multipart with
turnout's own boundary), the answer passed on as it came, and what it is billed for read from it:
the images it holds (and the tokens it reports), the seconds of audio the provider says it
transcribed, the characters read aloud."""

from __future__ import annotations

import re
import secrets
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import msgspec

from turnout.domain.errors import UpstreamProtocolError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.domain.media import Form, ImageRequest, SpeechRequest, TranscriptionRequest, image_kind
from turnout.domain.usage import TokenCount, TokenCountFloat, Usage
from turnout.providers.base import MediaCall, MediaResult
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.request_json import request_json

MAX_ANSWER_BYTES = 256 * 1024 * 1024  # images as base64 are large


class _ImageUsage(msgspec.Struct):
    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0


class ImagesPeek(msgspec.Struct):
    data: list[msgspec.Raw] = []
    usage: _ImageUsage | None = None
    size: str | None = None
    quality: str | None = None


class _AudioUsage(msgspec.Struct):
    type: str = ""
    seconds: TokenCountFloat | None = None
    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0


class TranscriptionPeek(msgspec.Struct):
    text: str = ""
    duration: TokenCountFloat | None = None
    usage: _AudioUsage | None = None


images_decoder = msgspec.json.Decoder(ImagesPeek)
transcription_decoder = msgspec.json.Decoder(TranscriptionPeek)


def image_body(call: MediaCall) -> bytes:
    return request_json({**call.body, "model": call.model})


def image_usage(request: ImageRequest, data: bytes, provider: str) -> Usage:
    """The images an answer holds, of the quality and size it says (else the request's), and the
    tokens it reports (gpt-image models are priced by them)."""
    peek = _decode(images_decoder, data, provider, "a list of images")
    tokens = peek.usage or _ImageUsage()
    kind = image_kind(peek.quality or request.quality, peek.size or request.size)
    return Usage(
        images=len(peek.data),
        image_kind=kind,
        input_tokens=tokens.input_tokens,
        output_tokens=tokens.output_tokens,
    )


def transcription_form(request: TranscriptionRequest, model: str) -> tuple[bytes, str]:
    """The form for the upstream (its model the deployment's; `text` asked as `json`, whose
    usage says how long the audio was) and its content type."""
    fields = [
        (name, model if name == "model" else value)
        for name, value in request.form.fields
        if name != "response_format"
    ]
    fields.append(("response_format", upstream_format(request.response_format)))
    return multipart(Form(tuple(fields), request.form.files))


def upstream_format(asked: str) -> str:
    return "json" if asked == "text" else asked


def multipart(form: Form) -> tuple[bytes, str]:
    boundary = f"turnout-{secrets.token_hex(16)}"
    out: list[bytes] = []
    for name, value in form.fields:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'.encode())
        out.append(value.encode())
        out.append(b"\r\n")
    for upload in form.files:
        disposition = f'form-data; name="{_quoted(upload.name)}"; filename="{_quoted(upload.filename)}"'
        out.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: {_header(upload.content_type)}\r\n\r\n".encode()
        )
        out.append(upload.data)
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def _quoted(text: str) -> str:
    """A name in a quoted header parameter (RFC 7578: quotes and line breaks percent-encoded)."""
    return text.replace("\\", "%5C").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _header(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", "", text) or "application/octet-stream"


_CUE = re.compile(rb"(\d{1,5}):(\d{2}):(\d{2})[.,](\d{3})")  # a cue's time (hours bounded)


def transcription_answer(
    request: TranscriptionRequest, data: bytes, provider: str
) -> tuple[bytes, str, Usage | None]:
    """The answer for the client (`text` rendered from the `json` asked for it), its content
    type, and the seconds of audio it was billed for: the usage it reports, else its `duration`;
    for subtitles, the end of their last cue (an estimate: silence after it is not counted)."""
    fmt = request.response_format
    if fmt in ("srt", "vtt"):
        ends = _CUE.findall(data)
        if not ends:
            return data, "text/plain; charset=utf-8", None
        h, m, s, ms = (int(x) for x in ends[-1])
        seconds = _rounded(Decimal(h * 3600 + m * 60 + s) + Decimal(ms) / 1000)
        return data, "text/plain; charset=utf-8", Usage(audio_seconds=seconds, estimated=True)
    peek = _decode(transcription_decoder, data, provider, "a transcription")
    usage = _transcription_usage(peek)
    if fmt == "text":
        return (peek.text + "\n").encode(), "text/plain; charset=utf-8", usage
    return data, "application/json", usage


def _transcription_usage(peek: TranscriptionPeek) -> Usage | None:
    reported = peek.usage
    if reported is not None and reported.type == "tokens":
        return Usage(input_tokens=reported.input_tokens, output_tokens=reported.output_tokens)
    seconds = reported.seconds if reported is not None and reported.seconds is not None else peek.duration
    if seconds is None:
        return None
    return Usage(audio_seconds=_rounded(Decimal(str(seconds))))


def _rounded(seconds: Decimal) -> int:
    """Seconds billed: to the nearest second (as OpenAI bills transcription), at least one."""
    return max(1, int(seconds.quantize(Decimal(1), rounding=ROUND_HALF_UP)))


def speech_body(call: MediaCall) -> bytes:
    return request_json({**call.body, "model": call.model})


def speech_usage(request: SpeechRequest) -> Usage:
    return request.units()


def content_type(response: UpstreamResponse, default: str) -> str:
    declared = response.header(b"content-type")
    return default if declared is None else _header(declared.decode("latin-1"))


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes, provider: str, what: str) -> Any:
    try:
        return decoder.decode(data)
    except DECODE_ERRORS:
        raise UpstreamProtocolError(
            f"The provider '{provider}' answered with something that is not {what}."
        ) from None


def media_result(body: bytes, kind: str, usage: Usage | None) -> MediaResult:
    return MediaResult(usage=usage, content_type=kind, body=body)
