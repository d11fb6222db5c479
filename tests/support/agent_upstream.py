"""A fake provider for agent clients: a real HTTP server on 127.0.0.1 (the recording `Upstream`)
that answers OpenAI's chat completions, OpenAI's Responses API and Anthropic's Messages API (with
its token counting), streamed or not, as a model using tools would: asked with the tool `tool`
on offer, it first calls it (with `arguments`); once the conversation holds the tool's output, it
answers in text that quotes the output. Without the tool on offer it just greets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from support.upstream import Upstream

GREETING = "Hello from the fake provider."
COUNTED_TOKENS = 4321  # what this provider's count_tokens answers, so a test can tell it apart
CALL_ID = "call_fake_1"


def answer_after(output: str) -> str:
    """The text answer once the tool has returned `output`."""
    return f"The tool returned: {output.strip()}"


@dataclass
class Turn:
    """What the model does next: call the tool, or answer `text`."""

    text: str | None = None
    tool: str | None = None
    arguments: str = "{}"


def _text_of(content: Any) -> str:
    """The text of a message's or a tool result's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            _text_of(p.get("text") or p.get("content") or "") for p in content if isinstance(p, dict)
        )
    return ""


class AgentUpstream(Upstream):
    tool: str | None = None
    arguments: dict[str, Any] | None = None

    def agent(self, tool: str, arguments: dict[str, Any]) -> AgentUpstream:
        self.tool, self.arguments = tool, arguments
        return self

    def _turn(self, offered: set[str], output: str | None) -> Turn:
        if output is not None:
            return Turn(text=answer_after(output))
        if self.tool is not None and self.tool in offered:
            return Turn(tool=self.tool, arguments=json.dumps(self.arguments or {}))
        return Turn(text=GREETING)

    # ------------------------------------------------------------------ requests

    def posted(self, suffix: str) -> list[Any]:
        """The JSON bodies of the requests whose path ends with `suffix`, in order."""
        return [r.json for r in self.requests if r.method == "POST" and r.path.endswith(suffix)]

    async def _default(self, request: web.Request, body: bytes) -> web.StreamResponse:
        path = request.path
        if request.method != "POST":
            return await super()._default(request, body)
        data = json.loads(body)
        if path.endswith("/messages/count_tokens"):
            return web.json_response({"input_tokens": COUNTED_TOKENS})
        if path.endswith("/messages"):
            return await self._anthropic(request, data)
        if path.endswith("/responses"):
            return await self._responses(request, data)
        if path.endswith("/chat/completions"):
            return await self._chat(request, data)
        return await super()._default(request, body)

    @staticmethod
    async def _sse(request: web.Request, events: Iterator[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    # ------------------------------------------------------------------ OpenAI chat completions

    async def _chat(self, request: web.Request, data: dict[str, Any]) -> web.StreamResponse:
        messages = data.get("messages") or []
        last = messages[-1] if messages else {}
        output = _text_of(last.get("content")) if last.get("role") == "tool" else None
        offered = {t["function"]["name"] for t in data.get("tools") or () if t.get("type") == "function"}
        turn = self._turn(offered, output)
        model = data.get("model")
        usage = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
        if turn.tool is not None:
            call = {
                "id": CALL_ID,
                "type": "function",
                "function": {"name": turn.tool, "arguments": turn.arguments},
            }
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": turn.text}
            finish = "stop"
        if not data.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                    "usage": usage,
                }
            )
        with_usage = (data.get("stream_options") or {}).get("include_usage")

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            choices = (
                [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if delta is not None else []
            )
            body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model}
            return b"data: " + json.dumps({**body, "choices": choices, **extra}).encode() + b"\n\n"

        def events() -> Iterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            if turn.tool is not None:
                start = {
                    "index": 0,
                    "id": CALL_ID,
                    "type": "function",
                    "function": {"name": turn.tool, "arguments": ""},
                }
                yield chunk({"tool_calls": [start]})
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": turn.arguments}}]})
            else:
                assert turn.text is not None
                for word in turn.text.split(" "):
                    yield chunk({"content": word + " " if word != turn.text.split(" ")[-1] else word})
            yield chunk({}, finish)
            if with_usage:
                body = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                }
                yield b"data: " + json.dumps({**body, "choices": [], "usage": usage}).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return await self._sse(request, events())

    # ------------------------------------------------------------------ Anthropic messages

    async def _anthropic(self, request: web.Request, data: dict[str, Any]) -> web.StreamResponse:
        messages = data.get("messages") or []
        last = messages[-1] if messages else {}
        results = [
            b
            for b in (last.get("content") if isinstance(last.get("content"), list) else ()) or ()
            if isinstance(b, dict) and b.get("type") == "tool_result"
        ]
        output = _text_of(results[0].get("content")) if results and last.get("role") == "user" else None
        offered = {t["name"] for t in data.get("tools") or () if isinstance(t, dict) and "name" in t}
        turn = self._turn(offered, output)
        if turn.tool is not None:
            block: dict[str, Any] = {"type": "tool_use", "id": "toolu_fake_1", "name": turn.tool, "input": {}}
            stop = "tool_use"
        else:
            block = {"type": "text", "text": turn.text}
            stop = "end_turn"
        message: dict[str, Any] = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": data.get("model"),
            "content": [block],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 1},
        }
        if not data.get("stream"):
            if turn.tool is not None:
                block["input"] = json.loads(turn.arguments)
            return web.json_response(
                {**message, "stop_reason": stop, "usage": {"input_tokens": 20, "output_tokens": 5}}
            )

        def event(kind: str, payload: dict[str, Any]) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()

        def events() -> Iterator[bytes]:
            yield event("message_start", {"message": {**message, "content": []}})
            start = {**block, "text": ""} if turn.tool is None else block
            yield event("content_block_start", {"index": 0, "content_block": start})
            if turn.tool is not None:
                delta = {"type": "input_json_delta", "partial_json": turn.arguments}
            else:
                delta = {"type": "text_delta", "text": turn.text}
            yield event("content_block_delta", {"index": 0, "delta": delta})
            yield event("content_block_stop", {"index": 0})
            end = {"stop_reason": stop, "stop_sequence": None}
            yield event("message_delta", {"delta": end, "usage": {"output_tokens": 5}})
            yield event("message_stop", {})

        return await self._sse(request, events())

    # ------------------------------------------------------------------ OpenAI Responses

    async def _responses(self, request: web.Request, data: dict[str, Any]) -> web.StreamResponse:
        items = data.get("input")
        items = (
            [{"type": "message", "role": "user", "content": items}] if isinstance(items, str) else items or []
        )
        last = items[-1] if items else {}
        output = _text_of(last.get("output")) if last.get("type") == "function_call_output" else None
        offered = {t["name"] for t in data.get("tools") or () if t.get("type") == "function"}
        turn = self._turn(offered, output)
        if turn.tool is not None:
            item: dict[str, Any] = {
                "type": "function_call",
                "id": "fc_fake_1",
                "call_id": CALL_ID,
                "name": turn.tool,
                "arguments": turn.arguments,
                "status": "completed",
            }
        else:
            part = {"type": "output_text", "text": turn.text, "annotations": [], "logprobs": []}
            item = {
                "type": "message",
                "id": "msg_fake_1",
                "role": "assistant",
                "status": "completed",
                "content": [part],
            }
        usage = {
            "input_tokens": 20,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 25,
        }
        response: dict[str, Any] = {
            "id": "resp_fake_1",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": data.get("model"),
            "output": [item],
            "usage": usage,
            "error": None,
            "incomplete_details": None,
            "parallel_tool_calls": True,
            "tool_choice": data.get("tool_choice", "auto"),
            "tools": data.get("tools") or [],
        }
        if not data.get("stream"):
            return web.json_response(response)
        sequence = iter(range(1000))

        def event(kind: str, payload: dict[str, Any]) -> bytes:
            body = {"type": kind, "sequence_number": next(sequence), **payload}
            return f"event: {kind}\ndata: {json.dumps(body)}\n\n".encode()

        def events() -> Iterator[bytes]:
            pending = {**response, "status": "in_progress", "output": [], "usage": None}
            yield event("response.created", {"response": pending})
            if turn.tool is not None:
                yield event(
                    "response.output_item.added",
                    {"output_index": 0, "item": {**item, "arguments": "", "status": "in_progress"}},
                )
                yield event(
                    "response.function_call_arguments.delta",
                    {"output_index": 0, "item_id": item["id"], "delta": turn.arguments},
                )
                yield event(
                    "response.function_call_arguments.done",
                    {"output_index": 0, "item_id": item["id"], "arguments": turn.arguments},
                )
            else:
                yield event(
                    "response.output_item.added",
                    {"output_index": 0, "item": {**item, "content": [], "status": "in_progress"}},
                )
                empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                at = {"output_index": 0, "item_id": item["id"], "content_index": 0}
                yield event("response.content_part.added", {**at, "part": empty})
                yield event("response.output_text.delta", {**at, "delta": turn.text, "logprobs": []})
                yield event("response.output_text.done", {**at, "text": turn.text, "logprobs": []})
                yield event("response.content_part.done", {**at, "part": item["content"][0]})
            yield event("response.output_item.done", {"output_index": 0, "item": item})
            yield event("response.completed", {"response": response})

        return await self._sse(request, events())
