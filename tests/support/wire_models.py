"""One tiny deterministic "model" served in every provider's wire format, for the conformance
suite and the cross-format round trips.

Each format's request is read into one neutral conversation, the same rules answer it, and the
answer is written back in that format (whole or streamed, with usage). So whatever turnout
translates to and from, the client must see the same answer:

- the last turn holds tool results → text "The weather: <results joined by '; '>";
- a tool is forced (tool_choice by name) → a call of it with {"answer": <last user text>}
  (how Anthropic-style JSON mode arrives);
- tools are offered (and not refused with "none") → one `get_weather` call per city the last user
  text names (Paris, Oslo), in that order, or one for "Paris";
- JSON output is asked for natively → {"answer": <last user text>} as text;
- otherwise → "<system> | turn <n> | you said: <last user text>" plus " | images: <k>" when the
  conversation holds images.

Usage: input tokens = words of every text in the request, output = words of the answer (3 per
tool call), reported in each format's own fields.
"""

from __future__ import annotations

import binascii
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from support.upstream import Upstream

CITIES = ("Paris", "Oslo")


@dataclass
class Call:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Conversation:
    system: list[str] = field(default_factory=list)
    user_texts: list[str] = field(default_factory=list)
    turns: int = 0
    images: int = 0
    last_tool_results: list[str] = field(default_factory=list)  # tool results of the last turn
    tools: list[str] = field(default_factory=list)
    forced_tool: str | None = None
    tools_refused: bool = False
    wants_json: bool = False
    words: int = 0

    def text(self, value: str) -> str:
        self.words += len(value.split())
        return value

    def user(self, text: str) -> None:
        self.user_texts.append(text)


@dataclass
class Answer:
    text: str | None = None
    calls: list[Call] = field(default_factory=list)
    input_tokens: int = 0

    @property
    def output_tokens(self) -> int:
        return len(self.text.split()) if self.text else 3 * len(self.calls)

    def pieces(self) -> list[str]:
        """The text in stream-sized pieces (three words each)."""
        assert self.text is not None
        words = self.text.split(" ")
        return [
            " ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "") for i in range(0, len(words), 3)
        ]


def answer(c: Conversation) -> Answer:
    last = c.user_texts[-1] if c.user_texts else ""
    if c.last_tool_results:
        out = Answer(text="The weather: " + "; ".join(c.last_tool_results))
    elif c.forced_tool is not None:
        out = Answer(calls=[Call("call_json_1", c.forced_tool, {"answer": last})])
    elif c.tools and not c.tools_refused:
        cities = [city for city in CITIES if city in last] or ["Paris"]
        out = Answer(
            calls=[
                Call(f"call_{i + 1}_{city.lower()}", "get_weather", {"city": city})
                for i, city in enumerate(cities)
            ]
        )
    elif c.wants_json:
        out = Answer(text=json.dumps({"answer": last}))
    else:
        text = f"{' '.join(c.system) or 'no system'} | turn {c.turns} | you said: {last}"
        out = Answer(text=text + (f" | images: {c.images}" if c.images else ""))
    out.input_tokens = c.words
    return out


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data).encode() + b"\n\n"


# ----------------------------------------------------------------------------- OpenAI


def read_openai(body: dict[str, Any]) -> Conversation:
    c = Conversation()
    for m in body["messages"]:
        role, content = m["role"], m.get("content")
        if role in ("system", "developer"):
            c.system.append(
                c.text(content if isinstance(content, str) else " ".join(p["text"] for p in content))
            )
            continue
        if role == "tool":
            c.last_tool_results.append(c.text(content if isinstance(content, str) else content[0]["text"]))
            continue
        c.last_tool_results = []
        c.turns += 1
        if role == "user":
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            texts = [c.text(p["text"]) for p in parts if p["type"] == "text"]
            c.images += sum(1 for p in parts if p["type"] == "image_url")
            c.user(" ".join(texts))
        elif content:
            c.text(content if isinstance(content, str) else " ".join(p["text"] for p in content))
    c.tools = [t["function"]["name"] for t in body.get("tools") or ()]
    choice = body.get("tool_choice")
    c.forced_tool = choice["function"]["name"] if isinstance(choice, dict) else None
    c.tools_refused = choice == "none"
    c.wants_json = (body.get("response_format") or {}).get("type") in ("json_object", "json_schema")
    return c


