"""OpenAI chat ⇄ Anthropic Messages, as pure functions.

Request: system and developer messages become `system`; consecutive messages of one role are
merged (Anthropic alternates user and assistant); tool results become `tool_result` blocks in a
user turn; images become `image` blocks (a data URL as base64, an http(s) URL as a URL source);
tools, tool_choice and parallel_tool_calls map to their Anthropic forms; `max_tokens` is required
there, so a request without one gets `DEFAULT_MAX_TOKENS`. Structured outputs (`json_schema`,
`json_object`) use Anthropic's documented technique: one tool whose input schema is the wanted
schema, forced with `tool_choice`; its input is returned as the message's JSON text.

Response: text blocks → `content`, tool_use → `tool_calls`, thinking → `reasoning_content`,
stop reasons mapped exactly (end_turn/stop_sequence → stop, max_tokens → length, tool_use →
tool_calls, refusal → content_filter), usage with cache reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from turnout.domain.chat import (
    AssistantMessage,
    ChatRequest,
    Content,
    DeveloperMessage,
    FunctionMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from turnout.domain.completions import ChatCompletion, CompletionToolCall
from turnout.domain.errors import InvalidRequest, UnsupportedFeature
from turnout.providers.anthropic.wire import Message
from turnout.providers.chat_completion import chat_completion, choice, function_call, tool_arguments
from turnout.providers.turns import add_turn, call_arguments

DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "json_output"
JSON_TOOL_DESCRIPTION = "Respond with the answer as this tool's input: it must match the schema exactly."

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


@dataclass(frozen=True, slots=True)
class JsonMode:
    """The request asked for JSON: the answer comes back as this tool's input."""

    tool: str


def finish_reason(stop_reason: str | None, json_mode: JsonMode | None) -> str | None:
    if stop_reason is None:
        return None
    if json_mode is not None and stop_reason == "tool_use":
        return "stop"
    return FINISH_REASONS.get(stop_reason, "stop")


# ----------------------------------------------------------------------------- request


def request_body(request: ChatRequest, model: str, *, stream: bool) -> tuple[dict[str, Any], JsonMode | None]:
    """The Anthropic request for `request` (its unsupported parameters already dealt with)."""
    system, messages = _messages(request)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.output_token_limit or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        body["system"] = system
    if stream:
        body["stream"] = True
    if request.temperature is not None:
        if request.temperature > 1:
            raise InvalidRequest(
                f"Anthropic models take a temperature between 0 and 1, got {request.temperature}.",
                param="temperature",
            )
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop is not None:
        body["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    user = request.user or request.safety_identifier
    if user:
        body["metadata"] = {"user_id": user}
    json_mode = _tools(request, body)
    return body, json_mode


def _tools(request: ChatRequest, body: dict[str, Any]) -> JsonMode | None:
    fmt = request.response_format
    if fmt is not None and fmt.type in ("json_schema", "json_object"):
        return _json_mode(request, body)
    if not request.tools:
        if request.tool_choice not in (None, "none", "auto"):
            raise InvalidRequest("'tool_choice' needs 'tools'.", param="tool_choice")
        return None
    body["tools"] = _tool_list(request)
    choice = _tool_choice(request)
    if choice is not None:
        body["tool_choice"] = choice
    return None


def _json_mode(request: ChatRequest, body: dict[str, Any]) -> JsonMode:
    """OpenAI's JSON modes as Anthropic does them: one forced tool whose input is the answer."""
    fmt = request.response_format
    assert fmt is not None
    if request.tools:
        raise UnsupportedFeature(
            "Anthropic models cannot combine tools with response_format JSON modes in one request.",
            param="response_format",
        )
    schema: dict[str, Any] = {"type": "object"}
    name, description = JSON_TOOL, JSON_TOOL_DESCRIPTION
    if fmt.type == "json_schema" and fmt.json_schema is not None:
        schema = fmt.json_schema.schema or schema
        description = fmt.json_schema.description or description
    body["tools"] = [{"name": name, "description": description, "input_schema": schema}]
    body["tool_choice"] = {"type": "tool", "name": name}
    return JsonMode(name)


def _tool_list(request: ChatRequest) -> list[dict[str, Any]]:
    tools = []
    for i, tool in enumerate(request.tools or ()):
        if tool.type != "function" or tool.function is None:
            raise UnsupportedFeature("Anthropic models take function tools only.", param=f"tools[{i}].type")
        f = tool.function
        entry: dict[str, Any] = {"name": f.name, "input_schema": f.parameters or {"type": "object"}}
        if f.description:
            entry["description"] = f.description
        if f.strict is not None:
            entry["strict"] = f.strict  # Anthropic validates tool inputs against the schema too
        tools.append(entry)
    return tools


TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}  # OpenAI's → Anthropic's


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    choice: dict[str, Any] | None = None
    tc = request.tool_choice
    if isinstance(tc, str):
        choice = {"type": TOOL_CHOICES[tc]}
    elif tc is not None:
        if tc.type != "function" or tc.function is None:
            raise UnsupportedFeature(
                "Anthropic models take tool_choice of type 'function' only.", param="tool_choice"
            )
        choice = {"type": "tool", "name": tc.function.name}
    if request.parallel_tool_calls is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return choice


