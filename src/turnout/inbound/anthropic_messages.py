"""Anthropic's Messages API inbound: an Anthropic request as an OpenAI chat request, and an OpenAI
answer (whole, or chunk by chunk) as Anthropic's message and stream events. Pure functions; the
server edge does the I/O.

Request: `system` (and a `system` turn among the messages) becomes a system message;
`tool_result` blocks become tool messages; images become image parts (base64 as a data URL);
tools, tool_choice (auto / any / tool / none and `disable_parallel_tool_use`), stop_sequences,
temperature, top_p and `metadata.user_id` map across. What only tunes how Anthropic's own models
work (`thinking`, `output_config`, `context_management`, `service_tier`, `cache_control`) is
dropped on the way to another format: a client such as Claude Code sends it on every request,
and its user cannot turn it off. A tool with `defer_loading` is offered once a `tool_reference`
in a tool result has loaded it, as Anthropic's tool search does. What would change the answer
and has no OpenAI equivalent (`top_k`, documents, server tools, MCP servers, containers) is
listed as native-only: such a request goes whole to Anthropic-format deployments only, and is
refused with a 400 naming it when the model has none. Thinking blocks in earlier assistant turns
are carried only natively (no other provider could read them).

Answer: content → text block, tool_calls → tool_use blocks, finish_reason → stop_reason
(stop → end_turn, length → max_tokens, tool_calls → tool_use, content_filter → refusal), usage
with cache reads split out as Anthropic counts them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from turnout.domain.completions import ChatCompletion, ChatCompletionChunk, ChunkDelta, ChunkFunction, text_of
from turnout.domain.errors import InvalidRequest, TurnoutError
from turnout.domain.usage import OpenAIUsage

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
NATIVE_ONLY = ("top_k", "container", "mcp_servers")
DELTA_USAGE = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "server_tool_use",
)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def _require(condition: bool, message: str, param: str) -> None:
    if not condition:
        raise InvalidRequest(message, param=param)


# ----------------------------------------------------------------------------- request


def to_openai(body: object, native_only: list[str] | None = None) -> dict[str, Any]:
    """The OpenAI chat body for an Anthropic Messages request (validated on the way). What it
    cannot carry is named in `native_only` (and left out); without that list, it is refused."""
    _require(isinstance(body, dict), "The request body must be a JSON object.", "body")
    assert isinstance(body, dict)
    found: list[str] = [] if native_only is None else native_only
    found.extend(name for name in NATIVE_ONLY if body.get(name) is not None)
    model = body.get("model")
    _require(isinstance(model, str) and bool(model), "'model' is required and must be a string.", "model")
    max_tokens = body.get("max_tokens")
    _require(
        type(max_tokens) is int and 1 <= max_tokens < 2**63,
        "'max_tokens' is required and must be a positive integer (within 64 bits).",
        "max_tokens",
    )
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        messages.append({"role": "system", "content": _text_of(system, "system")})
    raw_messages = body.get("messages")
    _require(
        isinstance(raw_messages, list) and bool(raw_messages),
        "'messages' must be a non-empty list.",
        "messages",
    )
    assert isinstance(raw_messages, list)
    for i, m in enumerate(raw_messages):
        messages.extend(_message(m, f"messages[{i}]", found))
    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(src) is not None:
            out[dst] = body[src]
    if body.get("stop_sequences") is not None:
        stops = body["stop_sequences"]
        _require(
            isinstance(stops, list) and all(isinstance(s, str) for s in stops),
            "must be a list of strings.",
            "stop_sequences",
        )
        out["stop"] = stops
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    _tools(body, out, found)
    if found and native_only is None:
        raise InvalidRequest(f"turnout cannot translate '{found[0]}' to another format.", param=found[0])
    return out


def _text_of(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    _require(isinstance(content, list), "must be a string or a list of text blocks.", where)
    assert isinstance(content, list)
    texts = []
    for j, block in enumerate(content):
        _require(
            isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str),
            "only text blocks are allowed here.",
            f"{where}[{j}]",
        )
        texts.append(block["text"])
    return "\n\n".join(texts)


def _result_text(content: object, where: str, native_only: list[str], images: list[dict[str, Any]]) -> str:
    """A tool result's text: its text blocks, and a line for each tool a `tool_reference` loaded
    (the tool itself is offered from then on: `_loaded_tools`). Its images (a chat tool message
    holds only text) go to `images`, for the user turn that follows the tool messages."""
    if isinstance(content, str):
        return content
    _require(isinstance(content, list), "must be a string or a list of blocks.", where)
    assert isinstance(content, list)
    texts = []
    for j, block in enumerate(content):
        at = f"{where}[{j}]"
        _require(isinstance(block, dict), "each block must be an object.", at)
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_reference" and isinstance(block.get("tool_name"), str):
            texts.append(f"Tool loaded: {block['tool_name']}")
        elif kind == "image":
            texts.append("(an image, shown in the next user message)")
            images.append({"type": "image_url", "image_url": {"url": _image_url(block.get("source"), at)}})
        else:
            native_only.append(f"{at} ({kind})")
    return "\n\n".join(texts)


def _loaded_tools(messages: list[Any]) -> set[str]:
    """The tools a `tool_reference` in a tool result has loaded (deferred tools offered from then)."""
    names: set[str] = set()
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                for ref in inner if isinstance(inner, list) else ():
                    if isinstance(ref, dict) and ref.get("type") == "tool_reference":
                        names.add(str(ref.get("tool_name")))
    return names


def _message(m: object, where: str, native_only: list[str]) -> Iterator[dict[str, Any]]:
    _require(isinstance(m, dict), "each message must be an object.", where)
    assert isinstance(m, dict)
    role = m.get("role")
    _require(
        role in ("user", "assistant", "system"),
        "'role' must be 'user', 'assistant' or 'system'.",
        f"{where}.role",
    )
    content = m.get("content")
    if role == "system":  # a system turn in the conversation (Claude Code sends them)
        yield {"role": "system", "content": _text_of(content, f"{where}.content")}
        return
    if isinstance(content, str):
        yield {"role": role, "content": content}
        return
    _require(isinstance(content, list), "'content' must be a string or a list of blocks.", f"{where}.content")
    assert isinstance(content, list)
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        _require(
            isinstance(block, dict) and isinstance(block.get("type"), str), "each block needs a 'type'.", at
        )
        kind = block["type"]
        if kind == "text":
            _require(isinstance(block.get("text"), str), "'text' must be a string.", at)
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image" and role == "user":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block.get("source"), at)}})
        elif kind == "tool_use" and role == "assistant":
            _require(
                isinstance(block.get("id"), str) and isinstance(block.get("name"), str),
                "needs 'id' and 'name'.",
                at,
            )
            try:
                arguments = orjson.dumps(block.get("input") or {}).decode()
            except orjson.JSONEncodeError:  # orjson writes 254 levels, fewer than it reads
                raise InvalidRequest("'input' is nested too deeply.", param=f"{at}.input") from None
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": arguments},
                }
            )
        elif kind == "tool_result" and role == "user":
            _require(isinstance(block.get("tool_use_id"), str), "needs 'tool_use_id'.", at)
            result = block.get("content")
            text = "" if result is None else _result_text(result, f"{at}.content", native_only, parts)
            if block.get("is_error"):
                text = f"Error: {text}"
            results.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # earlier reasoning: no provider but the one that wrote it can read it
        else:  # only a deployment of Anthropic's format carries it (the request goes to no other)
            native_only.append(f"{at} ({kind})")
            parts.append({"type": "text", "text": _stand_in(block)})  # counted in the prompt's bound
    yield from results  # tool results answer the previous assistant turn: they come first
    if role == "assistant":
        text = "".join(p["text"] for p in parts)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        if text or calls:
            yield message
    elif parts:
        yield {"role": "user", "content": parts}


def _stand_in(block: dict[str, Any]) -> str:
    """What stands for a block only Anthropic's format carries in the translated request, which no
    other deployment receives but whose prompt is bounded and estimated: a text document's text,
    else the block as written."""
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "text" and isinstance(source.get("data"), str):
        return str(source["data"])
    return orjson.dumps(block).decode()


def _image_url(source: object, where: str) -> str:
    _require(isinstance(source, dict), "an image needs a 'source'.", f"{where}.source")
    assert isinstance(source, dict)
    if source.get("type") == "base64":
        _require(
            isinstance(source.get("media_type"), str) and isinstance(source.get("data"), str),
            "a base64 image needs 'media_type' and 'data'.",
            f"{where}.source",
        )
        return f"data:{source['media_type']};base64,{source['data']}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    raise InvalidRequest("an image source must be of type 'base64' or 'url'.", param=f"{where}.source")


def _tools(body: dict[str, Any], out: dict[str, Any], native_only: list[str]) -> None:
    tools = body.get("tools")
    if tools is not None:
        _require(isinstance(tools, list), "'tools' must be a list.", "tools")
        assert isinstance(tools, list)
        deferred = any(isinstance(t, dict) and t.get("defer_loading") for t in tools)
        loaded = _loaded_tools(body["messages"]) if deferred else set()
        functions = []
        for i, tool in enumerate(tools):
            _require(
                isinstance(tool, dict) and isinstance(tool.get("name"), str),
                "each tool needs a 'name'.",
                f"tools[{i}]",
            )
            if tool.get("defer_loading") and tool["name"] not in loaded:
                continue  # not loaded yet: the model does not see it
            if tool.get("type") not in (None, "custom"):
                native_only.append(f"tools[{i}] ({tool.get('type')})")  # a server tool
                continue
            function: dict[str, Any] = {
                "name": tool["name"],
                "parameters": tool.get("input_schema") or {"type": "object"},
            }
            if tool.get("description"):
                function["description"] = tool["description"]
            functions.append({"type": "function", "function": function})
        if functions:
            out["tools"] = functions
    choice = body.get("tool_choice")
    if choice is None:
        return
    _require(isinstance(choice, dict), "'tool_choice' must be an object.", "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise InvalidRequest(
            "'tool_choice.type' must be auto, any, tool (with a name) or none.", param="tool_choice"
        )
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False


# ----------------------------------------------------------------------------- answer


def usage_of(usage: OpenAIUsage | None) -> dict[str, Any]:
    """Anthropic's usage (the fields its spec requires; what turnout cannot know is null)."""
    usage = usage or OpenAIUsage()
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens if details is not None else None) or 0
    return {
        "input_tokens": max(0, (usage.prompt_tokens or 0) - cached),
        "output_tokens": usage.completion_tokens or 0,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
        "cache_creation": None,
        "server_tool_use": None,
        "inference_geo": None,
        "service_tier": None,
    }


