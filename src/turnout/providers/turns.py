"""Pieces every translating wire format uses to build a conversation: turns that alternate roles
(a message of the same role as the last one joins it), and a tool call's arguments as the JSON
object those formats send (OpenAI sends them as a string)."""

from __future__ import annotations

from typing import Any

import orjson

from turnout.domain.chat import ToolCall
from turnout.domain.errors import InvalidRequest, UnsupportedFeature


def add_turn(
    turns: list[dict[str, Any]], role: str, items: list[dict[str, Any]], key: str = "content"
) -> None:
    """Append a turn of `role`, or extend the last turn when it has that role already."""
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})


def call_arguments(
    call: ToolCall, where: str, provider: str, article: str = "a"
) -> tuple[str, dict[str, Any]]:
    """(function name, arguments) of an assistant's tool call; a 400 naming the message when the
    arguments are not a JSON object, which `provider`'s models need ("Anthropic", "an")."""
    if call.function is None:
        raise UnsupportedFeature(f"{provider} models take function tool calls only.", param=where)
    try:
        arguments = orjson.loads(call.function.arguments or "{}")
    except orjson.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise InvalidRequest(
            f"A tool call's 'arguments' must be a JSON object to send it to {article} {provider} model.",
            param=f"{where}.tool_calls",
        )
    return call.function.name, arguments
