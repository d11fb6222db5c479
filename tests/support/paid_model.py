"""A priced fake model for budget tests: it answers after 300 ms (so concurrent requests overlap)
with a fixed reply, prompts are free and each output token costs a milli-dollar, so a request
with `max_tokens=TOKENS` reserves exactly what it is charged: `PER_REQUEST` micro-dollars."""

from __future__ import annotations

from typing import Any, Protocol

import openai

from turnout.providers.fake.responses import count_tokens

REPLY = "one two three four"
TOKENS = count_tokens(REPLY)  # the fake's count of its answer: what max_tokens must allow
PER_REQUEST = TOKENS * 1000  # µ$


def paid_models() -> dict[str, Any]:
    return {
        "paid": {
            "provider": "fake",
            "model": f"m?latency=300ms&reply={REPLY.replace(' ', '+')}",
            "price": {"input": "0", "output": "1000"},  # a milli-dollar an output token
        }
    }


class Served(Protocol):
    @property
    def base_url(self) -> str: ...


def ask(gateway: Served, key: str, model: str = "paid", timeout: float = 20) -> str:
    """'ok', or the error code of a 429 (insufficient_quota when a budget refused)."""
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=timeout) as client:
        try:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=TOKENS
            )
            return "ok"
        except openai.RateLimitError as error:
            return str(error.body["code"])  # type: ignore[index]