def message_id(openai_id: object) -> str:
    ident = str(openai_id or "turnout")
    return "msg_" + ident.removeprefix("chatcmpl-").removeprefix("msg_")


def to_message(completion: ChatCompletion, model: str) -> dict[str, Any]:
    choice = completion.choices[0] if completion.choices else None
    message = choice.message if choice is not None else None
    content: list[dict[str, Any]] = []
    text = text_of(message.content) if message is not None else ""
    if text:
        content.append({"type": "text", "text": text, "citations": None})
    for call in (message.tool_calls if message is not None else None) or ():
        name, raw = (call.function.name, call.function.arguments) if call.function else (None, None)
        try:
            arguments = orjson.loads(raw or "{}")
        except orjson.JSONDecodeError:
            arguments = {"_raw": raw}
        content.append({"type": "tool_use", "id": call.id, "name": name, "input": arguments})
    finish = choice.finish_reason if choice is not None else None
    return {
        "id": message_id(completion.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(finish or "stop", "end_turn"),
        "stop_sequence": None,
        "stop_details": None,
        "container": None,
        "usage": usage_of(completion.usage or None),
    }


def error_type(error: TurnoutError) -> str:
    return ERROR_TYPES.get(error.status, "api_error")


def error_json(error: TurnoutError, request_id: str | None = None) -> bytes:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type(error), "message": error.message}}
    if request_id is not None:
        body["request_id"] = request_id
    return orjson.dumps(body)


