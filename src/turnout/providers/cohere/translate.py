"""OpenAI chat ⇄ Cohere v2 chat, as pure functions. Cohere's v2 messages are close to OpenAI's:
roles, tool calls and tool results carry over; `top_p` is `p`, `stop` is `stop_sequences`,
`tool_choice` is `REQUIRED` / `NONE`, JSON modes are `response_format: json_object` (with
`json_schema`). Answers: text content → `content`, `tool_plan` and thinking → `reasoning_content`,
finish reasons mapped (COMPLETE / STOP_SEQUENCE → stop, MAX_TOKENS → length, TOOL_CALL →
tool_calls)."""

from __future__ import annotations

from typing import Any

from turnout.domain.chat import ChatRequest
from turnout.domain.completions import ChatCompletion
from turnout.domain.errors import UnsupportedFeature
from turnout.providers.chat_completion import chat_completion, choice, function_call
from turnout.providers.cohere.wire import ChatResponse

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR": "stop",
    "TIMEOUT": "length",
}


def finish_reason(reason: str | None) -> str:
    return FINISH_REASONS.get(reason or "COMPLETE", "stop")


def request_body(request: ChatRequest, body: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    """Cohere's request: the client's messages and tools pass through (same shapes), the rest is
    renamed. `body` is the client's validated JSON (its unsupported parameters dealt with)."""
    out: dict[str, Any] = {"model": model, "messages": [_message(m) for m in body["messages"]]}
    if stream:
        out["stream"] = True
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "p"),
        ("seed", "seed"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
    ):
        if body.get(src) is not None:
            out[dst] = body[src]
    if request.output_token_limit is not None:
        out["max_tokens"] = request.output_token_limit
    if request.stop is not None:
        out["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    if body.get("tools"):
        out["tools"] = body["tools"]
    choice = request.tool_choice
    if choice == "required":
        out["tool_choice"] = "REQUIRED"
    elif choice == "none":
        out["tool_choice"] = "NONE"
    elif choice is not None and choice != "auto":
        raise UnsupportedFeature(
            "Cohere models take tool_choice auto, required or none.", param="tool_choice"
        )
    fmt = request.response_format
    if fmt is not None and fmt.type in ("json_object", "json_schema"):
        out["response_format"] = {"type": "json_object"}
        if fmt.type == "json_schema" and fmt.json_schema is not None and fmt.json_schema.schema is not None:
            out["response_format"]["json_schema"] = fmt.json_schema.schema
    return out


def _message(m: dict[str, Any]) -> dict[str, Any]:
    role = m.get("role")
    if role == "developer":
        role = "system"
    out: dict[str, Any] = {"role": role}
    content = m.get("content")
    if content is not None:
        out["content"] = content
    if role == "assistant" and m.get("tool_calls"):
        out["tool_calls"] = m["tool_calls"]
    if role == "tool":
        out["tool_call_id"] = m.get("tool_call_id")
    return out


def completion(response: ChatResponse, *, model: str) -> ChatCompletion:
    message = response.message
    text = "".join(c.text or "" for c in (message.content or ()) if c.type == "text") if message else ""
    thinking = (
        "".join(c.thinking or "" for c in (message.content or ()) if c.type == "thinking") if message else ""
    )
    calls = [
        function_call(call.id, call.function.name, call.function.arguments or "{}")
        for call in (message.tool_calls or () if message else ())
        if call.function is not None
    ]
    reasoning = thinking or (message.tool_plan if message else None) or ""
    answer = choice(text, calls, reasoning, finish_reason(response.finish_reason))
    usage = response.usage.canonical() if response.usage is not None else None
    return chat_completion(f"chatcmpl-{response.id}", model, [answer], usage)
