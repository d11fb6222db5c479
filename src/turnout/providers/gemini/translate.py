"""OpenAI chat ⇄ Gemini generateContent, as pure functions.

Request: system and developer messages become `systemInstruction`; user/assistant turns become
`user`/`model` contents (consecutive turns of one role merged); images become `inlineData` (data
URLs) or `fileData` (other URLs); assistant tool calls become `functionCall` parts and tool results
`functionResponse` parts, named after the call they answer; tools become `functionDeclarations`
and tool_choice `toolConfig.functionCallingConfig` (auto → AUTO, required → ANY, none → NONE, a
named function → ANY limited to it). Sampling maps to `generationConfig`; JSON mode to
`responseMimeType: application/json` with `responseJsonSchema` for json_schema.

Answer: text parts → `content`, thought parts → `reasoning_content`, functionCall parts →
`tool_calls` (ids made up where Gemini gives none), finish reasons mapped (STOP → stop,
MAX_TOKENS → length, SAFETY / RECITATION / BLOCKLIST / PROHIBITED_CONTENT / SPII → content_filter,
a function call → tool_calls), a prompt blocked before any candidate → content_filter.
"""

from __future__ import annotations

import mimetypes
from typing import Any

import orjson

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
from turnout.domain.completions import (
    ChatCompletion,
    ChunkFunction,
    ChunkToolCall,
    CompletionToolCall,
)
from turnout.domain.errors import InvalidRequest, UnsupportedFeature
from turnout.providers.chat_completion import chat_completion, choice, function_call, tool_arguments
from turnout.providers.gemini.wire import Candidate, GenerateContentResponse
from turnout.providers.turns import add_turn, call_arguments

FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE"}


def finish_reason(reason: str | None, has_calls: bool) -> str | None:
    if reason is None:
        return None
    if has_calls:
        return "tool_calls"
    if reason == "MAX_TOKENS":
        return "length"
    if reason in FILTERED:
        return "content_filter"
    return "stop"


# ----------------------------------------------------------------------------- request


