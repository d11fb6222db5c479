"""A `multipart/form-data` body read with strict bounds: the boundary's length (RFC 2046: 1-70
characters), the number of parts, the size of each part's headers; every fault is a 400 that says
what is wrong. The body is already read whole (within the upload's size limit)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from turnout.domain.errors import InvalidRequest, UnsupportedMediaType

MAX_BOUNDARY = 70  # RFC 2046, section 5.1.1
MAX_PARTS = 8
MAX_PART_HEADERS = 8 * 1024
_BOUNDARY_CHARS = re.compile(rb"^[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]$")
_PARAM = re.compile(rb';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def boundary_of(content_type: bytes | None) -> bytes:
    """The boundary a `multipart/form-data` content type names (415 for another type)."""
    media = (content_type or b"").split(b";", 1)[0].strip().lower()
    if media != b"multipart/form-data":
        shown = media.decode("latin-1")[:100] or "none"
        raise UnsupportedMediaType(
            f"The request body must be 'multipart/form-data', not '{shown}'.", param="Content-Type"
        )
    _, _, rest = (content_type or b"").partition(b";")
    boundary = _params(b";" + rest).get("boundary")
    if boundary is None or not 1 <= len(boundary) <= MAX_BOUNDARY or not _BOUNDARY_CHARS.match(boundary):
        raise InvalidRequest(
            f"The multipart boundary must be 1-{MAX_BOUNDARY} characters of those RFC 2046 allows.",
            param="Content-Type",
            code="invalid_multipart",
        )
    return boundary


def parse_form(content_type: bytes | None, body: bytes) -> list[Part]:
    """The parts of a form, in order (at most MAX_PARTS)."""
    dash = b"--" + boundary_of(content_type)
    if body.startswith(dash):
        pos = len(dash)
    else:  # a preamble before the first boundary is allowed (and ignored)
        found = body.find(b"\r\n" + dash)
        if found < 0:
            raise _malformed("it does not contain its boundary")
        pos = found + 2 + len(dash)
    parts: list[Part] = []
    while True:
        if body.startswith(b"--", pos):
            return parts  # the closing boundary (an epilogue after it is ignored)
        if not body.startswith(b"\r\n", pos):
            raise _malformed("a boundary is not followed by a line break")
        if len(parts) == MAX_PARTS:
            raise _malformed(f"it has more than {MAX_PARTS} parts")
        start = pos + 2
        end = body.find(b"\r\n" + dash, start)
        if end < 0:
            raise _malformed("its last part is not closed by the boundary")
        parts.append(_part(body, start, end))
        pos = end + 2 + len(dash)


def _part(body: bytes, start: int, end: int) -> Part:
    split = body.find(b"\r\n\r\n", start, min(end, start + MAX_PART_HEADERS) + 4)
    if split < 0:
        if body.startswith(b"\r\n", start):  # no headers at all
            raise _malformed("a part has no Content-Disposition header")
        raise _malformed(f"a part's headers are longer than {MAX_PART_HEADERS} bytes or not ended")
    disposition = None
    content_type = None
    for line in body[start:split].split(b"\r\n"):
        field, colon, value = line.partition(b":")
        if not colon:
            raise _malformed("a part has a header line without a colon")
        key = field.strip().lower()
        if key == b"content-disposition":
            disposition = value.strip()
        elif key == b"content-type":
            content_type = value.strip().decode("latin-1")[:200]
    if disposition is None or not disposition.lower().startswith(b"form-data"):
        raise _malformed("a part has no 'Content-Disposition: form-data' header")
    params = _params(disposition[len(b"form-data") :])
    name = params.get("name")
    if not name:
        raise _malformed("a part has no name")
    filename = params.get("filename")
    return Part(
        name.decode("utf-8", "replace")[:100],
        None if filename is None else filename.decode("utf-8", "replace")[:255],
        content_type,
        body[split + 4 : end],
    )


def _params(text: bytes) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for match in _PARAM.finditer(text):
        quoted, plain = match.group(2), match.group(3)
        value = re.sub(rb"\\(.)", rb"\1", quoted) if quoted is not None else plain or b""
        found.setdefault(match.group(1).decode("latin-1").lower(), value)
    return found


def _malformed(why: str) -> InvalidRequest:
    return InvalidRequest(f"The multipart body is malformed: {why}.", code="invalid_multipart")
