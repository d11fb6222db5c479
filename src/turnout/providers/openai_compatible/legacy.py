"""OpenAI's legacy Completions API, forwarded: a client's `POST /v1/completions` passed whole to a
provider that serves it (`legacy_completions` on its kind), and its answer or events passed back
as they came. turnout reads only what it accounts with: the usage, and (for counting when none
comes) each choice's text as it streams. turnout asks for the stream's usage; a usage-only event
the client did not ask for is read and not sent."""

from __future__ import annotations

import msgspec

from turnout.domain.completions import ChatCompletionChunk, Chunk, ChunkChoice, ChunkDelta
from turnout.domain.usage import OpenAIUsage, Usage
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.translated_stream import TranslatedStream


class _Choice(msgspec.Struct):
    text: str | None = None
    index: int = 0
    finish_reason: str | None = None


class LegacyPeek(msgspec.Struct):
    """A `text_completion` (or one of its chunks), read only as far as turnout needs."""

    choices: list[_Choice] = []
    usage: OpenAIUsage | None = None


legacy_decoder = msgspec.json.Decoder(LegacyPeek)


def usage_of(data: bytes) -> Usage | None:
    peek = legacy_decoder.decode(data)
    return None if peek.usage is None else peek.usage.canonical()


class NativeLegacyStream(TranslatedStream):
    """A legacy stream's own events, passed on; their text folded into the attempt's answer."""

    native = True
    stops_at_finish = False  # the usage event follows the last choice's finish

    def __init__(
        self, response: UpstreamResponse, *, provider: str, model: str, client_wants_usage: bool
    ) -> None:
        super().__init__(response, provider=provider, model=model, include_usage=False)
        self._client_wants_usage = client_wants_usage

    def _event(self, data: bytes, batch: list[Chunk]) -> bool:
        peek = self._decode(legacy_decoder, data)
        if peek.usage is not None:
            self.usage = peek.usage.canonical()
            if not peek.choices and not self._client_wants_usage:
                return True  # read, not sent
        choices = [
            ChunkChoice(index=c.index, delta=ChunkDelta(content=c.text or ""), finish_reason=c.finish_reason)
            for c in peek.choices
        ]
        view = ChatCompletionChunk(self._id, created=self._created, model=self._model, choices=choices)
        if choices:
            self.answer.fold(view)
        batch.append(Chunk(view, b"data: " + data + b"\n\n"))
        return any(c.finish_reason is not None for c in peek.choices) or peek.usage is not None
