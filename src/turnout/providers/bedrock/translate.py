"""OpenAI chat ⇄ Bedrock Converse, as pure functions.

Request: system and developer messages become `system` text blocks; consecutive messages of one
role are merged (Converse alternates user and assistant, starting with user); assistant tool calls
become `toolUse` blocks and tool results `toolResult` blocks in a user turn; images must be base64
data URLs (Converse takes bytes or S3, not http URLs); tools become `toolConfig.tools[].toolSpec`,
tool_choice auto/required/named becomes `auto`/`any`/`tool`. Converse has no "none": the tools are
left out, which is only possible while the conversation holds no tool blocks (Bedrock requires a
`toolConfig` then), so such a request is refused. `max_tokens`, `temperature`, `top_p` and `stop`
go to `inferenceConfig`. Structured outputs (`json_schema`, `json_object`) use the forced-tool
technique: one tool whose input schema is the wanted schema, forced with `toolChoice.tool`; its
input is returned as the message's JSON text.

Response: text blocks → `content`, toolUse → `tool_calls`, reasoningContent → `reasoning_content`,
stop reasons mapped exactly (end_turn/stop_sequence → stop, max_tokens and a full context window →
length, tool_use → tool_calls, guardrail_intervened/content_filtered → content_filter), usage with
cache reads and writes.
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
from turnout.providers.bedrock.wire import ConverseResponse
from turnout.providers.chat_completion import chat_completion, choice, function_call, tool_arguments
from turnout.providers.turns import add_turn, call_arguments

JSON_TOOL = "json_output"
JSON_TOOL_DESCRIPTION = "Respond with the answer as this tool's input: it must match the schema exactly."

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    # malformed_model_output / malformed_tool_use: the answer ended, unusable; OpenAI has no
    # reason for that, so they end as "stop" (what the model produced is passed on as it is).
}

IMAGE_FORMATS = {"image/jpeg": "jpeg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}


@dataclass(frozen=True, slots=True)
class JsonMode:
    """The request asked for JSON: the answer comes back as this tool's input."""

    tool: str


def finish_reason(stop_reason: str | None, json_mode: JsonMode | None) -> str:
    if json_mode is not None and stop_reason == "tool_use":
        return "stop"
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


# ----------------------------------------------------------------------------- request


def request_body(request: ChatRequest) -> tuple[dict[str, Any], JsonMode | None]:
    """The Converse request for `request` (its unsupported parameters already dealt with). The
    model is not in the body: it is part of the URL."""
    system, messages = _messages(request)
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    inference: dict[str, Any] = {}
    if request.output_token_limit is not None:
        inference["maxTokens"] = request.output_token_limit
    if request.temperature is not None:
        if request.temperature > 1:
            raise InvalidRequest(
                f"Bedrock's Converse API takes a temperature between 0 and 1, got {request.temperature}.",
                param="temperature",
            )
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if request.stop is not None:
        inference["stopSequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    if inference:
        body["inferenceConfig"] = inference
    json_mode = _tools(request, body, has_tool_blocks=_has_tool_blocks(messages))
    return body, json_mode


def _tools(request: ChatRequest, body: dict[str, Any], *, has_tool_blocks: bool) -> JsonMode | None:
    fmt = request.response_format
    if fmt is not None and fmt.type in ("json_schema", "json_object"):
        if request.tools:
            raise UnsupportedFeature(
                "Bedrock models cannot combine tools with response_format JSON modes in one request.",
                param="response_format",
            )
        schema: dict[str, Any] = {"type": "object"}
        description = JSON_TOOL_DESCRIPTION
        if fmt.type == "json_schema" and fmt.json_schema is not None:
            schema = fmt.json_schema.schema or schema
            description = fmt.json_schema.description or description
        answer = {"name": JSON_TOOL, "description": description, "inputSchema": {"json": schema}}
        body["toolConfig"] = {"tools": [{"toolSpec": answer}], "toolChoice": {"tool": {"name": JSON_TOOL}}}
        return JsonMode(JSON_TOOL)
    tc = request.tool_choice
    if not request.tools:
        if tc not in (None, "none", "auto"):
            raise InvalidRequest("'tool_choice' needs 'tools'.", param="tool_choice")
        return None
    if tc == "none":
        if has_tool_blocks:
            raise UnsupportedFeature(
                "Bedrock's Converse API has no tool_choice 'none', and a conversation that holds tool "
                "calls must offer its tools; use tool_choice 'auto' or leave out the tool messages.",
                param="tool_choice",
            )
        return None  # no tools offered: the model cannot call one
    tools = []
    for i, tool in enumerate(request.tools):
        if tool.type != "function" or tool.function is None:
            raise UnsupportedFeature("Bedrock models take function tools only.", param=f"tools[{i}].type")
        f = tool.function
        spec: dict[str, Any] = {"name": f.name, "inputSchema": {"json": f.parameters or {"type": "object"}}}
        if f.description:
            spec["description"] = f.description
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    if tc == "auto":
        config["toolChoice"] = {"auto": {}}
    elif tc == "required":
        config["toolChoice"] = {"any": {}}
    elif tc is not None:
        if tc.type != "function" or tc.function is None:
            raise UnsupportedFeature(
                "Bedrock models take tool_choice of type 'function' only.", param="tool_choice"
            )
        config["toolChoice"] = {"tool": {"name": tc.function.name}}
    body["toolConfig"] = config
    return None


def _has_tool_blocks(messages: list[dict[str, Any]]) -> bool:
    return any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])


