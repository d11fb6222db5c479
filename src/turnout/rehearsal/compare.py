"""How a candidate's answer to one request compares with what the client got: success, finish
reasons, tool calls (the same tools, in order; the candidate's arguments valid against each
tool's JSON schema; the arguments equal as JSON), the answer's JSON against the schema the request
asked for (`response_format`), and the similarity of the two texts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema
import orjson

from turnout.rehearsal.answers import Answer, ToolUse

Similarity = Callable[[str, str], float]


def _parsed(text: str) -> tuple[bool, Any]:
    try:
        return True, orjson.loads(text)
    except orjson.JSONDecodeError:
        return False, None


def _valid(schema: Any, value: Any) -> bool:
    if not isinstance(schema, dict):
        return True  # no schema to hold it to
    try:
        validator = jsonschema.validators.validator_for(schema)
        validator.check_schema(schema)
        # a `$ref` to elsewhere is unresolvable (nothing is fetched) and counts as not valid
        return bool(validator(schema).is_valid(value))
    except (jsonschema.SchemaError, RecursionError):
        return False
    except Exception:  # an unresolvable `$ref`, a pattern the regex engine refuses ...
        return False


def tool_schemas(request: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for tool in request.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            schemas[function["name"]] = function.get("parameters")
    return schemas


def _arguments_valid(use: ToolUse, schemas: dict[str, Any]) -> bool:
    ok, value = _parsed(use.arguments or "{}")
    return ok and use.name in schemas and _valid(schemas[use.name], value)


def _arguments_equal(a: ToolUse, b: ToolUse) -> bool:
    ok_a, value_a = _parsed(a.arguments or "{}")
    ok_b, value_b = _parsed(b.arguments or "{}")
    return ok_a and ok_b and value_a == value_b


def tool_agreement(request: dict[str, Any], baseline: Answer, candidate: Answer) -> dict[str, bool] | None:
    """None when neither answer called a tool."""
    if not baseline.tool_calls and not candidate.tool_calls:
        return None
    same = [u.name for u in baseline.tool_calls] == [u.name for u in candidate.tool_calls]
    schemas = tool_schemas(request)
    return {
        "same_tools": same,
        "arguments_valid": bool(candidate.tool_calls)
        and all(_arguments_valid(u, schemas) for u in candidate.tool_calls),
        "arguments_equal": same
        and all(
            _arguments_equal(a, b) for a, b in zip(baseline.tool_calls, candidate.tool_calls, strict=True)
        ),
    }


def requested_schema(request: dict[str, Any]) -> tuple[bool, Any]:
    """(whether the request asked for JSON, the schema it gave if any)."""
    form = request.get("response_format")
    if not isinstance(form, dict) or form.get("type") not in ("json_object", "json_schema"):
        return False, None
    spec = form.get("json_schema")
    return True, spec.get("schema") if isinstance(spec, dict) else None


def json_validity(request: dict[str, Any], answer: Answer) -> bool | None:
    """Whether the answer is JSON valid against the requested schema (None: none was asked)."""
    wanted, schema = requested_schema(request)
    if not wanted:
        return None
    ok, value = _parsed(answer.text)
    return ok and _valid(schema, value)


def compare(
    request: dict[str, Any], baseline: Answer, candidate: Answer, similarity: Similarity
) -> dict[str, Any]:
    """The comparison of one request's two answers (JSON-ready)."""
    comparison: dict[str, Any] = {
        "succeeded": candidate.ok,
        "comparable": baseline.readable,
        "same_finish_reason": None,
        "tool_calls": None,
        "json_valid": None,
        "baseline_json_valid": None,
        "similarity": None,
    }
    if not candidate.ok or not baseline.readable:
        return comparison
    comparison["same_finish_reason"] = baseline.finish_reason == candidate.finish_reason
    comparison["tool_calls"] = tool_agreement(request, baseline, candidate)
    comparison["json_valid"] = json_validity(request, candidate)
    comparison["baseline_json_valid"] = json_validity(request, baseline)
    if baseline.text and candidate.text:
        comparison["similarity"] = round(similarity(baseline.text, candidate.text), 4)
    elif not baseline.text and not candidate.text:
        comparison["similarity"] = None  # tool calls only: compared above
    else:
        comparison["similarity"] = 0.0  # one answered in words, the other did not
    return comparison
