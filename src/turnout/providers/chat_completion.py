"""The OpenAI `chat.completion` every translating wire format answers with, built in one place (as
typed structs, encoded only at the edge): a choice from the answer's text, tool calls and
reasoning, and the completion around choices."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from msgspec import UNSET

from turnout.domain.completions import (
    ChatCompletion,
    CompletionChoice,
    CompletionFunction,
    CompletionMessage,
    CompletionToolCall,
)
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


def function_call(call_id: str | None, name: str | None, arguments: str) -> CompletionToolCall:
    """One entry of a message's `tool_calls`."""
    return CompletionToolCall(call_id, "function", CompletionFunction(name, arguments))


def choice(
    text: str, calls: list[CompletionToolCall], reasoning: str, finish_reason: str | None, index: int = 0
) -> CompletionChoice:
    """A choice: `content` is null only when the answer is tool calls alone; `reasoning_content`
    carries the provider's thinking, when it sent any."""
    message = CompletionMessage(
        content=text or (None if calls else ""),
        tool_calls=calls or UNSET,
        reasoning_content=reasoning or UNSET,
    )
    return CompletionChoice(index, message, finish_reason=finish_reason)


def chat_completion(
    chat_id: str, model: str, choices: list[CompletionChoice], usage: Usage | None
) -> ChatCompletion:
    return ChatCompletion(
        chat_id,
        created=int(time.time()),
        model=model,
        choices=choices,
        usage=UNSET if usage is None else usage.openai_usage(),
    )
