"""The canonical image-generation and speech requests (OpenAI's `POST /v1/images/generations` and
`POST /v1/audio/speech` shapes), typed and validated, and the transcription request read from its
form; what each is billed by (images, characters, seconds of audio) and at most."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from turnout.domain.errors import InvalidRequest, UnsupportedFeature
from turnout.domain.steering_fields import refuse_steering_fields
from turnout.domain.usage import Usage
from turnout.domain.validation import convert

MAX_PROMPT_CHARACTERS = 32_000  # the longest image prompt OpenAI documents (gpt-image-1)
MAX_SPEECH_CHARACTERS = 4096  # OpenAI's limit on `input` (and `instructions`)
# The reservation's bound on a recording's length: its bytes at 16 kbit/s, lower than speech is
# usefully encoded at (the answer's own duration is what is billed).
BOUND_BYTES_PER_SECOND = 2000

MediaApi = Literal["images", "transcriptions", "speech"]
MediaTask = Literal["image_generation", "transcription", "speech"]  # what a deployment must do
CAPABILITY: dict[str, MediaTask] = {
    "images": "image_generation",
    "transcriptions": "transcription",
    "speech": "speech",
}
OPERATION = {
    "images": "images/generations",
    "transcriptions": "audio/transcriptions",
    "speech": "audio/speech",
}
WHAT = {"images": "image generation", "transcriptions": "transcription", "speech": "speech"}


class ImageRequest(msgspec.Struct, frozen=True):
    """What turnout reads of an image request (the rest goes to the provider as sent)."""

    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PROMPT_CHARACTERS)]
    model: str = ""
    n: Annotated[int, msgspec.Meta(ge=1, le=10)] | None = None
    quality: str | None = None
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    stream: bool | None = None

    def units(self) -> Usage:
        """At most what it is billed for: `n` images of its quality and size."""
        return Usage(images=self.n or 1, image_kind=image_kind(self.quality, self.size))


def image_kind(quality: str | None, size: str | None) -> str:
    """How an image is priced: "quality size", OpenAI's defaults filled in (standard, 1024x1024)."""
    q = "standard" if quality in (None, "auto") else quality
    s = "1024x1024" if size in (None, "auto") else size
    return f"{q} {s}"


class SpeechRequest(msgspec.Struct, frozen=True):
    model: str
    input: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SPEECH_CHARACTERS)]
    voice: str | dict[str, Any]
    instructions: Annotated[str, msgspec.Meta(max_length=MAX_SPEECH_CHARACTERS)] | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] | None = None
    speed: Annotated[float, msgspec.Meta(ge=0.25, le=4.0)] | None = None
    stream_format: Literal["sse", "audio"] | None = None

    def units(self) -> Usage:
        """What it is billed for: the characters read aloud."""
        return Usage(characters=len(self.input))


AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a form: its field name, file name, declared type and bytes."""

    name: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Form:
    """A multipart/form-data body: its text fields (in order, a name may repeat: `include[]`) and
    its files."""

    fields: tuple[tuple[str, str], ...]
    files: tuple[Upload, ...]

    def field(self, name: str) -> str | None:
        return next((value for key, value in self.fields if key == name), None)


@dataclass(frozen=True, slots=True)
class TranscriptionRequest:
    """A transcription request: its model, the audio file, and the form it came in (forwarded)."""

    model: str
    file: Upload
    form: Form
    response_format: str

    def units(self) -> Usage:
        """At most what it is billed for: the recording's length bounded by its size."""
        return Usage(audio_seconds=max(1, -(-len(self.file.data) // BOUND_BYTES_PER_SECOND)))


TRANSCRIPTION_FORMATS = frozenset({"json", "text", "srt", "verbose_json", "vtt", "diarized_json"})


def parse_image_request(body: object) -> ImageRequest:
    request = convert(body, ImageRequest)
    if request.stream:
        raise UnsupportedFeature(
            "Streamed image generation is not supported; leave 'stream' unset.", param="stream"
        )
    return request


def parse_speech_request(body: object) -> SpeechRequest:
    request = convert(body, SpeechRequest)
    if request.stream_format == "sse":
        raise UnsupportedFeature(
            "Speech as server-sent events is not supported; ask for 'stream_format': 'audio' (the audio "
            "is streamed through as it is made).",
            param="stream_format",
        )
    return request


def transcription_request(form: Form) -> TranscriptionRequest:
    """The transcription request a form holds: one `file`, a `model`, a known `response_format`,
    no field that would steer the upstream; streamed transcription is refused (its usage would come
    in events turnout does not read)."""
    refuse_steering_fields(dict(form.fields))  # (the form is forwarded: as a JSON body would be)
    model = form.field("model")
    if not model:
        raise InvalidRequest(
            "The form needs a 'model' field.", param="model", code="missing_required_parameter"
        )
    files = [f for f in form.files if f.name == "file"]
    if len(files) != 1 or len(form.files) != 1:
        raise InvalidRequest("The form needs exactly one file, in a 'file' field.", param="file")
    if not files[0].data:
        raise InvalidRequest("The audio file is empty.", param="file")
    fmt = form.field("response_format") or "json"
    if fmt not in TRANSCRIPTION_FORMATS:
        known = ", ".join(sorted(TRANSCRIPTION_FORMATS))
        raise InvalidRequest(
            f"'response_format' must be one of {known}, not '{fmt[:40]}'.", param="response_format"
        )
    if (form.field("stream") or "false").lower() != "false":
        raise UnsupportedFeature(
            "Streamed transcription is not supported; leave 'stream' unset.", param="stream"
        )
    return TranscriptionRequest(model, files[0], form, fmt)
