"""Continuing a stream that broke after its first byte, on another deployment.

What the client has already received is read from the attempt's accumulator (its text is kept only
up to the resume copy's cap), and the next deployment is asked to continue it, in the way its
provider supports best:

- `prefix`: the partial answer as a final assistant message with `"prefix": true` (Mistral's
  documented prefill; turnout's fake provider does the same). An echoed prefix is removed.
- `continue_final_message`: the partial answer as a final assistant message, with vLLM's
  `continue_final_message: true, add_generation_prompt: false`.
- `instruction`: the partial answer as an assistant message, then a user message asking the model
  to continue exactly where it stopped (every other OpenAI-format provider).

The continuation's chunks are rewritten to carry the original stream's id, `created` and `model`,
without a second role delta, so the client sees one stream with one `[DONE]`; they are written from
their typed view (what turnout does not model of them is not carried). The chunk that ends the
answer carries `x_turnout.resumed`, saying where the stream was continued and why.

Not resumable (a terminal error event is sent instead, never a fake finish): a stream with tool
calls, refusals, audio, several choices, or a chunk turnout could not read in progress, or an
answer longer than the resume copy's cap.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from msgspec import UNSET

from turnout.domain.accumulator import StreamAccumulator
from turnout.domain.completions import Chunk, ChunkDelta, present

Continuation = Literal["prefix", "continue_final_message", "instruction"]

CONTINUE_INSTRUCTION = (
    "Your previous message was cut off. Continue it from exactly where it stopped: write only the "
    "missing rest, without repeating anything and without any preamble."
)


@dataclass(slots=True)
class Partial:
    """What the client has received so far."""

    text: str = ""
    id: str | None = None
    created: int | None = None
    model: str | None = None
    finished: bool = False  # a finish_reason has already been sent: the answer is complete
    obstacle: str | None = None  # why it cannot be continued, if it cannot


def partial_of(
    answer: StreamAccumulator, before: Partial | None = None, rewriter: Rewriter | None = None
) -> Partial:
    """What the client was sent of a stream whose current attempt folded into `answer`: all of it,
    or, for a continuation (`before`: what the client had been sent until then), that and what
    `rewriter` let through of the continuation."""
    if before is None or rewriter is None:
        return Partial(
            answer.text(), answer.id, answer.created, answer.model, answer.finished, answer.obstacle
        )
    text = before.text + rewriter.passed(answer.text())
    return Partial(text, before.id, before.created, before.model, answer.finished, answer.obstacle)


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
    dropped: int = 0  # characters of echo removed from the continuation's text
    _pending: str = ""
    _checking: bool = field(default=True)

    def __post_init__(self) -> None:
        self._checking = bool(self.echoed)

    def passed(self, text: str) -> str:
        """What the client got of the continuation whose text (as the upstream wrote it) is
        `text`: none while the echo is still being checked, the rest after the echo after."""
        return "" if self._checking else text[self.dropped :]

    def batch(self, batch: list[Chunk]) -> list[Chunk]:
        out = []
        for chunk in batch:
            rewritten = self.chunk(chunk)
            if rewritten is not None:
                out.append(rewritten)
        return out

    def chunk(self, chunk: Chunk) -> Chunk | None:
        view = chunk.view
        if view is None:
            return chunk  # a chunk turnout could not read: passed on as it came
        o = self.original
        if o.id is not None:
            view.id = o.id
        if o.created is not None:
            view.created = o.created
        if o.model is not None:
            view.model = o.model
        keep = bool(view.usage)
        for choice in view.choices:
            delta = choice.delta
            if delta is not None:
                delta.role = UNSET
                if isinstance(delta.content, str):
                    delta.content = self._unecho(delta.content, bool(choice.finish_reason)) or UNSET
                keep = keep or _says_something(delta)
            if choice.finish_reason:
                keep = True
                view.x_turnout = self.mark
            elif present(choice.logprobs):
                keep = True
        return Chunk(view) if keep else None

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
            self.dropped = len(self.echoed)
            return pending[len(self.echoed) :]
        return pending


def _says_something(delta: ChunkDelta) -> bool:
    """Does a delta (its role removed) still carry anything?"""
    return (
        any(v is not UNSET and v is not None for v in (delta.content, delta.reasoning_content, delta.refusal))
        or bool(delta.tool_calls)
        or present(delta.function_call)
        or present(delta.audio)
    )