def error_event(error: TurnoutError, request_id: str | None = None) -> bytes:
    """The `error` event that ends a stream which failed after its first byte."""
    return b"event: error\ndata: " + error_json(error, request_id) + b"\n\n"


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class EventWriter:
    """OpenAI chunks in, Anthropic stream events out (as SSE bytes)."""

    def __init__(self, model: str, request_id: str | None = None) -> None:
        self.model = model
        self.request_id = request_id
        self.started = False
        self.index = -1
        self.open: str | None = None  # "text" or "tool:<openai index>"
        self.stop_reason = "end_turn"
        self.usage: dict[str, Any] = usage_of(None)

    def chunk(self, chunk: ChatCompletionChunk | None) -> bytes:
        """The events for one chunk (none for one turnout could not read)."""
        if chunk is None:
            return b""
        out = []
        if not self.started:
            self.started = True
            start: dict[str, Any] = {
                "id": message_id(chunk.id),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "stop_details": None,
                "container": None,
                "usage": usage_of(None),
            }
            out.append(sse("message_start", {"type": "message_start", "message": start}))
        if chunk.usage:
            self.usage = usage_of(chunk.usage)
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta is not None:
                self._delta_events(delta, out)
            if choice.finish_reason:
                self.stop_reason = STOP_REASONS.get(choice.finish_reason, "end_turn")
        return b"".join(out)

    def _delta_events(self, delta: ChunkDelta, out: list[bytes]) -> None:
        text = text_of(delta.content)
        if text:
            if self.open != "text":
                out.append(self._open("text", {"type": "text", "text": "", "citations": None}))
            out.append(self._delta({"type": "text_delta", "text": text}))
        for call in delta.tool_calls or ():
            key = f"tool:{call.index}"
            function = call.function if isinstance(call.function, ChunkFunction) else None
            if self.open != key:
                block: dict[str, Any] = {
                    "type": "tool_use",
                    "id": call.id or f"toolu_{self.index + 1}",
                    "name": (function.name if function else None) or "",
                    "input": {},
                    "caller": {"type": "direct"},
                }
                out.append(self._open(key, block))
            if function and function.arguments:
                out.append(self._delta({"type": "input_json_delta", "partial_json": function.arguments}))

    def _open(self, key: str, block: dict[str, Any]) -> bytes:
        closing = self._close()
        self.index += 1
        self.open = key
        return closing + sse(
            "content_block_start",
            {"type": "content_block_start", "index": self.index, "content_block": block},
        )

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return sse("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return sse(
            "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}
        )

    def finish(self) -> bytes:
        end = {
            "stop_reason": self.stop_reason,
            "stop_sequence": None,
            "stop_details": None,
            "container": None,
        }
        usage = {k: self.usage[k] for k in DELTA_USAGE}
        return (
            self._close()
            + sse("message_delta", {"type": "message_delta", "delta": end, "usage": usage})
            + sse("message_stop", {"type": "message_stop"})
        )

    def error(self, error: TurnoutError) -> bytes:
        return error_event(error, self.request_id)