def request_body(request: ChatRequest) -> dict[str, Any]:
    system, contents = _contents(request)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": t} for t in system]}
    config: dict[str, Any] = {}
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed")):
        value = getattr(request, src)
        if value is not None:
            config[dst] = value
    if request.presence_penalty is not None:
        config["presencePenalty"] = request.presence_penalty
    if request.frequency_penalty is not None:
        config["frequencyPenalty"] = request.frequency_penalty
    if request.output_token_limit is not None:
        config["maxOutputTokens"] = request.output_token_limit
    if request.stop is not None:
        config["stopSequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    if request.n is not None and request.n > 1:
        config["candidateCount"] = request.n
    fmt = request.response_format
    if fmt is not None and fmt.type in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.json_schema is not None and fmt.json_schema.schema is not None:
            config["responseJsonSchema"] = fmt.json_schema.schema
    if config:
        body["generationConfig"] = config
    _tools(request, body)
    return body


def _tools(request: ChatRequest, body: dict[str, Any]) -> None:
    if request.tools:
        declarations = []
        for i, tool in enumerate(request.tools):
            if tool.type != "function" or tool.function is None:
                raise UnsupportedFeature("Gemini models take function tools only.", param=f"tools[{i}].type")
            f = tool.function
            entry: dict[str, Any] = {"name": f.name}
            if f.description:
                entry["description"] = f.description
            if f.parameters:
                entry["parametersJsonSchema"] = f.parameters
            declarations.append(entry)
        body["tools"] = [{"functionDeclarations": declarations}]
    choice = request.tool_choice
    if choice is None:
        return
    if choice == "auto":
        config: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "required":
        config = {"mode": "ANY"}
    elif choice == "none":
        config = {"mode": "NONE"}
    elif choice.type == "function" and choice.function is not None:
        config = {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}
    else:
        raise UnsupportedFeature(
            "Gemini models take tool_choice of type 'function' only.", param="tool_choice"
        )
    body["toolConfig"] = {"functionCallingConfig": config}


def _contents(request: ChatRequest) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name (Gemini answers calls by name)

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if parts:
            add_turn(contents, role, parts, key="parts")

    for i, m in enumerate(request.messages):
        where = f"messages[{i}]"
        if isinstance(m, SystemMessage | DeveloperMessage):
            system.extend(p["text"] for p in _parts(m.content, where, images=False))
        elif isinstance(m, UserMessage):
            add("user", _parts(m.content, where, images=True))
        elif isinstance(m, AssistantMessage):
            parts = _parts(m.content, where, images=False) if m.content else []
            for call in m.tool_calls or ():
                function, args = call_arguments(call, where, "Gemini")
                names[call.id] = function
                parts.append({"functionCall": {"name": function, "args": args}})
            add("model", parts)
        elif isinstance(m, ToolMessage):
            name = names.get(m.tool_call_id)
            if name is None:
                raise InvalidRequest(
                    f"The tool message answers '{m.tool_call_id}', which no earlier assistant message "
                    "called.",
                    param=f"{where}.tool_call_id",
                )
            text = m.content if isinstance(m.content, str) else "".join(p.text or "" for p in m.content)
            try:
                result = orjson.loads(text)
            except orjson.JSONDecodeError:
                result = text
            response = result if isinstance(result, dict) else {"result": result}
            add("user", [{"functionResponse": {"name": name, "response": response}}])
        elif isinstance(m, FunctionMessage):
            raise UnsupportedFeature("Gemini models do not take legacy 'function' messages.", param=where)
    return system, contents


def _parts(content: Content, where: str, *, images: bool) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if part.type == "text" and part.text is not None:
            if part.text:
                parts.append({"text": part.text})
        elif part.type == "image_url" and part.image_url is not None and images:
            parts.append(image_part(part.image_url.url, at))
        else:
            raise UnsupportedFeature(f"Gemini models do not take '{part.type}' content here.", param=at)
    return parts


def image_part(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not mime.startswith("image/"):
            raise InvalidRequest("An image data URL must be base64 (data:image/png;base64,...).", param=where)
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("https://", "http://", "gs://")):
        mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    raise InvalidRequest("An image URL must be http(s), gs:// or a base64 data URL.", param=where)


# ----------------------------------------------------------------------------- answer


def calls_of(candidate: Candidate, first_index: int = 0) -> list[CompletionToolCall]:
    calls: list[CompletionToolCall] = []
    for part in candidate.content.parts if candidate.content else ():
        if part.function_call is not None:
            call = part.function_call
            ident = call.id or f"call_{candidate.index}_{first_index + len(calls)}"
            calls.append(function_call(ident, call.name, tool_arguments(call.args)))
    return calls


def stream_calls(candidate: Candidate, first_index: int) -> list[ChunkToolCall]:
    """A streamed candidate's function calls, each whole in one tool call delta (Gemini streams
    no argument fragments), numbered from `first_index`."""
    return [
        ChunkToolCall(
            first_index + i,
            id=c.id,
            type="function",
            function=ChunkFunction(name=c.function.name, arguments=c.function.arguments),
        )
        for i, c in enumerate(calls_of(candidate, first_index))
        if c.function is not None
    ]


def completion(response: GenerateContentResponse, *, model: str) -> ChatCompletion:
    choices = []
    for candidate in response.candidates:
        parts = candidate.content.parts if candidate.content else []
        text = "".join(p.text for p in parts if p.text is not None and not p.thought)
        thoughts = "".join(p.text for p in parts if p.text is not None and p.thought)
        calls = calls_of(candidate)
        finish = finish_reason(candidate.finish_reason or "STOP", bool(calls))
        choices.append(choice(text, calls, thoughts, finish, candidate.index))
    if not choices:  # the prompt itself was blocked
        choices.append(choice("", [], "", "content_filter"))
    usage = response.usage_metadata.canonical() if response.usage_metadata is not None else None
    chat_id = f"chatcmpl-{response.response_id or 'gemini'}"
    return chat_completion(chat_id, response.model_version or model, choices, usage)