def _messages(request: ChatRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    for i, m in enumerate(request.messages):
        where = f"messages[{i}]"
        if isinstance(m, SystemMessage | DeveloperMessage):
            system.extend(b for b in _blocks(m.content, where, images=False))
        elif isinstance(m, UserMessage):
            add_turn(turns, "user", _blocks(m.content, where, images=True))
        elif isinstance(m, AssistantMessage):
            blocks = _blocks(m.content, where, images=False) if m.content else []
            for call in m.tool_calls or ():
                name, arguments = call_arguments(call, where, "Anthropic", "an")
                blocks.append({"type": "tool_use", "id": call.id, "name": name, "input": arguments})
            if blocks:
                add_turn(turns, "assistant", blocks)
        elif isinstance(m, ToolMessage):
            content = m.content if isinstance(m.content, str) else _blocks(m.content, where, images=True)
            add_turn(
                turns, "user", [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": content}]
            )
        elif isinstance(m, FunctionMessage):
            raise UnsupportedFeature("Anthropic models do not take legacy 'function' messages.", param=where)
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": "(continue)"}]})
    last = turns[-1]
    if last["role"] == "assistant" and last["content"][-1].get("type") == "text":
        # a final assistant turn is a prefill, which Anthropic continues; it must not end in whitespace
        last["content"][-1]["text"] = last["content"][-1]["text"].rstrip()
    return system, turns


def _blocks(content: Content, where: str, *, images: bool) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if part.type == "text" and part.text is not None:
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif part.type == "image_url" and part.image_url is not None and images:
            blocks.append(
                {"type": "image", "source": image_source(part.image_url.url, f"{where}.content[{j}]")}
            )
        elif part.type == "refusal" and part.refusal is not None:
            blocks.append({"type": "text", "text": part.refusal})
        else:
            raise UnsupportedFeature(
                f"Anthropic models do not take '{part.type}' content here.", param=f"{where}.content[{j}]"
            )
    return blocks


MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def image_source(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or media_type not in MEDIA_TYPES:
            raise InvalidRequest(
                "An image for an Anthropic model must be a base64 data URL of a JPEG, PNG, GIF or WebP "
                "image (data:image/png;base64,...) or an http(s) URL.",
                param=where,
            )
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise InvalidRequest("An image URL must be http(s) or a base64 data URL.", param=where)


# ----------------------------------------------------------------------------- response


def completion(message: Message, json_mode: JsonMode | None, *, requested_model: str) -> ChatCompletion:
    """An OpenAI `chat.completion` for an Anthropic message."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[CompletionToolCall] = []
    for block in message.content:
        if block.type == "text" and block.text is not None:
            texts.append(block.text)
        elif block.type == "thinking" and block.thinking:
            thinking.append(block.thinking)
        elif block.type == "tool_use":
            arguments = tool_arguments(block.input)
            if json_mode is not None and block.name == json_mode.tool:
                texts.append(arguments)
            else:
                calls.append(function_call(block.id, block.name, arguments))
    finish = finish_reason(message.stop_reason, json_mode) or "stop"
    answer = choice("".join(texts), calls, "".join(thinking), finish)
    usage = message.usage.canonical() if message.usage is not None else None
    return chat_completion(chat_id(message.id), message.model or requested_model, [answer], usage)


def chat_id(message_id: str) -> str:
    return f"chatcmpl-{message_id}"
