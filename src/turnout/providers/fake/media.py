"""The fake upstream's image generation, transcription and speech answers, in OpenAI's shapes:
`n` image URLs; a transcription of a recording taken to last a second per 16,000 bytes (reported
as OpenAI reports it: `usage.seconds`, or `duration` for verbose_json, or in the subtitles'
cues); a made-up audio body whose length follows the text read."""

from __future__ import annotations

import time
from typing import Any

import orjson

from turnout.domain.errors import InvalidRequest
from turnout.domain.media import AUDIO_TYPES, Form
from turnout.domain.multipart import parse_form

BYTES_PER_SECOND = 16_000


def form_of(raw: bytes) -> Form:
    """A multipart form whose boundary is read from its first line (the fake keeps no headers)."""
    first = raw.split(b"\r\n", 1)[0]
    if not first.startswith(b"--"):
        raise ValueError("the body is not a multipart form")
    try:
        return parse_form(raw, first[2:])
    except InvalidRequest as error:
        raise ValueError(error.message) from None


def answer(path: str, request: dict[str, Any], form: Form | None) -> tuple[str, bytes]:
    """The content type and body of the answer to an image, transcription or speech request."""
    if form is not None:
        return transcription(form)
    if path.endswith("/images/generations"):
        return "application/json", _json(images(request))
    return speech(request)


def images(request: dict[str, Any]) -> dict[str, Any]:
    n = request.get("n") or 1
    prompt = str(request.get("prompt", ""))
    data = [{"url": f"https://fake.invalid/image-{i}.png", "revised_prompt": prompt} for i in range(n)]
    return {"created": int(time.time()), "data": data}


def transcription(form: Form) -> tuple[str, bytes]:
    """The content type and body of a transcription of the form's file."""
    audio = form.files[0].data if form.files else b""
    seconds = max(1, len(audio) // BYTES_PER_SECOND)
    text = f"A fake transcription of {len(audio)} bytes."
    fmt = form.field("response_format") or "json"
    if fmt in ("srt", "vtt"):
        end = f"00:{seconds // 60:02d}:{seconds % 60:02d}"
        if fmt == "srt":
            return "text/plain", f"1\n00:00:00,000 --> {end},000\n{text}\n".encode()
        return "text/plain", f"WEBVTT\n\n00:00:00.000 --> {end}.000\n{text}\n".encode()
    if fmt == "text":
        return "text/plain", text.encode()
    if fmt == "verbose_json":
        doc: dict[str, Any] = {
            "task": "transcribe",
            "language": "english",
            "duration": float(seconds),
            "text": text,
        }
        doc["segments"] = []
        return "application/json", _json(doc)
    return "application/json", _json({"text": text, "usage": {"type": "duration", "seconds": seconds}})


def speech(request: dict[str, Any]) -> tuple[str, bytes]:
    """Made-up audio: a header and a few bytes per character read."""
    fmt = str(request.get("response_format") or "mp3")
    text = str(request.get("input", ""))
    return AUDIO_TYPES.get(fmt, "audio/mpeg"), b"FAKEAUDIO" + text.encode() * 64


def _json(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)
