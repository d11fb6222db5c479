"""What turnout accepts as a JSON body: nesting at most `MAX_DEPTH` deep, numbers that fit (finite
doubles, integers in 64 bits), and free-form objects it stores (metadata) within small bounds.
Every refusal is a 400 that says which limit was crossed.

The request path pays two byte counts per body: only a body with more than `MAX_DEPTH` brackets
can be too deep. Only such a body is measured, at C speed: orjson refuses to write more than a
fixed number of levels (measured once, below), so the body wrapped in that many levels less
`MAX_DEPTH` fails to encode exactly when it is too deep."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from turnout.domain.errors import InvalidRequest

# Deep enough for any real request (a tool's JSON schema nests 10-20 levels, the body around it a
# few more), shallow enough that every encoder on the way (orjson writes 255 levels) and every
# translation keeps working.
MAX_DEPTH = 128
INT_MIN = -(2**63)  # integers must fit in 64 bits: signed, or unsigned for large positive ones
INT_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class FreeForm:
    """Bounds on a free-form JSON value turnout stores and sends back (metadata)."""

    max_bytes: int
    max_depth: int
    max_keys: int


METADATA = FreeForm(max_bytes=16 * 1024, max_depth=8, max_keys=256)


def too_deep(doc: Any = None) -> InvalidRequest:
    """The error for a body nested too deep, naming the top-level field that is (when known)."""
    param = _deep_field(doc) if isinstance(doc, dict) else None
    where = f"'{param}' is" if param else "The request body is"
    return InvalidRequest(
        f"{where} nested more than {MAX_DEPTH} levels deep, turnout's limit for any JSON body.",
        param=param,
        code="json_too_deep",
    )


def _deep_field(doc: dict[str, Any]) -> str | None:
    for key, value in doc.items():
        if isinstance(value, dict | list) and depth_exceeds(value, MAX_DEPTH - 1):
            return str(key)
    return None


def number_out_of_range(param: str | None = None) -> InvalidRequest:
    where = f"'{param}'" if param else "A number in the request body"
    return InvalidRequest(
        f"{where} is out of range: JSON numbers must be finite 64-bit floats, and integers must fit "
        "in 64 bits.",
        param=param,
        code="number_out_of_range",
    )


def loads(raw: bytes) -> Any:
    """A request body decoded (orjson), or a 400 that says what is wrong with it."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _diagnose(raw) from None
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep_to_write(doc):
        raise too_deep(doc)
    return doc


def _writable_depth() -> int:
    """How many levels orjson writes (254 in the versions turnout supports)."""
    low, high = 1, 4096
    while low < high:
        middle = (low + high + 1) // 2
        node: Any = 0
        for _ in range(middle):
            node = [node]
        try:
            orjson.dumps(node)
            low = middle
        except orjson.JSONEncodeError:
            high = middle - 1
    return low


_WRAPPING = _writable_depth() - MAX_DEPTH


def _too_deep_to_write(doc: Any) -> bool:
    """`depth_exceeds(doc, MAX_DEPTH)`, a dozen times faster on a large body."""
    if _WRAPPING < 1:  # an orjson that writes no deeper than the limit: walk instead
        return depth_exceeds(doc, MAX_DEPTH)
    wrapped = doc
    for _ in range(_WRAPPING):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return depth_exceeds(doc, MAX_DEPTH)  # surely too deep; the walk says so for certain
    return False


def decode(raw: bytes) -> Any:
    """Like `loads`, but integers are kept exact however large (msgspec) and then refused past 64
    bits, naming where they are: for small bodies whose numbers are stored (the admin API)."""
    try:
        doc = msgspec.json.decode(raw)
    except RecursionError:  # deeper than the decoder goes (about a thousand levels)
        raise too_deep() from None
    except msgspec.DecodeError:  # a number beyond a double (ValidationError) included
        raise _diagnose(raw) from None
    if depth_exceeds(doc, MAX_DEPTH):
        raise too_deep(doc)
    where = wide_integer(doc)
    if where is not None:
        raise number_out_of_range(where or None)
    return doc


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
MAX_REPAIRS = 64  # numbers beyond a double looked past, in a body that is being diagnosed


def _diagnose(raw: bytes) -> InvalidRequest:
    """Why a body could not be decoded, told precisely: nested too deep for the decoder, a number
    beyond a double in a body that is otherwise JSON, or not JSON at all."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return _unparsable()
    beyond_double = False
    for _ in range(MAX_REPAIRS):
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError as error:
            number = _NUMBER.match(text, error.pos)
            if number is None or math.isfinite(float(number.group())):
                break
            # put a zero in its place, to see whether the rest of the body is JSON
            text = text[: error.pos] + "0" + text[number.end() :]
            beyond_double = True
        else:
            return number_out_of_range() if beyond_double else _unparsable()
    try:
        doc = msgspec.json.decode(raw)
    except RecursionError:
        return too_deep()
    except msgspec.DecodeError:
        return _unparsable()
    where = wide_integer(doc)  # what an orjson that refuses wide integers would have stopped at
    return _unparsable() if where is None else number_out_of_range(where or None)


def _unparsable() -> InvalidRequest:
    return InvalidRequest(
        "We could not parse the JSON body of your request. Send a JSON object with "
        "'Content-Type: application/json'.",
        code="invalid_json",
    )


def depth_exceeds(doc: Any, limit: int) -> bool:
    """Does `doc` nest containers (objects, arrays) more than `limit` deep? Level by level, with no
    recursion to exhaust."""
    level = [doc] if isinstance(doc, dict | list) else []
    for _ in range(limit):
        deeper: list[Any] = []
        for node in level:
            deeper += [
                c for c in (node.values() if type(node) is dict else node) if isinstance(c, dict | list)
            ]
        if not deeper:
            return False
        level = deeper
    return bool(level)


def wide_integer(doc: Any) -> str | None:
    """The path of the first integer in `doc` that does not fit in 64 bits ('' for the root)."""
    for path, value in _scalars(doc, ""):
        if type(value) is int and not INT_MIN <= value <= INT_MAX:
            return path
    return None


def _scalars(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    pending: list[tuple[Any, str]] = [(node, path)]
    while pending:
        node, path = pending.pop()
        if isinstance(node, dict):
            pending.extend((v, f"{path}.{k}" if path else str(k)) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            pending.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(node))))
        else:
            yield path, node


def check_free_form(value: Any, param: str, bounds: FreeForm = METADATA) -> None:
    """A free-form value turnout stores: within `bounds` (size once encoded, depth, keys), or a
    400 naming `param`."""
    if value is None:
        return
    if depth_exceeds(value, bounds.max_depth):
        raise InvalidRequest(
            f"'{param}' is nested more than {bounds.max_depth} levels deep (the limit).", param=param
        )
    keys = sum(len(node) for node in _containers(value) if isinstance(node, dict))
    if keys > bounds.max_keys:
        raise InvalidRequest(
            f"'{param}' has {keys} keys; at most {bounds.max_keys} are allowed.", param=param
        )
    size = len(orjson.dumps(value))
    if size > bounds.max_bytes:
        raise InvalidRequest(
            f"'{param}' is {size} bytes as JSON; at most {bounds.max_bytes} are allowed.", param=param
        )


def _containers(node: Any) -> Iterator[Any]:
    pending = [node]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            yield node
            pending.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            yield node
            pending.extend(v for v in node if isinstance(v, dict | list))
