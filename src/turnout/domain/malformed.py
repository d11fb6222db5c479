"""What a msgspec decoder raises for input it cannot read: bytes that are not JSON, JSON of another
shape, and JSON nested deeper than the interpreter's recursion limit (where msgspec raises
RecursionError, not a DecodeError). Every decode of bytes from outside catches all three."""

from __future__ import annotations

import msgspec

DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)
