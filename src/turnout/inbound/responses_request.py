"""OpenAI's Responses API inbound, the request half: a `POST /v1/responses` body as the canonical
(OpenAI chat) request. Pure functions; the server edge does the I/O.

`instructions` becomes the first system message; `input` (a string, or items: messages with
text and image parts, `function_call` and `function_call_output` items) becomes the
conversation, after the stored history of `previous_response_id` when one is given. Function
tools, `tool_choice`, `text.format` (json_object / json_schema), `reasoning.effort`,
`max_output_tokens` and the sampling parameters map across. What turnout cannot carry to every
provider (hosted tools, `background`, `conversation`, prompt templates, `truncation: auto`,
logprobs) is refused with a 400 naming it. Dropped, as agent clients such as Codex send them on
every request and their users cannot turn them off: `client_metadata` (a client's own labels),
the `web_search` tool (the model answers without searching) and `namespace` tool groups (their
tools are not offered). Reasoning items from
earlier turns are not sent on (no provider but the one that wrote them could read them), and a
requested reasoning summary is answered with the reasoning text itself where the provider
returns it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from turnout.domain.errors import InvalidRequest

# Fields of CreateResponse turnout refuses (with a 400 naming them) when set.
UNSUPPORTED = (
    "background",
    "conversation",
    "prompt",
    "max_tool_calls",
    "top_logprobs",
    "context_management",
)
# Fields that label the request for the client's own use: accepted, and not sent on.
DROPPED = ("client_metadata",)
# Tool types a translated request goes without (see the module's docstring).
DROPPED_TOOLS = ("web_search", "web_search_preview", "namespace")
# CreateResponse fields passed to the chat request under the same name.
PASSED_THROUGH = (
    "temperature",
    "top_p",
    "user",
    "safety_identifier",
    "parallel_tool_calls",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
)
KNOWN = frozenset(
    (
        *UNSUPPORTED,
        *PASSED_THROUGH,
        *DROPPED,
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "max_output_tokens",
        "stream",
        "stream_options",
        "store",
        "previous_response_id",
        "metadata",
        "include",
        "truncation",
    )
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(24).hex()}"


def _require(condition: bool, message: str, param: str) -> None:
    if not condition:
        raise InvalidRequest(message, param=param)


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """A validated Responses request: the chat body to route, and what the answer must echo."""

    body: dict[str, Any]  # the raw CreateResponse body
    chat: dict[str, Any]  # the canonical chat request
    input_items: list[dict[str, Any]]  # this request's input, as items with ids (for input_items)
    conversation: list[dict[str, Any]]  # chat messages so far, without the instructions
    store: bool

    @property
    def model(self) -> str:
        return str(self.chat["model"])


def previous_response_id(body: object) -> str | None:
    """The `previous_response_id` a request continues, if any (checked to be a string)."""
    if not isinstance(body, dict) or body.get("previous_response_id") is None:
        return None
    value = body["previous_response_id"]
    _require(isinstance(value, str) and bool(value), "must be a response id string.", "previous_response_id")
    return str(value)


def parse(body: object, history: list[dict[str, Any]] | None = None) -> ResponsesRequest:
    """The chat request for a CreateResponse body; `history` is the stored conversation of the
    response it continues (`previous_response_id`)."""
    _require(isinstance(body, dict), "The request body must be a JSON object.", "body")
    assert isinstance(body, dict)
    unknown = sorted(k for k in body if k not in KNOWN)
    if unknown:
        raise InvalidRequest(f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0])
    for name in UNSUPPORTED:
        if body.get(name) is not None:
            raise InvalidRequest(f"turnout does not support '{name}' on /v1/responses yet.", param=name)
    model = body.get("model")
    _require(isinstance(model, str) and bool(model), "'model' is required and must be a string.", "model")
    truncation = body.get("truncation")
    if truncation not in (None, "disabled"):
        raise InvalidRequest(
            "turnout supports only truncation 'disabled': a request too long for the model fails.",
            param="truncation",
        )
    store = body.get("store", True)
    _require(isinstance(store, bool), "'store' must be a boolean.", "store")

    items = _input_items(body.get("input"))
    conversation = [*(history or ()), *_messages(items)]
    messages = list(conversation)
    instructions = body.get("instructions")
    if instructions is not None:
        _require(isinstance(instructions, str), "'instructions' must be a string.", "instructions")
        messages.insert(0, {"role": "system", "content": instructions})
    _require(bool(messages), "'input' must not be empty.", "input")

    chat: dict[str, Any] = {"model": model, "messages": messages}
    for name in PASSED_THROUGH:
        if body.get(name) is not None:
            chat[name] = body[name]
    limit = body.get("max_output_tokens")
    if limit is not None:
        _require(
            type(limit) is int and 1 <= limit < 2**63,
            "'max_output_tokens' must be a positive integer (within 64 bits).",
            "max_output_tokens",
        )
        chat["max_completion_tokens"] = limit
    metadata = body.get("metadata")
    if metadata is not None:
        _require(isinstance(metadata, dict), "'metadata' must be an object.", "metadata")
        if metadata:
            chat["metadata"] = metadata
    include = body.get("include")
    _require(
        include is None or (isinstance(include, list) and all(isinstance(v, str) for v in include)),
        "'include' must be a list of strings.",
        "include",
    )
    _reasoning(body.get("reasoning"), chat)
    _text(body.get("text"), chat)
    _tools(body, chat)
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return ResponsesRequest(body, chat, items, conversation, store)


# ----------------------------------------------------------------------------- input items


def _input_items(value: object) -> list[dict[str, Any]]:
    """The input as a list of items, each with an id (a plain string is one user message)."""
    if isinstance(value, str):
        return [_message_item("user", [{"type": "input_text", "text": value}])]
    _require(isinstance(value, list), "'input' must be a string or a list of input items.", "input")
    assert isinstance(value, list)
    items = []
    for i, item in enumerate(value):
        _require(isinstance(item, dict), "each input item must be an object.", f"input[{i}]")
        assert isinstance(item, dict)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            _require(
                role in ("user", "assistant", "system", "developer"),
                "'role' must be user, assistant, system or developer.",
                f"input[{i}].role",
            )
            content = item.get("content")
            if isinstance(content, str):
                part_type = "output_text" if role == "assistant" else "input_text"
                content = [{"type": part_type, "text": content}]
            if not isinstance(content, list):
                raise InvalidRequest("'content' must be a string or a list.", param=f"input[{i}].content")
            items.append(
                {**_message_item(str(role), content), **({"id": item["id"]} if "id" in item else {})}
            )
        elif kind in ("function_call", "function_call_output", "reasoning"):
            items.append(
                {"id": item.get("id") or new_id("fc" if kind == "function_call" else "item"), **item}
            )
        elif kind == "item_reference":
            raise InvalidRequest(
                "turnout does not support item references; send the item or use previous_response_id.",
                param=f"input[{i}]",
            )
        else:
            raise InvalidRequest(
                f"turnout does not support '{kind}' input items (only messages and function calls).",
                param=f"input[{i}].type",
            )
    return items


def _message_item(role: str, content: list[Any]) -> dict[str, Any]:
    return {"type": "message", "id": new_id("msg"), "role": role, "status": "completed", "content": content}


def _messages(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Chat messages for the items: consecutive function calls (with the assistant text before
    them) become one assistant message with tool calls."""
    pending: dict[str, Any] | None = None  # an assistant message still taking tool calls
    for i, item in enumerate(items):
        at = f"input[{i}]"
        kind = item["type"]
        if kind == "function_call":
            for field in ("call_id", "name", "arguments"):
                _require(isinstance(item.get(field), str), f"a function_call needs '{field}'.", at)
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            if pending is None:
                pending = {"role": "assistant", "content": None}
            pending.setdefault("tool_calls", []).append(call)
            continue
        if pending is not None and not (
            kind == "message" and item["role"] == "assistant" and "tool_calls" not in pending
        ):
            yield pending
            pending = None
        if kind == "function_call_output":
            _require(isinstance(item.get("call_id"), str), "a function_call_output needs 'call_id'.", at)
            yield {
                "role": "tool",
                "tool_call_id": item["call_id"],
                "content": _output_text(item.get("output"), at),
            }
        elif kind == "reasoning":
            continue  # earlier reasoning: no provider but the one that wrote it can read it
        elif item["role"] == "assistant":
            text = _assistant_text(item["content"], at)
            if pending is not None:  # two assistant messages in a row: keep both texts
                pending["content"] = (pending["content"] or "") + text
            else:
                pending = {"role": "assistant", "content": text or None}
        else:
            role = "system" if item["role"] == "developer" else item["role"]
            yield {"role": role, "content": _user_parts(item["content"], f"{at}.content", role)}
    if pending is not None:
        yield pending


