"""Continuing a stream that broke after its first byte, on another deployment.

What the client has already received is read back from the chunks sent (kept only while the
stream can still be resumed), and the next deployment is asked to continue it, in the way its
provider supports best:

- `prefix`: the partial answer as a final assistant message with `"prefix": true` (Mistral's
  documented prefill; turnout's fake provider does the same). An echoed prefix is removed.
- `continue_final_message`: the partial answer as a final assistant message, with vLLM's
  `continue_final_message: true, add_generation_prompt: false`.
- `instruction`: the partial answer as an assistant message, then a user message asking the model
  to continue exactly where it stopped (every other OpenAI-format provider).

The continuation's chunks are rewritten to carry the original stream's id, `created` and `model`,
without a second role delta, so the client sees one stream with one `[DONE]`. The chunk that ends
the answer carries `x_turnout.resumed`, saying where the stream was continued and why.

Not resumable (a terminal error event is sent instead, never a fake finish): a stream with tool
calls, refusals, audio or several choices in progress.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Continuation = Literal["prefix", "continue_final_message", "instruction"]

CONTINUE_INSTRUCTION = (
    "Your previous message was cut off. Continue it from exactly where it stopped: write only the "
    "missing rest, without repeating anything and without any preamble."
)


@dataclass(slots=True)
class Partial:
    """What the client has received so far."""

    parts: list[str] = field(default_factory=list)
    chars: int = 0  # characters in `parts`
    id: str | None = None
    created: int | None = None
    model: str | None = None
    finished: bool = False  # a finish_reason has already been sent: the answer is complete
    obstacle: str | None = None  # why it cannot be continued, if it cannot

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.chars += len(text)

    def drop_text(self) -> None:
        """Let the text go (it has been counted): the answer can no longer be continued."""
        self.parts.clear()
        self.chars = 0


def read_partial(chunks: list[bytes], partial: Partial | None = None) -> Partial:
    """What `chunks` (OpenAI chunk JSONs) told the client, added to `partial` if given: the text of
    every choice (tool calls' names and arguments too: they are output, though they stop a
    continuation)."""
    partial = Partial() if partial is None else partial
    for raw in chunks:
        try:
            chunk = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(chunk, dict):
            continue
        if partial.id is None and isinstance(chunk.get("id"), str):
            partial.id = chunk["id"]
            partial.created = chunk.get("created") if isinstance(chunk.get("created"), int) else None
            partial.model = chunk.get("model") if isinstance(chunk.get("model"), str) else None
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            if choice.get("index", 0) != 0:
                partial.obstacle = "several choices"
            if choice.get("finish_reason"):
                partial.finished = True
            delta = choice.get("delta") or {}
            if isinstance(delta, dict):
                _read_delta(delta, partial)
    return partial


def _read_delta(delta: dict[str, Any], partial: Partial) -> None:
    for what in ("tool_calls", "function_call", "refusal", "audio"):
        if delta.get(what):
            partial.obstacle = what.replace("_", " ")
    content = delta.get("content")
    if isinstance(content, str) and content:
        partial.add(content)
    refusal = delta.get("refusal")
    if isinstance(refusal, str):
        partial.add(refusal)
    calls = delta.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            for part in (function.get("name"), function.get("arguments")):
                if isinstance(part, str) and part:
                    partial.add(part)


NATIVE_TEXT_FIELDS = ("text", "partial_json", "thinking")  # what an Anthropic delta adds to the answer


def read_native_partial(batches: list[bytes], partial: Partial) -> Partial:
    """What Anthropic-format events (SSE bytes, passed on as they came) told the client: the text,
    tool input and thinking of their content deltas. Such a stream is never continued elsewhere;
    this is what counts its output when the provider reported none."""
    partial.obstacle = partial.obstacle or "an Anthropic-format stream"
    for raw in batches:
        for line in raw.split(b"\n"):
            if not line.startswith(b"data:") or b"content_block_delta" not in line:
                continue
            try:
                event = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            delta = event.get("delta") if isinstance(event, dict) else None
            if not isinstance(delta, dict):
                continue
            for name in NATIVE_TEXT_FIELDS:
                value = delta.get(name)
                if isinstance(value, str) and value:
                    partial.add(value)
    return partial


def continuation_body(body: dict[str, Any], partial: str, style: Continuation) -> dict[str, Any]:
    """The request to send to the next deployment so that it continues `partial`."""
    new = copy.copy(body)
    messages = list(body.get("messages") or ())
    if not partial:
        return new  # nothing was said yet: ask again
    if style == "prefix":
        messages.append({"role": "assistant", "content": partial, "prefix": True})
    elif style == "continue_final_message":
        messages.append({"role": "assistant", "content": partial})
        new["continue_final_message"] = True
        new["add_generation_prompt"] = False
    else:
        messages.append({"role": "assistant", "content": partial})
        messages.append({"role": "user", "content": CONTINUE_INSTRUCTION})
    new["messages"] = messages
    new.pop("n", None)
    return new


@dataclass(slots=True)
class Rewriter:
    """Makes a continuation's chunks look like more of the original stream."""

    original: Partial
    echoed: str  # text the continuation may repeat first (its prefix), to be removed
    mark: dict[str, Any]
    _pending: str = ""
    _checking: bool = field(default=True)

    def __post_init__(self) -> None:
        self._checking = bool(self.echoed)

    def batch(self, batch: list[bytes]) -> list[bytes]:
        out = []
        for raw in batch:
            chunk = self.chunk(raw)
            if chunk is not None:
                out.append(chunk)
        return out

    def chunk(self, raw: bytes) -> bytes | None:
        chunk = orjson.loads(raw)
        if not isinstance(chunk, dict):
            return raw
        o = self.original
        if o.id is not None:
            chunk["id"] = o.id
        if o.created is not None:
            chunk["created"] = o.created
        if o.model is not None:
            chunk["model"] = o.model
        keep = bool(chunk.get("usage"))
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            if isinstance(delta, dict):
                delta.pop("role", None)
                if isinstance(delta.get("content"), str):
                    delta["content"] = self._unecho(delta["content"], bool(choice.get("finish_reason")))
                    if not delta["content"]:
                        del delta["content"]
                if any(v is not None for v in delta.values()):
                    keep = True
            if choice.get("finish_reason"):
                keep = True
                chunk["x_turnout"] = self.mark
            elif choice.get("logprobs"):
                keep = True
        return orjson.dumps(chunk) if keep else None

    def _unecho(self, text: str, last: bool) -> str:
        """Hold back the start of the continuation while it might still be an echo of the prefix;
        drop it if it was, release it if it was not."""
        if not self._checking:
            return text
        self._pending += text
        if len(self._pending) < len(self.echoed) and self.echoed.startswith(self._pending) and not last:
            return ""
        self._checking = False
        pending, self._pending = self._pending, ""
        if pending.startswith(self.echoed):
            return pending[len(self.echoed) :]
        return pending