def write_openai(
    a: Answer, model: str, stream: bool, include_usage: bool
) -> Iterator[bytes] | dict[str, Any]:
    usage = {
        "prompt_tokens": a.input_tokens,
        "completion_tokens": a.output_tokens,
        "total_tokens": a.input_tokens + a.output_tokens,
    }
    finish = "tool_calls" if a.calls else "stop"
    calls = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
        for c in a.calls
    ]
    base = {"id": "chatcmpl-wire", "created": 1700000000, "model": model}
    if not stream:
        message: dict[str, Any] = {"role": "assistant", "content": a.text, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return _sse({**base, "object": "chat.completion.chunk", "choices": [choice]})

    def events() -> Iterator[bytes]:
        yield chunk({"role": "assistant", "content": ""})
        if a.text is not None:
            for piece in a.pieces():
                yield chunk({"content": piece})
        for i, call in enumerate(calls):
            yield chunk(
                {"tool_calls": [{"index": i, **call, "function": {**call["function"], "arguments": ""}}]}
            )
            yield chunk(
                {"tool_calls": [{"index": i, "function": {"arguments": call["function"]["arguments"]}}]}
            )
        yield chunk({}, finish)
        if include_usage:
            yield _sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    return events()


# ----------------------------------------------------------------------------- Anthropic


def _anthropic_text(content: Any) -> str:
    return (
        content if isinstance(content, str) else " ".join(b["text"] for b in content if b["type"] == "text")
    )


def read_anthropic(body: dict[str, Any]) -> Conversation:
    c = Conversation()
    if body.get("system"):
        c.system.append(c.text(_anthropic_text(body["system"])))
    for m in body["messages"]:
        blocks = [{"type": "text", "text": m["content"]}] if isinstance(m["content"], str) else m["content"]
        results = [b for b in blocks if b["type"] == "tool_result"]
        c.last_tool_results = [c.text(_anthropic_text(b.get("content") or "")) for b in results]
        if m["role"] == "user" and results and all(b["type"] == "tool_result" for b in blocks):
            continue
        c.turns += 1
        texts = [c.text(b["text"]) for b in blocks if b["type"] == "text"]
        if m["role"] == "user":
            c.images += sum(1 for b in blocks if b["type"] == "image")
            c.user(" ".join(texts))
    c.tools = [t["name"] for t in body.get("tools") or ()]
    choice = body.get("tool_choice") or {}
    c.forced_tool = choice.get("name") if choice.get("type") == "tool" else None
    c.tools_refused = choice.get("type") == "none"
    return c


def write_anthropic(a: Answer, model: str, stream: bool) -> Iterator[bytes] | dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    if a.text is not None:
        blocks.append({"type": "text", "text": a.text})
    blocks += [
        {"type": "tool_use", "id": f"toolu_{c.id}", "name": c.name, "input": c.arguments} for c in a.calls
    ]
    stop = "tool_use" if a.calls else "end_turn"
    usage = {"input_tokens": a.input_tokens, "output_tokens": a.output_tokens}
    message = {
        "id": "msg_wire",
        "type": "message",
        "role": "assistant",
        "model": model,
        "stop_sequence": None,
    }
    if not stream:
        return {**message, "content": blocks, "stop_reason": stop, "usage": usage}

    def events() -> Iterator[bytes]:
        start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        yield _sse({"type": "message_start", "message": start}, "message_start")
        for i, block in enumerate(blocks):
            empty = {**block, "text": ""} if block["type"] == "text" else {**block, "input": {}}
            yield _sse(
                {"type": "content_block_start", "index": i, "content_block": empty}, "content_block_start"
            )
            if block["type"] == "text":
                deltas = [{"type": "text_delta", "text": p} for p in a.pieces()]
            else:
                deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
            for d in deltas:
                yield _sse({"type": "content_block_delta", "index": i, "delta": d}, "content_block_delta")
            yield _sse({"type": "content_block_stop", "index": i}, "content_block_stop")
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": usage,
        }
        yield _sse(delta, "message_delta")
        yield _sse({"type": "message_stop"}, "message_stop")

    return events()


# ----------------------------------------------------------------------------- Gemini


def read_gemini(body: dict[str, Any]) -> Conversation:
    c = Conversation()
    for part in (body.get("systemInstruction") or {}).get("parts") or ():
        c.system.append(c.text(part["text"]))
    for content in body["contents"]:
        parts = content["parts"]
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        c.last_tool_results = [c.text(_tool_result_text(r["response"])) for r in responses]
        if responses and len(responses) == len(parts):
            continue
        c.turns += 1
        texts = [c.text(p["text"]) for p in parts if "text" in p and not p.get("thought")]
        if content.get("role", "user") == "user":
            c.images += sum(1 for p in parts if "inlineData" in p or "fileData" in p)
            c.user(" ".join(texts))
    c.tools = [f["name"] for t in body.get("tools") or () for f in t.get("functionDeclarations") or ()]
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    allowed = calling.get("allowedFunctionNames") or []
    c.forced_tool = allowed[0] if calling.get("mode") == "ANY" and len(allowed) == 1 else None
    c.tools_refused = calling.get("mode") == "NONE"
    c.wants_json = (body.get("generationConfig") or {}).get("responseMimeType") == "application/json"
    return c


