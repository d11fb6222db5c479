"""OpenAI's Responses API inbound, the answer half: an OpenAI chat answer (whole, or chunk by
chunk) as a Response object and its documented stream events. Pure; the server edge does I/O.

Output items: the reasoning text (where the provider returns it) as a `reasoning` item, the text
(or refusal) as one assistant `message`, each tool call as a `function_call`. finish_reason
`length` and `content_filter` make the response `incomplete` (max_output_tokens /
content_filter); everything else is `completed`.

Streams follow the documented order: response.created, response.in_progress, then per item
output_item.added → (content_part.added → deltas → text done → content_part.done) or
(function_call_arguments.delta… → .done) → output_item.done, and finally response.completed
(or response.incomplete); a failure after the first byte ends it with response.failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from turnout.domain.completions import (
    ChatCompletion,
    ChatCompletionChunk,
    ChunkDelta,
    ChunkFunction,
    CompletionMessage,
    text_of,
)
from turnout.domain.errors import TurnoutError
from turnout.domain.usage import OpenAIUsage
from turnout.inbound.responses_request import ResponsesRequest, new_id

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def usage_of(usage: OpenAIUsage | None) -> dict[str, Any] | None:
    """The Responses `usage` for an OpenAI chat `usage` (None when there was none)."""
    if usage is None:
        return None
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    input_tokens = usage.prompt_tokens or 0
    output_tokens = usage.completion_tokens or 0
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": (prompt.cached_tokens if prompt else None) or 0,
            "cache_write_tokens": (prompt.cache_write_tokens if prompt else None) or 0,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {
            "reasoning_tokens": (completion.reasoning_tokens if completion else None) or 0
        },
        "total_tokens": usage.total_tokens or input_tokens + output_tokens,
    }


def _echo_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The function tools the request offered (the tools a translated request goes without are
    not echoed: the model had none of them)."""
    return [
        {
            "type": "function",
            "name": t["name"],
            "description": t.get("description"),
            "parameters": t.get("parameters"),
            "strict": t.get("strict"),
        }
        for t in body.get("tools") or ()
        if t.get("type") == "function"
    ]


def response_object(
    request: ResponsesRequest,
    response_id: str,
    created_at: int,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Response object, echoing the request's settings as OpenAI does."""
    body = request.body
    incomplete = INCOMPLETE.get(finish_reason or "")
    if status == "completed" and incomplete is not None:
        status = "incomplete"
    text = dict(body.get("text") or {})
    text.setdefault("format", {"type": "text"})
    reasoning = body.get("reasoning") or {}
    response = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": request.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": request.store,
        "temperature": body.get("temperature"),
        "text": text,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": _echo_tools(body),
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "metadata": body.get("metadata") or {},
    }
    if usage is not None:
        response["usage"] = usage
    if body.get("user") is not None:
        response["user"] = body["user"]
    return response


def _reasoning_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"type": "reasoning", "id": item_id, "summary": [], "content": content, "status": status}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_items(message: CompletionMessage | None, finish_reason: str | None) -> list[dict[str, Any]]:
    """The output items for a chat answer's message."""
    if message is None:
        return []
    status = "incomplete" if finish_reason in INCOMPLETE else "completed"
    out: list[dict[str, Any]] = []
    if message.reasoning_content:
        out.append(_reasoning_item(new_id("rs"), message.reasoning_content, "completed"))
    content: list[dict[str, Any]] = []
    text = text_of(message.content)
    if text:
        content.append(_text_part(text))
    if message.refusal:
        content.append({"type": "refusal", "refusal": message.refusal})
    if content:
        out.append(_message_item(new_id("msg"), content, status))
    for call in message.tool_calls or ():
        function = call.function
        out.append(
            _call_item(
                new_id("fc"),
                call.id or new_id("call"),
                (function.name if function else None) or "",
                (function.arguments if function else None) or "",
                "completed",
            )
        )
    return out


def to_response(completion: ChatCompletion, request: ResponsesRequest, response_id: str) -> dict[str, Any]:
    """The Response object for a whole chat completion."""
    choice = completion.choices[0] if completion.choices else None
    finish = choice.finish_reason if choice is not None else None
    return response_object(
        request,
        response_id,
        int(completion.created or time.time()),
        status="completed",
        output=output_items(choice.message if choice is not None else None, finish),
        usage=usage_of(completion.usage or None),
        finish_reason=finish,
    )


