"""What the request path hands the request log: references to the request and its answer, taken
once the request has ended (no copy, no encoding: that happens in the background), and how a
streamed answer is assembled from what the stream's accumulator folded."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from turnout.domain.usage import Usage
from turnout.providers.base import ChatResult
from turnout.routing.relay import RelayStream

Answer = ChatResult | RelayStream | None


@dataclass(slots=True)
class Captured:
    """One request to log. `request` is the body as the client sent it, in OpenAI chat format (a
    request through another API, as turnout read it; through a preset, without the preset's part);
    `answer` the complete answer, or the stream that was relayed (None: no answer)."""

    request_id: str
    at: float  # unix seconds, when the request arrived
    api: str
    key_id: str
    team_id: str | None
    user_id: str | None
    alias: str
    model: str | None
    deployment: str | None
    stream: bool
    status: int
    reason: str | None
    latency_ms: int
    request: Any
    answer: Answer
    usage: Usage | None


def answer_document(captured: Captured) -> Any:
    """The answer as a JSON value: a complete answer's own body (the upstream's own format when it
    answered natively), or a stream assembled into one `chat.completion`; None without one."""
    answer = captured.answer
    if answer is None:
        return None
    if isinstance(answer, ChatResult):
        raw = answer.native if answer.native is not None else answer.body
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw.decode("utf-8", "replace")
    return assembled(answer, captured.usage)


def assembled(relay: RelayStream, usage: Usage | None) -> dict[str, Any]:
    """A relayed stream as one `chat.completion`: each choice's text (the first one's as the client
    received it, continuations included), its tool calls, the finish reason, the usage the ledger
    counted. `incomplete` is set when the answer outgrew what the stream keeps (1 MiB of text)."""
    answer = relay.answer
    sent = relay.sent()
    indexes = sorted({*answer.choices(), *(i for i, _ in answer.tool_calls)})
    choices = []
    for index in indexes:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": sent.text if index == 0 else answer.text(index),
        }
        calls = [
            {
                "id": state.id,
                "type": "function",
                "function": {"name": state.name, "arguments": state.arguments.text()},
            }
            for (choice, _), state in sorted(answer.tool_calls.items())
            if choice == index
        ]
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": index, "message": message, "finish_reason": answer.finish_reason})
    document: dict[str, Any] = {
        "id": sent.id,
        "object": "chat.completion",
        "created": sent.created or int(time.time()),
        "model": sent.model,
        "choices": choices,
    }
    if usage is not None:
        document["usage"] = {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
        }
    if answer.spilled_tokens:
        document["incomplete"] = "the answer outgrew what a stream keeps; only its end is here"
    return document
