"""What is wrong with a written value, all of it at once, in words an operator can act on.

msgspec stops at the first fault of a value; `every_problem` walks a struct's fields itself so that
one `turnout config check` names every unknown key, missing field and wrong value of a section
(a file with four typos needs one round, not four). Each fault is described with its dotted path
and, where it helps, a hint: the key or choice that was probably meant, or to quote a value YAML
read as something other than the string it was meant to be (`2024-10-21` is a date, `010` the
number 8, `no` a boolean).
"""

from __future__ import annotations

import datetime
import difflib
import re
import types
import typing
from typing import Any, Literal

import msgspec

NON_STRING_KEY = (
    "every key must be a string (YAML reads unquoted on/off/yes/no, numbers and ~ as other types: quote them)"
)

_KEY_PATH = re.compile(r"^(?P<what>.*?) - at `key` in `\$(?P<path>[^`]*)`$", re.DOTALL)
_MSGSPEC_PATH = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def every_problem(data: object, typ: Any, base: str) -> list[tuple[str, str]]:
    """Each fault of `data` read as `typ`, as (dotted path, message); empty when it converts."""
    struct = _struct_of(typ)
    if struct is not None and isinstance(data, dict):
        return _struct_problems(data, struct, base)
    if isinstance(data, list) and (item := _list_item(typ)) is not None:
        found: list[tuple[str, str]] = []
        for i, value in enumerate(data):
            found += every_problem(value, item, f"{base}[{i}]")
        return found
    if isinstance(data, dict) and (value_type := _dict_value(typ)) is not None:
        found = []
        for key, value in data.items():
            if not isinstance(key, str):
                found.append((base or "(top level)", NON_STRING_KEY))
                continue
            found += every_problem(value, value_type, f"{base}.{key}" if base else key)
        return found
    try:
        msgspec.convert(data, typ)
    except msgspec.ValidationError as error:
        return [describe(error, typ, base, data)]
    return []


def _struct_problems(data: dict[Any, Any], struct: type, base: str) -> list[tuple[str, str]]:
    fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
    found: list[tuple[str, str]] = []
    for key, value in data.items():
        if not isinstance(key, str):
            found.append((base or "(top level)", NON_STRING_KEY))
            continue
        path = f"{base}.{key}" if base else key
        field = fields.get(key)
        if field is None:
            found.append((path, f"unknown key ({key_hint(key, list(fields))})"))
            continue
        found += every_problem(value, field.type, path)
    for name, field in fields.items():
        if field.required and name not in data:
            found.append((f"{base}.{name}" if base else name, "required"))
    if not found:  # each field is fine alone; what msgspec still refuses is about the whole
        try:
            msgspec.convert(data, struct)
        except msgspec.ValidationError as error:
            found.append(describe(error, struct, base, data))
    return found


def describe(error: msgspec.ValidationError, typ: Any, base: str, value: object = None) -> tuple[str, str]:
    """A msgspec failure → (dotted path, message with a hint). `value` is what was written at
    `base` (it gives the hints for values YAML read as another type)."""
    key = _KEY_PATH.match(str(error))
    if key:
        sub = key["path"].lstrip(".")
        return ".".join(p for p in (base, sub) if p).replace(".[", "[") or "(top level)", NON_STRING_KEY
    match = _MSGSPEC_PATH.match(str(error))
    assert match is not None
    what, sub = match["what"], (match["path"] or "").lstrip(".")
    path = ".".join(p for p in (base, sub) if p).replace(".[", "[")
    unknown = re.match(r"Object contains unknown field `(?P<field>[^`]+)`", what)
    if unknown:
        field = unknown["field"]
        owner = _struct_at(typ, sub)
        names = list(getattr(owner, "__struct_fields__", ()))
        return (f"{path}.{field}" if path else field), f"unknown key ({key_hint(field, names)})"
    missing = re.match(r"Object missing required field `(?P<field>[^`]+)`", what)
    if missing:
        field = missing["field"]
        return (f"{path}.{field}" if path else field), "required"
    expected = re.match(r"Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`", what)
    if expected:
        wanted = expected["expected"].replace("float", "number").replace("str", "string")
        message = f"expected {wanted}, got {expected['got']}"
        if "string" in wanted and not sub:
            message += _quote_hint(value, wanted)
        return path, message
    choice = re.match(r"Invalid enum value (?P<value>.*)$", what)
    if choice and not sub:
        return path, _choice_message(value, _choices(typ))
    return path, what[0].lower() + what[1:] if what else "invalid value"


