"""What one upstream attempt's stream produced, folded chunk by chunk as the stream reads it: the
usage it reported, the text of each choice, tool calls, its finish reason, its id, and when its
first output came. Resuming a broken stream, the attempt's ledger entry (when the provider
reported no usage) and the answer's writers read it instead of reading the chunks again.

Text is kept up to RESUME_COPY_CAP characters: past it, what is kept is counted (tokens) and let
go, and the answer can no longer be continued elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from msgspec import UNSET

from turnout.domain.completions import ChatCompletionChunk, ChunkDelta, present, text_of
from turnout.domain.tokens import count_tokens
from turnout.domain.usage import Usage

RESUME_COPY_CAP = 1 << 20  # characters of answer kept to continue from; a longer one is not resumed
JOIN_EVERY = 256  # small pieces of text joined into one string, so that many tiny deltas stay cheap
CAP_OBSTACLE = "an answer longer than the resume copy's cap"


class Pieces:
    """Text arriving in pieces, kept as few strings (every JOIN_EVERY pieces become one)."""

    __slots__ = ("blocks", "loose")

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.loose: list[str] = []

    def add(self, text: str) -> None:
        loose = self.loose
        loose.append(text)
        if len(loose) >= JOIN_EVERY:
            self.blocks.append("".join(loose))
            loose.clear()

    def all(self) -> list[str]:
        return [*self.blocks, *self.loose]

    def text(self) -> str:
        return "".join(self.all())

    def clear(self) -> None:
        self.blocks.clear()
        self.loose.clear()


@dataclass(slots=True)
class ToolCallState:
    """A tool call as its pieces have told it so far."""

    id: str | None = None
    name: str = ""
    argument_characters: int = 0
    arguments: Pieces = field(default_factory=Pieces)  # as kept (let go past the cap, as text is)


class StreamAccumulator:
    """Fed every chunk of one attempt's stream once (`fold`), in order."""

    __slots__ = (
        "_clock",
        "_other",
        "_texts",
        "created",
        "finish_reason",
        "first_output_at",
        "id",
        "kept",
        "model",
        "obstacle",
        "spilled_tokens",
        "started_at",
        "tool_calls",
        "usage",
    )

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started_at = clock()
        self.first_output_at: float | None = None
        self.usage: Usage | None = None  # as the provider reported it
        self.id: str | None = None
        self.created: int | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.obstacle: str | None = None  # why the answer cannot be continued elsewhere, if not
        self.tool_calls: dict[tuple[int, int], ToolCallState] = {}  # by (choice, call index)
        # each choice's content (and refusal), by the index the provider gave it: a dict, so that a
        # hostile index (a billion, or negative) costs one entry, not a list that long
        self._texts: dict[int, Pieces] = {0: Pieces()}
        self._other = Pieces()  # reasoning and tool calls' names: output, not text (arguments: per call)
        self.kept = 0  # characters kept in `_texts`, `_other` and the tool calls' arguments
        self.spilled_tokens = 0  # tokens of the output let go past the cap

    # ------------------------------------------------------------------ folding

    def fold(self, chunk: ChatCompletionChunk) -> None:
        if self.id is None and chunk.id is not None:
            self.id, self.created, self.model = chunk.id, chunk.created, chunk.model
        usage = chunk.usage
        if usage:
            self.usage = usage.canonical(chunk.service_tier or None)
        for choice in chunk.choices:
            index = choice.index
            texts = self._texts.get(index) if index else self._texts[0]
            if texts is None:
                texts = self._another_choice(index)
            delta = choice.delta
            if delta is not None:
                content = delta.content
                if content:  # inline `_add` and `Pieces.add`: once per chunk of every stream
                    text = content if type(content) is str else text_of(content)
                    if self.first_output_at is None:
                        self.first_output_at = self._clock()
                    loose = texts.loose
                    loose.append(text)
                    if len(loose) >= JOIN_EVERY:
                        texts.blocks.append("".join(loose))
                        loose.clear()
                    self.kept += len(text)
                    if self.kept > RESUME_COPY_CAP:
                        self._spill()
                if (
                    delta.tool_calls
                    or delta.reasoning_content
                    or delta.refusal
                    or delta.function_call is not UNSET
                    or delta.audio is not UNSET
                ):
                    self._fold_rest(index, texts, delta)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

    def _another_choice(self, index: int) -> Pieces:
        self.obstacle = self.obstacle or "several choices"
        texts = self._texts[index] = Pieces()
        return texts

    def _fold_rest(self, index: int, texts: Pieces, delta: ChunkDelta) -> None:
        """What a delta holds besides content: reasoning, a refusal, tool calls, audio."""
        if delta.reasoning_content:
            self._add(self._other, delta.reasoning_content)
        if delta.refusal:
            self.obstacle = self.obstacle or "refusal"
            self._add(texts, delta.refusal)
        if present(delta.function_call):
            self.obstacle = self.obstacle or "function call"
        if present(delta.audio):
            self.obstacle = self.obstacle or "audio"
        for call in delta.tool_calls or ():
            self.obstacle = self.obstacle or "tool calls"
            key = (index, call.index)
            state = self.tool_calls.get(key)
            if state is None:
                state = self.tool_calls[key] = ToolCallState()
            if call.id:
                state.id = call.id
            function = call.function
            if function:
                if function.name:
                    state.name += function.name
                    self._add(self._other, function.name)
                if function.arguments:
                    state.argument_characters += len(function.arguments)
                    self._add(state.arguments, function.arguments)

    def _add(self, pieces: Pieces, text: str) -> None:
        if self.first_output_at is None:
            self.first_output_at = self._clock()
        pieces.add(text)
        self.kept += len(text)
        if self.kept > RESUME_COPY_CAP:
            self._spill()

    def _spill(self) -> None:
        """Past the cap: count what is kept, let it go; the answer can no longer be continued."""
        self.spilled_tokens += count_tokens(self._produced())
        for pieces in self._kept_pieces():
            pieces.clear()
        self.kept = 0
        self.obstacle = self.obstacle or CAP_OBSTACLE

    # ------------------------------------------------------------------ reading

    @property
    def finished(self) -> bool:
        """Has a finish reason been seen (the answer is complete, whatever came after)?"""
        return self.finish_reason is not None

    @property
    def time_to_first_token(self) -> float | None:
        """Seconds from the attempt's start to its first output, once there was output."""
        at = self.first_output_at
        return None if at is None else at - self.started_at

    def text(self, choice: int = 0) -> str:
        """The content (and refusal) of a choice, as kept (empty once let go past the cap)."""
        texts = self._texts.get(choice)
        return "" if texts is None else texts.text()

    def choices(self) -> list[int]:
        """The indexes of the choices that produced text (0 always)."""
        return sorted(self._texts)

    def _kept_pieces(self) -> tuple[Pieces, ...]:
        calls = tuple(state.arguments for state in self.tool_calls.values())
        return (*self._texts.values(), self._other, *calls)

    def _produced(self) -> list[str]:
        return [piece for pieces in self._kept_pieces() for piece in pieces.all()]

    def produced(self) -> list[str]:
        """Everything the attempt produced that is still kept: every choice's text, reasoning and
        tool calls (to count when the provider reported no usage; see `spilled_tokens`)."""
        return self._produced()