def conversation_turn(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat message(s) an answer adds to the conversation (what the next turn continues)."""
    text = "".join(
        part.get("text") or part.get("refusal") or ""
        for item in output
        if item["type"] == "message"
        for part in item["content"]
    )
    calls = [
        {"id": i["call_id"], "type": "function", "function": {"name": i["name"], "arguments": i["arguments"]}}
        for i in output
        if i["type"] == "function_call"
    ]
    if not text and not calls:
        return []
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def error_of(error: TurnoutError) -> dict[str, Any]:
    code = "rate_limit_exceeded" if error.status == 429 else "server_error"
    return {"code": code, "message": error.message}


class EventWriter:
    """OpenAI chat chunks in, Responses stream events out (as SSE bytes). `on_done` receives the
    final Response object when the stream finishes (to store it)."""

    def __init__(
        self,
        request: ResponsesRequest,
        response_id: str,
        on_done: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.request = request
        self.response_id = response_id
        self.created_at = int(time.time())
        self.on_done = on_done
        self.sequence = 0
        self.output: list[dict[str, Any]] = []  # finished items, and the open one last
        self.open: str | None = None  # "reasoning", "message" or "call:<chat index>"
        self.text = ""  # the open item's text (reasoning or message)
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        return response_object(
            self.request, self.response_id, self.created_at, status=status, output=self.output, **extra
        )

    def chunk(self, chunk: ChatCompletionChunk | None) -> bytes:
        """The events for one chunk (only the start for one turnout could not read)."""
        out = [self._start()]
        if chunk is None:
            return out[0]
        if chunk.usage:
            self.usage = usage_of(chunk.usage)
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta is not None:
                self._delta_events(delta, out)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        return b"".join(out)

    def _delta_events(self, delta: ChunkDelta, out: list[bytes]) -> None:
        if delta.reasoning_content:
            if self.open != "reasoning":
                out.append(self._close())
                out.append(self._add(_reasoning_item(new_id("rs"), None, "in_progress"), "reasoning"))
                out.append(self._part_added({"type": "reasoning_text", "text": ""}))
            self.text += delta.reasoning_content
            out.append(self._at("response.reasoning_text.delta", delta=delta.reasoning_content))
        text = text_of(delta.content)
        if text:
            if self.open != "message":
                out.append(self._close())
                out.append(self._add(_message_item(new_id("msg"), [], "in_progress"), "message"))
                out.append(self._part_added(_text_part("")))
            self.text += text
            out.append(self._at("response.output_text.delta", delta=text, logprobs=[]))
        for call in delta.tool_calls or ():
            key = f"call:{call.index}"
            function = call.function if isinstance(call.function, ChunkFunction) else None
            if self.open != key:
                out.append(self._close())
                name = (function.name if function else None) or ""
                item = _call_item(new_id("fc"), call.id or new_id("call"), name, "", "in_progress")
                out.append(self._add(item, key))
            if function and function.arguments:
                self.output[-1]["arguments"] += function.arguments
                out.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=self.output[-1]["id"],
                        output_index=len(self.output) - 1,
                        delta=function.arguments,
                    )
                )

    def _start(self) -> bytes:
        """response.created and response.in_progress, before anything else."""
        if self.sequence:
            return b""
        created = self._event("response.created", response=self._snapshot("in_progress"))
        return created + self._event("response.in_progress", response=self._snapshot("in_progress"))

    def _add(self, item: dict[str, Any], key: str) -> bytes:
        self.output.append(item)
        self.open = key
        self.text = ""
        return self._event("response.output_item.added", output_index=len(self.output) - 1, item=item)

    def _at(self, kind: str, **fields: Any) -> bytes:
        """An event about the open item's first content part."""
        return self._event(
            kind, item_id=self.output[-1]["id"], output_index=len(self.output) - 1, content_index=0, **fields
        )

    def _part_added(self, part: dict[str, Any]) -> bytes:
        return self._at("response.content_part.added", part=part)

    def _close(self) -> bytes:
        """Finish the open item (its done events), if any."""
        if self.open is None:
            return b""
        item = self.output[-1]
        index = len(self.output) - 1
        status = "incomplete" if self.finish_reason in INCOMPLETE else "completed"
        out: list[bytes] = []
        if self.open == "reasoning":
            part = {"type": "reasoning_text", "text": self.text}
            out.append(self._at("response.reasoning_text.done", text=self.text))
            out.append(self._at("response.content_part.done", part=part))
            item.update(content=[part], status="completed")
        elif self.open == "message":
            part = _text_part(self.text)
            out.append(self._at("response.output_text.done", text=self.text, logprobs=[]))
            out.append(self._at("response.content_part.done", part=part))
            item.update(content=[part], status=status)
        else:
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    name=item["name"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
            item["status"] = "completed"
        self.open = None
        out.append(self._event("response.output_item.done", output_index=index, item=item))
        return b"".join(out)

    def finish(self) -> bytes:
        closing = self._start() + self._close()
        response = self._snapshot("completed", usage=self.usage, finish_reason=self.finish_reason)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        if self.on_done is not None:
            self.on_done(response)
        return closing + self._event(kind, response=response)

    def error(self, error: TurnoutError) -> bytes:
        start = self._start()
        response = self._snapshot("failed", usage=self.usage, error=error_of(error))
        return start + self._event("response.failed", response=response)
