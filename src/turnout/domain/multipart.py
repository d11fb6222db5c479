"""multipart/form-data bodies (RFC 7578: a transcription's form, a file's upload), read with
python-multipart within strict bounds: the boundary's length (RFC 2046: 1-70 characters), the
number of parts (each use its own), the size of each part's headers, each text field's size; the
body's own size is bounded where it is read. A preamble before the first boundary and an epilogue
after the last are ignored, as RFC 2046 says. Anything malformed is a 400 naming what is wrong;
nothing is guessed."""

from __future__ import annotations

import re

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from turnout.domain.errors import InvalidRequest, UnsupportedMediaType
from turnout.domain.media import Form, Upload

MAX_BOUNDARY = 70  # RFC 2046
MAX_PARTS = 32  # unless the caller bounds its form tighter
MAX_PART_HEADERS = 8 * 1024  # a part's header names and values
MAX_HEADERS = 8  # header lines in a part
MAX_FIELD_BYTES = 32 * 1024  # a text field (a prompt, a language, a chunking strategy)
MAX_NAME = 255  # a field's or a file's name
_BOUNDARY = re.compile(rb"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")  # RFC 2046 bchars


def form_boundary(content_type: bytes | None) -> bytes:
    """The boundary of a `multipart/form-data` content type; 415 for another type, 400 for a
    missing or malformed boundary."""
    media, options = parse_options_header(content_type or b"")
    if media.lower() != b"multipart/form-data":
        shown = media.decode("latin-1")[:100] or "none"
        raise UnsupportedMediaType(
            f"The request body must be multipart/form-data, not '{shown}'.", param="Content-Type"
        )
    boundary = options.get(b"boundary", b"")
    if not boundary or len(boundary) > MAX_BOUNDARY or not _BOUNDARY.match(boundary):
        raise InvalidRequest(
            f"The Content-Type names no boundary of 1-{MAX_BOUNDARY} characters: a multipart/form-data "
            f"boundary must be 1-{MAX_BOUNDARY} characters of those RFC 2046 allows.",
            param="Content-Type",
            code="invalid_multipart",
        )
    return boundary


class _Reader:
    """Collects the parts python-multipart finds, refusing what goes over a bound."""

    def __init__(self, max_parts: int) -> None:
        self.max_parts = max_parts
        self.fields: list[tuple[str, str]] = []
        self.files: list[Upload] = []
        self.parts = 0
        self.ended = False
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._data: list[bytes] = []
        self._size = 0
        self._header_bytes = 0
        self._is_file = False

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise _bad(f"The form holds more than {self.max_parts} parts.")
        self._headers, self._data, self._size, self._header_bytes = {}, [], 0, 0

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADERS:
            raise _bad(f"A part's headers are longer than {MAX_PART_HEADERS} bytes.")

    def header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def headers_finished(self) -> None:
        self._is_file = b"filename" in parse_options_header(self._headers.get(b"content-disposition"))[1]

    def part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if not self._is_file and self._size > MAX_FIELD_BYTES:
            raise _bad(f"A form field is larger than {MAX_FIELD_BYTES} bytes.")
        self._data.append(data[start:end])

    def part_end(self) -> None:
        kind, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name")
        if kind.lower() != b"form-data" or name is None:
            raise _bad("Each part of the form needs 'Content-Disposition: form-data' with a name.")
        if len(name) > MAX_NAME:
            raise _bad(f"A form field's name is longer than {MAX_NAME} characters.")
        data = b"".join(self._data)
        filename = options.get(b"filename")
        if filename is not None:
            if len(filename) > MAX_NAME:
                raise _bad(f"A file name is longer than {MAX_NAME} characters.")
            declared = self._headers.get(b"content-type", b"application/octet-stream")
            self.files.append(
                Upload(_text(name), _text(filename), declared.decode("latin-1")[:MAX_NAME], data)
            )
        else:
            self.fields.append((_text(name), _text(data)))

    def end(self) -> None:
        self.ended = True


def parse_form(body: bytes, boundary: bytes, *, max_parts: int = MAX_PARTS) -> Form:
    """The form in `body` (already within the size limit), of at most `max_parts` parts; 400 for
    anything malformed."""
    dash = b"--" + boundary
    if not body.startswith(dash):  # a preamble before the first boundary is skipped
        found = body.find(b"\r\n" + dash)
        if found < 0:
            raise _bad("The multipart/form-data body is malformed: it does not contain its boundary.")
        body = body[found + 2 :]
    reader = _Reader(max_parts)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": reader.part_begin,
            "on_part_data": reader.part_data,
            "on_part_end": reader.part_end,
            "on_header_field": reader.header_field,
            "on_header_value": reader.header_value,
            "on_header_end": reader.header_end,
            "on_headers_finished": reader.headers_finished,
            "on_end": reader.end,
        },
        max_header_count=MAX_HEADERS,
        # a line's own bound is the body's: MAX_PART_HEADERS, checked as the reader collects the
        # headers, is what an error names
        max_header_size=len(body),
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError:
        raise _bad("The multipart/form-data body is malformed.") from None
    if not reader.ended:
        raise _bad(
            "The multipart/form-data body ends before its closing boundary: its last part is not closed "
            "by the boundary."
        )
    return Form(tuple(reader.fields), tuple(reader.files))


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("A form field's name or value is not UTF-8.") from None


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="file", code="invalid_multipart")
