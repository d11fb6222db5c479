"""The optional judge: a model the operator names (an alias of this configuration, asked through
its first deployment) scores from 0 to 10 how well the candidate's answer agrees with the one the
client got; the score is kept as 0 to 1. An answer without a score in it counts as no score."""

from __future__ import annotations

import re
from typing import Any

from turnout.domain.chat import parse_chat_request
from turnout.domain.errors import TurnoutError
from turnout.domain.usage import Usage
from turnout.routing.catalog import Target

PROMPT = (
    "You compare two answers to the same request. Answer A is the reference; answer B is a "
    "candidate. Reply with one integer from 0 to 10: 10 when B says the same as A (wording aside), "
    "0 when it contradicts or misses it. Reply with the number only."
)
MAX_PART = 8_000  # characters of the request and of each answer shown to the judge
SCORE = re.compile(r"\b(10|[0-9])\b")


def _last_question(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages") or ()):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            parts = [p.get("text", "") for p in content or () if isinstance(p, dict)]
            return " ".join(str(p) for p in parts)
    return ""


def judge_body(request: dict[str, Any], reference: str, candidate: str, model: str) -> dict[str, Any]:
    shown = (
        f"Request:\n{_last_question(request)[:MAX_PART]}\n\n"
        f"Answer A:\n{reference[:MAX_PART]}\n\nAnswer B:\n{candidate[:MAX_PART]}"
    )
    return {
        "model": model,
        "messages": [{"role": "system", "content": PROMPT}, {"role": "user", "content": shown}],
        "max_tokens": 5,
        "temperature": 0,
    }


def score_of(text: str) -> float | None:
    found = SCORE.search(text)
    return None if found is None else int(found.group(1)) / 10


async def judge(
    target: Target, request: dict[str, Any], reference: str, candidate: str
) -> tuple[float | None, Usage | None]:
    body = judge_body(request, reference, candidate, target.model)
    try:
        result = await target.adapter.complete(target.call(parse_chat_request(body), body, wants_usage=False))
    except TurnoutError:
        return None, None
    texts = result.texts()
    return (score_of(texts[0]) if texts else None), result.usage
