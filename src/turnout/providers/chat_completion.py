"""The OpenAI `chat.completion` body every translating wire format answers with, built in one
place: a choice from the answer's text, tool calls and reasoning, and the body around choices."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from turnout.domain.errors import UpstreamProtocolError
from turnout.domain.usage import Usage


def tool_arguments(value: Any) -> str:
    """A tool call's input (a JSON value the provider sent) as OpenAI's `arguments` string. msgspec
    writes what it read: integers beyond 64 bits, nesting past orjson's 254 levels."""
    try:
        return msgspec.json.encode({} if value is None else value).decode()
    except RecursionError:
        raise UpstreamProtocolError(
            "The provider sent a tool call input nested too deeply to pass on."
        ) from None


def function_call(call_id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    """One entry of a message's `tool_calls`."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def choice(
    text: str, calls: list[dict[str, Any]], reasoning: str, finish_reason: str | None, index: int = 0
) -> dict[str, Any]:
    """A choice: `content` is null only when the answer is tool calls alone; `reasoning_content`
    carries the provider's thinking, when it sent any."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text or (None if calls else ""),
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = reasoning
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}


def chat_completion(
    chat_id: str, model: str, choices: list[dict[str, Any]], usage: Usage | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": chat_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage.openai()
    return body
