"""Turn msgspec validation failures into OpenAI-style `InvalidRequest`s that name the parameter."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from turnout.domain.errors import InvalidRequest

T = TypeVar("T")

_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_EXPECTED = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_RANGE = re.compile(r"^Expected `(?P<expected>[^`]+)` (?P<rule>.+)$")
_ENUM = re.compile(r"^Invalid (?:enum )?value (?P<value>.+)$")

_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
}


def _describe(expected: str) -> str:
    kinds = [k.strip() for k in expected.split("|")]
    words = [_NAMES.get(k, k) for k in kinds if k != "null"] or ["null"]
    return words[0] if len(words) == 1 else "one of " + ", ".join(words[:-1]) + " or " + words[-1]


def to_param(path: str) -> str | None:
    """`$.messages[0].content` (as msgspec reports it, without the `$`) → `messages[0].content`."""
    return path.lstrip(".") or None


def invalid_request(error: msgspec.ValidationError, *, prefix: str = "") -> InvalidRequest:
    """Describe a msgspec failure the way OpenAI describes its own."""
    match = _AT.match(str(error))
    assert match is not None  # the pattern matches any string
    what, path = match["what"], match["path"] or ""
    param = to_param(prefix + path)
    if m := _MISSING.match(what):
        field = f"{param}.{m['field']}" if param else m["field"]
        return InvalidRequest(
            f"Missing required parameter: '{field}'.", param=field, code="missing_required_parameter"
        )
    if m := _EXPECTED.match(what):
        where = f"'{param}'" if param else "the request body"
        return InvalidRequest(
            f"Invalid type for {where}: expected {_describe(m['expected'])}, "
            f"but got {_NAMES.get(m['got'], m['got'])} instead.",
            param=param,
            code="invalid_type",
        )
    if m := _RANGE.match(what):
        return InvalidRequest(
            f"Invalid '{param}': expected a value {m['rule']}.", param=param, code="invalid_value"
        )
    if m := _ENUM.match(what):
        return InvalidRequest(
            f"Invalid value for '{param}': {m['value']} is not one of the supported values.",
            param=param,
            code="invalid_value",
        )
    return InvalidRequest(f"Invalid '{param}': {what}." if param else f"{what}.", param=param)


def convert(data: object, typ: type[T], *, prefix: str = "") -> T:
    """`msgspec.convert` with OpenAI-style errors."""
    try:
        return msgspec.convert(data, typ)
    except msgspec.ValidationError as error:
        found = invalid_request(error, prefix=prefix)
        if found.code == "invalid_type" and _wide_integer(data, str(error)):
            # JSON decoding turns an integer beyond 64 bits into a float: say what really happened
            raise InvalidRequest(
                f"Invalid '{found.param}': integers must fit in 64 bits.",
                param=found.param,
                code="number_out_of_range",
            ) from None
        raise found from None


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _wide_integer(data: object, message: str) -> bool:
    """Is the value an "expected an integer" error points at a whole float beyond 64 bits?"""
    match = _AT.match(message)
    if match is None or "int" not in message.split("got", 1)[0] or not match["path"]:
        return False
    node = data
    for key, index in _STEP.findall(match["path"]):
        try:
            node = node[int(index)] if index else node[key]  # type: ignore[index]
        except (KeyError, IndexError, TypeError, ValueError):
            return False
    # (-2**63 - 1 rounds to -2**63 as a float: a whole float there came from a wider integer)
    return isinstance(node, float) and node.is_integer() and not -(2.0**63) < node < 2.0**64
