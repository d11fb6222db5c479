"""`POST /v1/images/generations`, `/v1/audio/transcriptions` and `/v1/audio/speech`: the request
read (JSON, or a multipart form within strict bounds: domain/multipart.py), the answer written as
the provider gave it: JSON, text or subtitles, or audio streamed through chunk by chunk."""

from __future__ import annotations

import asyncio
from typing import Any

from turnout.domain.media import (
    ImageRequest,
    MediaApi,
    SpeechRequest,
    TranscriptionRequest,
    parse_image_request,
    parse_speech_request,
    transcription_request,
)
from turnout.domain.multipart import form_boundary, parse_form
from turnout.providers.base import MediaResult
from turnout.routing.values import Served
from turnout.server.exchange import ClientGone, Exchange, WrappedExchange

# A form larger than this is parsed in a worker thread (one this size takes about 0.5 ms of the
# event loop: docs/architecture.md, "Multipart forms")
THREADED_FORM_BYTES = 1024 * 1024
# OpenAI takes audio files of up to 25 MB; a form is that and its few fields
MAX_FORM_BYTES = 25 * 1024 * 1024 + 64 * 1024


class MediaExchange(WrappedExchange):
    """The pipeline's MediaInbound and MediaResponder for one image or audio request."""

    def __init__(self, x: Exchange, api: MediaApi) -> None:
        super().__init__(x)
        self.api = api

    async def media_request(
        self,
    ) -> tuple[ImageRequest | TranscriptionRequest | SpeechRequest, dict[str, Any]]:
        if self.api == "transcriptions":
            return transcription_request(await self._form()), {}
        body = await self.x.json()
        if self.api == "images":
            return parse_image_request(body), body
        return parse_speech_request(body), body

    async def _form(self) -> Any:
        x = self.x
        boundary = form_boundary(x.header(b"content-type"))  # (415 or 400 before the body is read)
        limit = x.max_body
        x.max_body = min(limit, MAX_FORM_BYTES)
        try:
            body = await x.body(json_only=False)
        finally:
            x.max_body = limit
        if len(body) > THREADED_FORM_BYTES:
            return await asyncio.to_thread(parse_form, body, boundary)
        return parse_form(body, boundary)

    async def answer_media(self, result: MediaResult, served: Served) -> None:
        x = self.x
        x.started = True
        headers = [(b"content-type", result.content_type.encode("latin-1")), *x.response_headers(served)]
        await x.send({"type": "http.response.start", "status": 200, "headers": headers})
        chunks = result.chunks
        if chunks is None:
            await x.send({"type": "http.response.body", "body": result.body})
            return
        try:
            async for chunk in chunks:
                await x.send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:
            raise ClientGone from None
        finally:
            await result.aclose()  # the upstream connection released, or dropped mid-answer
        await x.send({"type": "http.response.body", "body": b""})
