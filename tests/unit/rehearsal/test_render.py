"""The report's table and HTML page: answers are shown as text (a script in an answer stays
text), and a plan with nothing replayed yet still renders."""

from __future__ import annotations

from typing import Any

from turnout.rehearsal.answers import Answer
from turnout.rehearsal.compare import compare
from turnout.rehearsal.render import as_html, as_table
from turnout.rehearsal.summary import summarise

PLAN = {"from": "chat", "to": "other/<b>mini</b>", "judge": None, "similarity_model": "test"}
SCRIPT = "<script>alert(1)</script>"


def _result(served: Answer, candidate: Answer) -> dict[str, Any]:
    return {
        "request_id": "req-<1>",
        "baseline": served.document(),
        "candidate": candidate.document(),
        "comparison": compare({}, served, candidate, lambda a, b: 0.25) | {"judge": None},
    }


def test_an_answer_holding_markup_is_shown_as_text() -> None:
    served = Answer(ok=True, text="Hello.", finish_reason="stop", latency_ms=10, cost_micros=5)
    candidate = Answer(ok=True, text=SCRIPT, finish_reason="stop", latency_ms=30, ttft_ms=8, cost_micros=2)
    report = summarise(PLAN, [_result(served, candidate)], 1)
    page = as_html(report)
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>mini</b>" not in page and "req-&lt;1&gt;" in page
    assert report["worst"][0]["reasons"] == ["similarity 0.250"]
    assert "similarity mean/min" in as_table(report)


def test_a_plan_with_nothing_replayed_yet_still_renders() -> None:
    report = summarise(PLAN, [], 3)
    assert (report["planned"], report["replayed"], report["worst"]) == (3, 0, [])
    assert "0 of 3 replayed" in as_table(report)
    assert "no values" in as_html(report)