def _user_parts(content: list[Any], where: str, role: str) -> str | list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        _require(isinstance(part, dict), "each content part must be an object.", at)
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            _require(isinstance(part.get("text"), str), "'text' must be a string.", at)
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and role == "user":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise InvalidRequest(
                    "turnout supports images by 'image_url' (a URL or a base64 data URL), not file ids.",
                    param=at,
                )
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise InvalidRequest(
                f"turnout does not support '{kind}' content in {role} messages yet.", param=at
            )
    if role == "system":
        return "\n\n".join(p["text"] for p in parts)
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _assistant_text(content: list[Any], where: str) -> str:
    texts = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        _require(isinstance(part, dict), "each content part must be an object.", at)
        if part.get("type") in ("output_text", "input_text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        else:
            raise InvalidRequest("assistant content must be output_text or refusal parts.", param=at)
    return "".join(texts)


def _output_text(output: object, where: str) -> str:
    if isinstance(output, str):
        return output
    _require(
        isinstance(output, list), "'output' must be a string or a list of text parts.", f"{where}.output"
    )
    assert isinstance(output, list)
    texts = []
    for j, part in enumerate(output):
        _require(
            isinstance(part, dict)
            and part.get("type") in ("input_text", "output_text")
            and isinstance(part.get("text"), str),
            "only text parts are supported in a function_call_output.",
            f"{where}.output[{j}]",
        )
        texts.append(part["text"])
    return "".join(texts)


# ----------------------------------------------------------------------------- options


def _reasoning(reasoning: object, chat: dict[str, Any]) -> None:
    if reasoning is None:
        return
    _require(isinstance(reasoning, dict), "'reasoning' must be an object.", "reasoning")
    assert isinstance(reasoning, dict)
    if reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]