def _tool_result_text(response: Any) -> str:
    if isinstance(response, dict):
        for key in ("content", "result", "output"):
            if isinstance(response.get(key), str):
                return str(response[key])
    return json.dumps(response)


def write_gemini(a: Answer, model: str, stream: bool) -> Iterator[bytes] | dict[str, Any]:
    usage = {
        "promptTokenCount": a.input_tokens,
        "candidatesTokenCount": a.output_tokens,
        "totalTokenCount": a.input_tokens + a.output_tokens,
    }
    calls = [{"functionCall": {"name": c.name, "args": c.arguments}} for c in a.calls]

    def response(parts: list[dict[str, Any]], finish: str | None, with_usage: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": "wire"}
        if with_usage:
            out["usageMetadata"] = usage
        return out

    if not stream:
        parts = ([{"text": a.text}] if a.text is not None else []) + calls
        return response(parts, "STOP", True)

    def events() -> Iterator[bytes]:
        if a.text is not None:
            pieces = a.pieces()
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                yield _sse(response([{"text": piece}], "STOP" if last else None, last))
        else:
            yield _sse(response(calls, "STOP", True))

    return events()


# ----------------------------------------------------------------------------- Cohere


def read_cohere(body: dict[str, Any]) -> Conversation:
    c = Conversation()
    for m in body["messages"]:
        role, content = m["role"], m.get("content")
        texts = (
            [content]
            if isinstance(content, str)
            else [p["text"] for p in content or () if p.get("type") == "text"]
        )
        if role == "system":
            c.system.append(c.text(" ".join(texts)))
            continue
        if role == "tool":
            c.last_tool_results.append(c.text(" ".join(texts) if texts else _tool_result_text(content)))
            continue
        c.last_tool_results = []
        c.turns += 1
        joined = " ".join(c.text(t) for t in texts)
        if role == "user":
            c.images += sum(1 for p in content or () if isinstance(p, dict) and p.get("type") == "image_url")
            c.user(joined)
    c.tools = [t["function"]["name"] for t in body.get("tools") or ()]
    c.tools_refused = body.get("tool_choice") == "NONE"
    c.wants_json = (body.get("response_format") or {}).get("type") == "json_object"
    return c


def write_cohere(a: Answer, stream: bool) -> Iterator[bytes] | dict[str, Any]:
    usage = {
        "billed_units": {"input_tokens": a.input_tokens, "output_tokens": a.output_tokens},
        "tokens": {"input_tokens": a.input_tokens, "output_tokens": a.output_tokens},
    }
    finish = "TOOL_CALL" if a.calls else "COMPLETE"
    calls = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
        for c in a.calls
    ]
    if not stream:
        message: dict[str, Any] = {"role": "assistant"}
        if a.text is not None:
            message["content"] = [{"type": "text", "text": a.text}]
        if calls:
            message["tool_calls"] = calls
        return {"id": "wire", "finish_reason": finish, "message": message, "usage": usage}

    def events() -> Iterator[bytes]:
        start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        yield _sse({"id": "wire", "type": "message-start", "delta": {"message": start}}, "message-start")
        if a.text is not None:
            begin = {"message": {"content": {"type": "text", "text": ""}}}
            yield _sse({"type": "content-start", "index": 0, "delta": begin}, "content-start")
            for piece in a.pieces():
                delta = {"message": {"content": {"text": piece}}}
                yield _sse({"type": "content-delta", "index": 0, "delta": delta}, "content-delta")
            yield _sse({"type": "content-end", "index": 0}, "content-end")
        for i, call in enumerate(calls):
            begin = {"message": {"tool_calls": {**call, "function": {**call["function"], "arguments": ""}}}}
            yield _sse({"type": "tool-call-start", "index": i, "delta": begin}, "tool-call-start")
            delta = {"message": {"tool_calls": {"function": {"arguments": call["function"]["arguments"]}}}}
            yield _sse({"type": "tool-call-delta", "index": i, "delta": delta}, "tool-call-delta")
            yield _sse({"type": "tool-call-end", "index": i}, "tool-call-end")
        end = {"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}}
        yield _sse(end, "message-end")

    return events()


# ----------------------------------------------------------------------------- Bedrock


def read_bedrock(body: dict[str, Any]) -> Conversation:
    c = Conversation()
    for block in body.get("system") or ():
        if "text" in block:
            c.system.append(c.text(block["text"]))
    for m in body["messages"]:
        blocks = m["content"]
        results = [b["toolResult"] for b in blocks if "toolResult" in b]
        c.last_tool_results = [
            c.text(" ".join(x["text"] if "text" in x else json.dumps(x.get("json")) for x in r["content"]))
            for r in results
        ]
        if results and len(results) == len(blocks):
            continue
        c.turns += 1
        texts = [c.text(b["text"]) for b in blocks if "text" in b]
        if m["role"] == "user":
            c.images += sum(1 for b in blocks if "image" in b)
            c.user(" ".join(texts))
    config = body.get("toolConfig") or {}
    c.tools = [t["toolSpec"]["name"] for t in config.get("tools") or ()]
    c.forced_tool = ((config.get("toolChoice") or {}).get("tool") or {}).get("name")
    return c


def eventstream_frame(event: str, payload: dict[str, Any], message_type: str = "event") -> bytes:
    """One AWS event-stream message (the binary framing ConverseStream answers with)."""
    headers = b""
    names = (":event-type", event) if message_type == "event" else (":exception-type", event)
    for name, value in ((":message-type", message_type), names, (":content-type", "application/json")):
        encoded = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(encoded)) + encoded
    data = json.dumps(payload).encode()
    prelude = struct.pack(">II", 16 + len(headers) + len(data), len(headers))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + headers + data
    return message + struct.pack(">I", binascii.crc32(message))


