"""A Gemini `streamGenerateContent?alt=sse` stream, translated response by response into OpenAI
`chat.completion.chunk`s: text → content, thoughts → `reasoning_content`, each functionCall → one
whole tool call, the finish reason → the finish chunk, and the last `usageMetadata` → the usage
chunk (when the client asked for it). Gemini has no end marker: a stream that closes before a
finish reason is truncated, and reported as such; an `{"error": ...}` event fails it as the same
error over HTTP would."""

from __future__ import annotations

from turnout.domain.completions import Chunk, ChunkDelta
from turnout.providers.gemini.errors import stream_error
from turnout.providers.gemini.translate import finish_reason, stream_calls
from turnout.providers.gemini.wire import GenerateContentResponse, response_decoder
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.translated_stream import TranslatedStream


class GeminiStream(TranslatedStream):
    stops_at_finish = False  # usage may still come after the finish reason

    def __init__(self, response: UpstreamResponse, *, provider: str, model: str, include_usage: bool) -> None:
        super().__init__(response, provider=provider, model=model, include_usage=include_usage)
        self._id = "chatcmpl-gemini"
        self._started = False
        self._calls = 0

    def _event(self, data: bytes, batch: list[Chunk]) -> bool:
        return self._translate(self._decode(response_decoder, data), batch)

    def _translate(self, response: GenerateContentResponse, batch: list[Chunk]) -> bool:
        """Append the chunks for one streamed response; True once the answer is finished."""
        if response.error is not None:
            raise stream_error(response.error, self._provider)
        if response.usage_metadata is not None:
            self.usage = response.usage_metadata.canonical()
        if response.response_id:
            self._id = f"chatcmpl-{response.response_id}"
        if not self._started:
            self._started = True
            batch.append(self._chunk(ChunkDelta(role="assistant", content="")))
        if not response.candidates:
            if response.prompt_feedback is not None and response.prompt_feedback.block_reason:
                batch.append(self._chunk(ChunkDelta(), "content_filter"))
                return True
            return False
        candidate = response.candidates[0]
        for part in candidate.content.parts if candidate.content else ():
            if part.text and part.thought:
                batch.append(self._chunk(ChunkDelta(reasoning_content=part.text)))
            elif part.text:
                batch.append(self._chunk(ChunkDelta(content=part.text)))
        for call in stream_calls(candidate, self._calls):
            batch.append(self._chunk(ChunkDelta(tool_calls=[call])))
            self._calls += 1
        if candidate.finish_reason is not None:
            batch.append(self._chunk(ChunkDelta(), finish_reason(candidate.finish_reason, self._calls > 0)))
            return True
        return False