def _text(text: object, chat: dict[str, Any]) -> None:
    if text is None:
        return
    _require(isinstance(text, dict), "'text' must be an object.", "text")
    assert isinstance(text, dict)
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]
    fmt = text.get("format")
    if fmt is None:
        return
    _require(isinstance(fmt, dict), "'text.format' must be an object.", "text.format")
    assert isinstance(fmt, dict)
    kind = fmt.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        _require(isinstance(fmt.get("name"), str), "a json_schema format needs a 'name'.", "text.format.name")
        _require(
            isinstance(fmt.get("schema"), dict),
            "a json_schema format needs a 'schema'.",
            "text.format.schema",
        )
        schema = {k: fmt[k] for k in ("name", "schema", "description", "strict") if fmt.get(k) is not None}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        raise InvalidRequest(
            "'text.format.type' must be text, json_object or json_schema.", param="text.format"
        )


def _tools(body: dict[str, Any], chat: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        _require(isinstance(tools, list), "'tools' must be a list.", "tools")
        functions = []
        for i, tool in enumerate(tools):
            _require(isinstance(tool, dict), "each tool must be an object.", f"tools[{i}]")
            if tool.get("type") in DROPPED_TOOLS:
                continue
            if tool.get("type") != "function":
                raise InvalidRequest(
                    f"turnout does not support '{tool.get('type')}' tools (only function tools).",
                    param=f"tools[{i}].type",
                )
            _require(isinstance(tool.get("name"), str), "a function tool needs a 'name'.", f"tools[{i}].name")
            function: dict[str, Any] = {"name": tool["name"]}
            for key in ("description", "parameters", "strict"):
                if tool.get(key) is not None:
                    function[key] = tool[key]
            functions.append({"type": "function", "function": function})
        if functions:
            chat["tools"] = functions
    choice = body.get("tool_choice")
    if choice is None:
        return
    if choice in ("auto", "none", "required"):
        chat["tool_choice"] = choice
    elif (
        isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str)
    ):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise InvalidRequest(
            "'tool_choice' must be auto, none, required or a function tool by name.", param="tool_choice"
        )
