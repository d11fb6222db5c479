"""Comparing two answers to one request: tool calls (names in order, arguments against each
tool's schema, arguments equal as JSON), JSON against the requested schema, finish reasons."""

from __future__ import annotations

from typing import Any

from turnout.rehearsal.answers import Answer, ToolUse
from turnout.rehearsal.compare import compare, json_validity, tool_agreement

TOOLS = {
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "add",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                    "required": ["a", "b"],
                },
            },
        }
    ]
}


def _calls(*uses: tuple[str, str]) -> Answer:
    return Answer(ok=True, tool_calls=tuple(ToolUse(n, a) for n, a in uses), finish_reason="tool_calls")


def _never(a: str, b: str) -> float:
    raise AssertionError("no text to compare")


def test_tool_calls_agree_when_names_match_and_arguments_are_equal_json() -> None:
    served = _calls(("add", '{"a": 1, "b": 2}'))
    assert tool_agreement(TOOLS, served, _calls(("add", '{"b":2,"a":1}'))) == {
        "same_tools": True,
        "arguments_valid": True,
        "arguments_equal": True,
    }


def test_arguments_outside_the_schema_or_not_json_are_invalid() -> None:
    served = _calls(("add", '{"a": 1, "b": 2}'))
    assert tool_agreement(TOOLS, served, _calls(("add", '{"a": "1", "b": 2}')))["arguments_valid"] is False
    assert tool_agreement(TOOLS, served, _calls(("add", '{"a": 1, "b": 2'))) == {
        "same_tools": True,
        "arguments_valid": False,
        "arguments_equal": False,
    }


def test_a_tool_the_request_never_offered_is_invalid_and_another_tool_is_not_the_same() -> None:
    served = _calls(("add", '{"a": 1, "b": 2}'))
    assert tool_agreement(TOOLS, served, _calls(("sub", '{"a": 1, "b": 2}'))) == {
        "same_tools": False,
        "arguments_valid": False,
        "arguments_equal": False,
    }


def test_no_tool_call_on_either_side_is_no_tool_comparison() -> None:
    assert tool_agreement(TOOLS, Answer(ok=True, text="3"), Answer(ok=True, text="3")) is None


def test_a_missing_tool_call_counts_against_the_candidate() -> None:
    served = _calls(("add", '{"a": 1, "b": 2}'))
    assert tool_agreement(TOOLS, served, Answer(ok=True, text="It is 3.")) == {
        "same_tools": False,
        "arguments_valid": False,
        "arguments_equal": False,
    }


def _schema(schema: Any) -> dict[str, Any]:
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}


def test_json_is_held_to_the_requested_schema() -> None:
    request = _schema({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}})
    assert json_validity(request, Answer(ok=True, text='{"n": 3}')) is True
    assert json_validity(request, Answer(ok=True, text='{"n": "3"}')) is False
    assert json_validity(request, Answer(ok=True, text="n = 3")) is False
    assert json_validity({"response_format": {"type": "json_object"}}, Answer(ok=True, text="[1]")) is True
    assert json_validity({}, Answer(ok=True, text="anything")) is None
    assert json_validity(_schema({"type": "no-such-type"}), Answer(ok=True, text="{}")) is False


def test_a_failed_candidate_is_not_compared_further() -> None:
    comparison = compare(TOOLS, _calls(("add", "{}")), Answer(ok=False, error="timeout"), _never)
    assert comparison["succeeded"] is False
    assert comparison["tool_calls"] is None and comparison["same_finish_reason"] is None


def test_an_answer_in_words_against_none_has_no_similarity_at_all() -> None:
    comparison = compare({}, Answer(ok=True, text="Paris."), Answer(ok=True, text=""), _never)
    assert comparison["similarity"] == 0.0


def test_a_schema_that_points_elsewhere_is_not_fetched_and_holds_nothing_valid() -> None:
    request = _schema({"$ref": "https://example.com/schema.json"})
    assert json_validity(request, Answer(ok=True, text="{}")) is False


def test_the_state_keeps_a_bounded_part_of_a_long_answer() -> None:
    long = Answer(ok=True, text="word " * 50_000, tool_calls=(ToolUse("add", "1" * 100_000),))
    doc = long.document()
    assert len(doc["text"]) == 65_536 and len(doc["tool_calls"][0]["arguments"]) == 65_536
