"""One answer as a rehearsal compares it, whoever gave it: the text, the tool calls, the finish
reason, tokens, cost, latency and time to first token, or the error that stood for it. Read from
a logged `chat.completion` (what the client got) or folded from a candidate's stream."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from turnout.domain.accumulator import StreamAccumulator

KEPT = 65_536  # characters of an answer's text (and of each tool call's arguments) the state keeps


@dataclass(frozen=True, slots=True)
class ToolUse:
    name: str
    arguments: str  # as the model wrote them (JSON text, perhaps invalid)


@dataclass(frozen=True, slots=True)
class Answer:
    ok: bool
    error: str | None = None
    text: str = ""
    tool_calls: tuple[ToolUse, ...] = field(default_factory=tuple)
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_micros: int | None = None
    latency_ms: int | None = None
    ttft_ms: int | None = None  # None: not known (the request log does not keep it)
    readable: bool = True  # False: a logged answer in a format the comparison cannot read

    def document(self) -> dict[str, Any]:
        """As the state file keeps it: texts cut at `KEPT` characters (compared whole before)."""
        doc = asdict(self)
        doc["text"] = self.text[:KEPT]
        doc["tool_calls"] = [
            {"name": t.name[:KEPT], "arguments": t.arguments[:KEPT]} for t in self.tool_calls
        ]
        return doc


def _tool_uses(message: dict[str, Any]) -> tuple[ToolUse, ...]:
    uses = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            uses.append(ToolUse(str(function.get("name", "")), str(function.get("arguments", ""))))
    return tuple(uses)


def logged_answer(
    document: Any, latency_ms: int, input_tokens: int | None, output_tokens: int | None, cost: int | None
) -> Answer:
    """What the client got: the logged answer (its first choice) with the ledger's figures."""
    figures = Answer(ok=True, input_tokens=input_tokens, output_tokens=output_tokens)
    figures = replace(figures, cost_micros=cost, latency_ms=latency_ms)
    choices = document.get("choices") if isinstance(document, dict) else None
    if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
        return replace(figures, readable=False)
    message = choices[0]["message"]
    content = message.get("content")
    reason = choices[0].get("finish_reason")
    return replace(
        figures,
        text=content if isinstance(content, str) else "",
        tool_calls=_tool_uses(message),
        finish_reason=reason if isinstance(reason, str) else None,
    )


def streamed_answer(
    answer: StreamAccumulator,
    timings: tuple[float, float | None],
    cost: int | None,
    input_tokens: int,
    output_tokens: int,
) -> Answer:
    """A candidate's answer, folded from its stream (its first choice)."""
    calls = tuple(
        ToolUse(state.name, state.arguments.text())
        for (choice, _), state in sorted(answer.tool_calls.items())
        if choice == 0
    )
    latency, ttft = timings  # seconds from sending the request: to its end, to its first output
    return Answer(
        ok=True,
        text=answer.text(0),
        tool_calls=calls,
        finish_reason=answer.finish_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_micros=cost,
        latency_ms=round(latency * 1000),
        ttft_ms=None if ttft is None else round(ttft * 1000),
    )
