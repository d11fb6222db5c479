"""A rehearsal's figures in aggregate, from its per-request results: how many the candidate
answered, latency and time to first token (percentiles, nearest rank), tokens and cost on each
side, finish reasons, tool-call and JSON agreement rates, similarity and judge scores, and the
requests that disagree most, worst first, for review."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from turnout.domain.pricing import format_usd

PERCENTILES = (50, 90, 99)
WORST = 10


def percentile(values: list[int], p: int) -> int | None:
    """The nearest-rank percentile (a value that occurred), None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _spread(values: list[int]) -> dict[str, Any]:
    return {"count": len(values), **{f"p{p}": percentile(values, p) for p in PERCENTILES}, "values": values}


def _rate(flags: list[bool]) -> dict[str, Any]:
    return {
        "of": len(flags),
        "agree": sum(flags),
        "rate": round(sum(flags) / len(flags), 4) if flags else None,
    }


def _side(results: list[dict[str, Any]], side: str) -> dict[str, Any]:
    answers = [r[side] for r in results]
    answered = [a for a in answers if a["ok"]]
    costs = [a["cost_micros"] for a in answered if a["cost_micros"] is not None]
    return {
        "answered": len(answered),
        "failed": dict(sorted(Counter(str(a["error"]) for a in answers if not a["ok"]).items())),
        "latency_ms": _spread([a["latency_ms"] for a in answered if a["latency_ms"] is not None]),
        "ttft_ms": _spread([a["ttft_ms"] for a in answered if a["ttft_ms"] is not None]),
        "input_tokens": sum(a["input_tokens"] or 0 for a in answered),
        "output_tokens": sum(a["output_tokens"] or 0 for a in answered),
        "cost_usd": format_usd(sum(costs)),
        "unpriced": len(answered) - len(costs),
        "finish_reasons": dict(sorted(Counter(str(a["finish_reason"]) for a in answered).items())),
    }


def disagreement(result: dict[str, Any]) -> float:
    """How far the candidate's answer is from the client's: 0 agrees; a failure is the worst (4)."""
    c = result["comparison"]
    if not c["succeeded"]:
        return 4.0
    score = 0.0
    tools = c["tool_calls"]
    if tools is not None:
        score += (
            (not tools["same_tools"])
            + (not tools["arguments_valid"]) * 0.5
            + (not tools["arguments_equal"]) * 0.5
        )
    if c["json_valid"] is False:
        score += 1.0
    if c["same_finish_reason"] is False:
        score += 0.5
    if c["similarity"] is not None:
        score += 1.0 - max(0.0, c["similarity"])
    if c.get("judge") is not None:
        score += 1.0 - c["judge"]
    return round(score, 4)


def _reasons(result: dict[str, Any]) -> list[str]:
    c = result["comparison"]
    if not c["succeeded"]:
        return [f"the candidate failed ({result['candidate']['error']})"]
    reasons = []
    tools = c["tool_calls"]
    if tools is not None and not tools["same_tools"]:
        reasons.append("called other tools")
    elif tools is not None and not tools["arguments_equal"]:
        reasons.append("other tool arguments")
    if tools is not None and not tools["arguments_valid"]:
        reasons.append("tool arguments invalid against the tool's schema")
    if c["json_valid"] is False:
        reasons.append("answer not valid against the requested JSON schema")
    if c["same_finish_reason"] is False:
        reasons.append(
            f"finished {result['candidate']['finish_reason']} (was {result['baseline']['finish_reason']})"
        )
    if c["similarity"] is not None and c["similarity"] < 1:
        reasons.append(f"similarity {c['similarity']:.3f}")
    return reasons


FIGURES = (
    "ok",
    "error",
    "finish_reason",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost_micros",
)


def per_request(result: dict[str, Any]) -> dict[str, Any]:
    """One request's comparison, without the answers' texts (the state file has them)."""
    return {
        "request_id": result["request_id"],
        "disagreement": disagreement(result),
        "baseline": {k: result["baseline"].get(k) for k in FIGURES},
        "candidate": {k: result["candidate"].get(k) for k in FIGURES},
        "comparison": result["comparison"],
    }


def summarise(plan: dict[str, Any], results: list[dict[str, Any]], planned: int) -> dict[str, Any]:
    replayed = [r for r in results if not r.get("missing")]
    compared = [r for r in replayed if r["comparison"]["succeeded"] and r["comparison"]["comparable"]]
    tools = [r["comparison"]["tool_calls"] for r in compared if r["comparison"]["tool_calls"] is not None]
    schemas = [r for r in compared if r["comparison"]["json_valid"] is not None]
    similarities = [
        r["comparison"]["similarity"] for r in compared if r["comparison"]["similarity"] is not None
    ]
    judged = [r["comparison"]["judge"] for r in compared if r["comparison"].get("judge") is not None]
    ranked = sorted(replayed, key=lambda r: (-disagreement(r), r["request_id"]))
    return {
        "object": "rehearsal_report",
        "from": plan["from"],
        "to": plan["to"],
        "planned": planned,
        "replayed": len(replayed),
        "missing": len(results) - len(replayed),
        "compared": len(compared),
        "baseline": _side(replayed, "baseline"),
        "candidate": _side(replayed, "candidate"),
        "agreement": {
            "finish_reason": _rate([r["comparison"]["same_finish_reason"] for r in compared]),
            "same_tools": _rate([t["same_tools"] for t in tools]),
            "tool_arguments_valid": _rate([t["arguments_valid"] for t in tools]),
            "tool_arguments_equal": _rate([t["arguments_equal"] for t in tools]),
            "json_valid": _rate([r["comparison"]["json_valid"] for r in schemas]),
            "baseline_json_valid": _rate([r["comparison"]["baseline_json_valid"] for r in schemas]),
        },
        "similarity": {
            "model": plan.get("similarity_model"),
            "count": len(similarities),
            "mean": round(sum(similarities) / len(similarities), 4) if similarities else None,
            "min": min(similarities) if similarities else None,
        },
        "judge": {
            "model": plan.get("judge"),
            "count": len(judged),
            "mean": round(sum(judged) / len(judged), 4) if judged else None,
        },
        "worst": [
            {
                "request_id": r["request_id"],
                "disagreement": disagreement(r),
                "reasons": _reasons(r),
                "baseline": r["baseline"],
                "candidate": r["candidate"],
            }
            for r in ranked[:WORST]
            if disagreement(r) > 0
        ],
        "requests": [per_request(r) for r in replayed],
    }