def key_hint(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"


def _choice_message(value: object, choices: list[str]) -> str:
    listing = ", ".join(choices)
    if isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown choice '{value}'{hint} (one of: {listing})"
    return f"must be one of: {listing}{_quote_hint(value, 'string')}"


def _quote_hint(value: object, wanted: str) -> str:
    """Why YAML did not give the string that was probably written, and how to keep it one
    (`wanted`: what the value may be, as msgspec names it)."""
    accepted = set(re.findall(r"\w+", wanted))
    if isinstance(value, datetime.date):  # datetime is a date too
        shown = value.isoformat()
        kind = "a timestamp" if isinstance(value, datetime.datetime) else "a date"
        return f' (YAML reads an unquoted {shown} as {kind}: write it in quotes, "{shown}")'
    if accepted & {"int", "number", "bool"}:
        return ""  # a size, a count or a switch: quoting would not make it right
    if isinstance(value, bool):
        return ' (YAML reads unquoted yes/no/on/off/true/false as booleans: quote the word, e.g. "no")'
    if isinstance(value, int):
        return (
            f" (YAML read a number, {value}: a leading 0 makes it octal, 0x hexadecimal, and '_' is "
            "dropped; quote the value to keep it as written)"
        )
    if isinstance(value, float):
        return f" (YAML read a number, {value!r}: quote the value to keep it as written)"
    return ""


def _choices(typ: Any) -> list[str]:
    """The literal strings a (possibly optional) Literal type allows."""
    if typing.get_origin(typ) is Literal:
        return [str(a) for a in typing.get_args(typ)]
    out: list[str] = []
    for arg in _union_members(typ):
        out += _choices(arg)
    return out


def _union_members(typ: Any) -> tuple[Any, ...]:
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        return typing.get_args(typ)
    return ()


def _struct_of(typ: Any) -> type | None:
    """The struct `typ` is, or the one struct of an optional struct (`X | None`)."""
    if isinstance(typ, type) and issubclass(typ, msgspec.Struct):
        return typ
    members = [m for m in _union_members(typ) if m is not type(None)]
    if len(members) == 1:
        return _struct_of(members[0])
    return None


def _list_item(typ: Any) -> Any:
    """The item type of `list[X]` or `list[X] | None` when X is a struct (else None: msgspec's own
    message for the whole list is as good)."""
    candidates = [typ, *(m for m in _union_members(typ) if m is not type(None))]
    lists = [c for c in candidates if typing.get_origin(c) is list]
    if len(lists) == 1 and len(candidates) <= 2:
        (item,) = typing.get_args(lists[0]) or (Any,)
        return item if _struct_of(item) is not None else None
    return None


def _dict_value(typ: Any) -> Any:
    """The value type of `dict[str, X]` (or optional) when X is a struct."""
    candidates = [typ, *(m for m in _union_members(typ) if m is not type(None))]
    dicts = [c for c in candidates if typing.get_origin(c) is dict]
    if len(dicts) == 1 and len(candidates) <= 2:
        args = typing.get_args(dicts[0])
        value = args[1] if len(args) == 2 else Any
        return value if _struct_of(value) is not None else None
    return None


def _struct_at(typ: type, path: str) -> type | None:
    """The struct type found at a msgspec path such as `.targets[1]` under `typ`."""
    current: Any = typ
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            continue
        info = msgspec.inspect.type_info(current)
        fields = {f.name: f for f in getattr(info, "fields", ())}
        if part not in fields:
            return None
        current = _unwrap(fields[part].type)
        if current is None:
            return None
    return current if isinstance(current, type) and hasattr(current, "__struct_fields__") else None


def _unwrap(info: msgspec.inspect.Type) -> type | None:
    if isinstance(info, msgspec.inspect.StructType):
        return info.cls
    if isinstance(info, msgspec.inspect.UnionType):
        for t in info.types:
            if (found := _unwrap(t)) is not None:
                return found
    if isinstance(info, msgspec.inspect.ListType):
        return _unwrap(info.item_type)
    return None