def _messages(request: ChatRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    for i, m in enumerate(request.messages):
        where = f"messages[{i}]"
        if isinstance(m, SystemMessage | DeveloperMessage):
            system.extend(_blocks(m.content, where, images=False))
        elif isinstance(m, UserMessage):
            blocks = _blocks(m.content, where, images=True)
            if not blocks:
                raise InvalidRequest("Bedrock models do not take an empty user message.", param=where)
            add_turn(turns, "user", blocks)
        elif isinstance(m, AssistantMessage):
            blocks = _blocks(m.content, where, images=False) if m.content else []
            for call in m.tool_calls or ():
                name, arguments = call_arguments(call, where, "Bedrock")
                blocks.append({"toolUse": {"toolUseId": call.id, "name": name, "input": arguments}})
            if blocks:
                add_turn(turns, "assistant", blocks)
        elif isinstance(m, ToolMessage):
            if isinstance(m.content, str):
                content = [{"text": m.content}]
            else:
                content = _blocks(m.content, where, images=True) or [{"text": ""}]
            add_turn(turns, "user", [{"toolResult": {"toolUseId": m.tool_call_id, "content": content}}])
        elif isinstance(m, FunctionMessage):
            raise UnsupportedFeature("Bedrock models do not take legacy 'function' messages.", param=where)
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"text": "(continue)"}]})
    last = turns[-1]
    if last["role"] == "assistant" and "text" in last["content"][-1]:
        # a final assistant turn is a prefill the model continues; it must not end in whitespace
        last["content"][-1]["text"] = last["content"][-1]["text"].rstrip()
        if not last["content"][-1]["text"]:
            last["content"].pop()
            if not last["content"]:
                turns.pop()
    return system, turns


def _blocks(content: Content, where: str, *, images: bool) -> list[dict[str, Any]]:
    """Converse's content blocks for OpenAI content; empty text is left out (Bedrock refuses a
    blank text block)."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if part.type == "text" and part.text is not None:
            if part.text:
                blocks.append({"text": part.text})
        elif part.type == "image_url" and part.image_url is not None and images:
            blocks.append({"image": image_block(part.image_url.url, f"{where}.content[{j}]")})
        elif part.type == "refusal" and part.refusal is not None:
            blocks.append({"text": part.refusal})
        else:
            raise UnsupportedFeature(
                f"Bedrock models do not take '{part.type}' content here.", param=f"{where}.content[{j}]"
            )
    return blocks


def image_block(url: str, where: str) -> dict[str, Any]:
    if url.startswith(("https://", "http://")):
        raise UnsupportedFeature(
            "Bedrock's Converse API does not fetch images from http(s) URLs; send the image as a "
            "base64 data URL (data:image/png;base64,...).",
            param=where,
        )
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        image_format = IMAGE_FORMATS.get(media_type)
        if sep and encoding == "base64" and image_format is not None:
            return {"format": image_format, "source": {"bytes": data}}
    raise InvalidRequest(
        "An image for a Bedrock model must be a base64 data URL of a JPEG, PNG, GIF or WebP image "
        "(data:image/png;base64,...).",
        param=where,
    )


# ----------------------------------------------------------------------------- response


def completion(
    response: ConverseResponse, json_mode: JsonMode | None, *, model: str, chat_id: str
) -> ChatCompletion:
    """An OpenAI `chat.completion` for a Converse answer."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[CompletionToolCall] = []
    message = response.output.message
    for block in message.content if message else ():
        if block.text is not None:
            texts.append(block.text)
        elif block.reasoning_content is not None and block.reasoning_content.reasoning_text is not None:
            reasoning.append(block.reasoning_content.reasoning_text.text or "")
        elif block.tool_use is not None:
            use = block.tool_use
            arguments = tool_arguments(use.input)
            if json_mode is not None and use.name == json_mode.tool:
                texts.append(arguments)
            else:
                calls.append(function_call(use.tool_use_id, use.name, arguments))
    answer = choice("".join(texts), calls, "".join(reasoning), finish_reason(response.stop_reason, json_mode))
    usage = response.usage.canonical() if response.usage is not None else None
    return chat_completion(chat_id, model, [answer], usage)