def write_bedrock(a: Answer, stream: bool) -> Iterator[bytes] | dict[str, Any]:
    usage = {
        "inputTokens": a.input_tokens,
        "outputTokens": a.output_tokens,
        "totalTokens": a.input_tokens + a.output_tokens,
    }
    stop = "tool_use" if a.calls else "end_turn"
    blocks: list[dict[str, Any]] = [] if a.text is None else [{"text": a.text}]
    blocks += [
        {"toolUse": {"toolUseId": f"tooluse_{c.id}", "name": c.name, "input": c.arguments}} for c in a.calls
    ]
    if not stream:
        return {
            "output": {"message": {"role": "assistant", "content": blocks}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": 12},
        }

    def events() -> Iterator[bytes]:
        yield eventstream_frame("messageStart", {"role": "assistant"})
        for i, block in enumerate(blocks):
            if "text" in block:
                for piece in a.pieces():
                    yield eventstream_frame(
                        "contentBlockDelta", {"contentBlockIndex": i, "delta": {"text": piece}}
                    )
            else:
                use = block["toolUse"]
                start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
                yield eventstream_frame("contentBlockStart", {"contentBlockIndex": i, "start": start})
                delta = {"toolUse": {"input": json.dumps(use["input"])}}
                yield eventstream_frame("contentBlockDelta", {"contentBlockIndex": i, "delta": delta})
            yield eventstream_frame("contentBlockStop", {"contentBlockIndex": i})
        yield eventstream_frame("messageStop", {"stopReason": stop})
        yield eventstream_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 12}})

    return events()


# ----------------------------------------------------------------------------- the server


GEMINI_PATH = re.compile(r"/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$")
BEDROCK_PATH = re.compile(r"/model/(?P<model>[^/]+)/(?P<method>converse|converse-stream)$")


class WireModels(Upstream):
    """An `Upstream` whose unscripted answers come from the deterministic model above, in the
    wire format the request's path belongs to: `/v1/chat/completions` (OpenAI), `/v1/messages`
    (Anthropic), `/v1beta/models/{m}:generateContent` (Gemini), `/v2/chat` (Cohere),
    `/model/{m}/converse[-stream]` (Bedrock)."""

    async def _default(self, request: web.Request, body: bytes) -> web.StreamResponse:
        path = request.path
        data = json.loads(body) if body else {}
        if path.endswith("/chat/completions"):
            c = read_openai(data)
            stream = bool(data.get("stream"))
            include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
            return await self._send(request, write_openai(answer(c), data["model"], stream, include_usage))
        if path.endswith("/messages"):
            return await self._send(
                request,
                write_anthropic(answer(read_anthropic(data)), data["model"], bool(data.get("stream"))),
            )
        if path.endswith("/v2/chat"):
            return await self._send(
                request, write_cohere(answer(read_cohere(data)), bool(data.get("stream")))
            )
        if match := GEMINI_PATH.search(path):
            stream = match["method"] == "streamGenerateContent"
            return await self._send(request, write_gemini(answer(read_gemini(data)), match["model"], stream))
        if match := BEDROCK_PATH.search(path):
            stream = match["method"] == "converse-stream"
            content_type = "application/vnd.amazon.eventstream" if stream else "application/json"
            return await self._send(request, write_bedrock(answer(read_bedrock(data)), stream), content_type)
        return await super()._default(request, body)

    async def _send(
        self,
        request: web.Request,
        out: Iterator[bytes] | dict[str, Any],
        content_type: str = "text/event-stream",
    ) -> web.StreamResponse:
        if isinstance(out, dict):
            return web.json_response(out)
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        for event in out:
            await response.write(event)
        await response.write_eof()
        return response
