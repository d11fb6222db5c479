"""A rehearsal's aggregate figures: nearest-rank percentiles (values that occurred), and the
disagreement score that orders the worst cases."""

from __future__ import annotations

from typing import Any

from turnout.rehearsal.summary import disagreement, percentile


def test_percentiles_are_nearest_rank() -> None:
    values = [50, 10, 40, 20, 30]
    assert [percentile(values, p) for p in (50, 90, 99)] == [30, 50, 50]
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None


def _result(**comparison: Any) -> dict[str, Any]:
    base = {
        "succeeded": True,
        "comparable": True,
        "same_finish_reason": True,
        "tool_calls": None,
        "json_valid": None,
        "similarity": 1.0,
        "judge": None,
    }
    return {"comparison": {**base, **comparison}}


def test_disagreement_adds_what_differs_and_a_failure_is_worst() -> None:
    assert disagreement(_result()) == 0.0
    assert disagreement(_result(succeeded=False)) == 4.0
    tools = {"same_tools": False, "arguments_valid": False, "arguments_equal": False}
    assert disagreement(_result(tool_calls=tools, similarity=None)) == 2.0
    assert disagreement(_result(json_valid=False, similarity=0.75, judge=0.5)) == 1.75
    assert disagreement(_result(same_finish_reason=False, similarity=-0.2)) == 1.5
