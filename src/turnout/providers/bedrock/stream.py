"""A ConverseStream answer, translated message by message into OpenAI `chat.completion.chunk`s.

messageStart → the role chunk; contentBlockDelta text → content, reasoningContent text →
`reasoning_content`; a contentBlockStart with toolUse → a tool call (id and name), then its
toolUse `input` fragments as argument fragments; messageStop → the finish chunk. The usage arrives
after it, in `metadata`, so the stream is read to its end. An exception message fails the stream
(classified as the same exception over HTTP: throttling as the provider's 429, the model's or
Bedrock's failures as upstream errors). A stream
that ends before messageStop is truncated.
"""

from __future__ import annotations

from turnout.domain.completions import Chunk, ChunkDelta, ChunkFunction, ChunkToolCall
from turnout.providers.bedrock.errors import error_from_exception
from turnout.providers.bedrock.eventstream import EventStreamDecoder
from turnout.providers.bedrock.translate import JsonMode, finish_reason
from turnout.providers.bedrock.wire import StreamPayload, payload_decoder
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.translated_stream import EventDecoder, TranslatedStream


class BedrockStream(TranslatedStream):
    stops_at_finish = False  # the usage (`metadata`) comes after messageStop

    def __init__(
        self,
        response: UpstreamResponse,
        *,
        provider: str,
        model: str,
        chat_id: str,
        json_mode: JsonMode | None,
        include_usage: bool,
    ) -> None:
        super().__init__(response, provider=provider, model=model, include_usage=include_usage)
        self._id = chat_id
        self._json_mode = json_mode
        self._tool_index: dict[int, int] = {}  # Bedrock content block index → OpenAI tool call index
        self._json_blocks: set[int] = set()  # blocks carrying the JSON-mode answer

    def _decoder(self) -> EventDecoder:
        return EventStreamDecoder(self._provider)

    def _named_event(self, data: bytes, name: bytes | None, batch: list[Chunk]) -> bool:
        kind, _, event = (name or b"").decode().partition(":")
        if kind in ("exception", "error"):
            raise error_from_exception(event, self._decode(payload_decoder, data).message, self._provider)
        if kind != "event":
            return False
        return self._translate(event, self._decode(payload_decoder, data), batch)

    def _translate(self, event: str, p: StreamPayload, batch: list[Chunk]) -> bool:
        index = p.content_block_index or 0
        if event == "contentBlockDelta" and p.delta is not None:
            d = p.delta
            if d.text:
                batch.append(self._chunk(ChunkDelta(content=d.text)))
            elif d.tool_use is not None and d.tool_use.input:
                if index in self._json_blocks:
                    batch.append(self._chunk(ChunkDelta(content=d.tool_use.input)))
                elif (call := self._tool_index.get(index)) is not None:
                    fragment = ChunkToolCall(call, function=ChunkFunction(arguments=d.tool_use.input))
                    batch.append(self._chunk(ChunkDelta(tool_calls=[fragment])))
            elif d.reasoning_content is not None and d.reasoning_content.text:
                batch.append(self._chunk(ChunkDelta(reasoning_content=d.reasoning_content.text)))
        elif event == "contentBlockStart" and p.start is not None and p.start.tool_use is not None:
            use = p.start.tool_use
            if self._json_mode is not None and use.name == self._json_mode.tool:
                self._json_blocks.add(index)
                return False
            call = self._tool_index[index] = len(self._tool_index)
            function = ChunkFunction(name=use.name, arguments="")
            start = ChunkToolCall(call, id=use.tool_use_id, type="function", function=function)
            batch.append(self._chunk(ChunkDelta(tool_calls=[start])))
        elif event == "messageStart":
            batch.append(self._chunk(ChunkDelta(role="assistant", content="")))
        elif event == "messageStop":
            batch.append(self._chunk(ChunkDelta(), finish_reason(p.stop_reason, self._json_mode)))
            return True
        elif event == "metadata" and p.usage is not None:
            self.usage = p.usage.canonical()
        return False  # contentBlockStop, and event types added later
