"""The adapter for OpenAI's wire format, configured per deployment (OpenAI, Azure, vLLM, Groq...).

Same format in and out, so requests and answers are forwarded, not translated: the body is
re-serialised once with the target's model, the answer's bytes are passed on as they came, and
only `usage` (and, for streams, each chunk's shape) is read on the way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from turnout.config.settings import ProviderSettings, Timeouts
from turnout.domain.errors import UpstreamProtocolError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.domain.media import OPERATION, ImageRequest, SpeechRequest, TranscriptionRequest
from turnout.domain.rerank import refuse_document_limit
from turnout.providers.base import (
    ChatCall,
    ChatResult,
    EmbeddingCall,
    EmbeddingResult,
    MediaCall,
    MediaResult,
    ModerationCall,
    ModerationResult,
    RerankCall,
    RerankResult,
)
from turnout.providers.capabilities import capabilities_for
from turnout.providers.embeddings import float32_base64
from turnout.providers.http.client import Endpoint, HttpClient
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.link import LIST_TIMEOUTS, MAX_CACHED_ENDPOINTS, ProviderLink, request_headers
from turnout.providers.openai_compatible import legacy as legacy_api
from turnout.providers.openai_compatible import media, responses
from turnout.providers.openai_compatible import request as build
from turnout.providers.openai_compatible import rerank as ranking
from turnout.providers.openai_compatible.errors import parse_error_body
from turnout.providers.openai_compatible.stream import OpenAIStream
from turnout.providers.openai_compatible.wire import completion_decoder, embeddings_decoder, models_decoder
from turnout.providers.request_json import request_json
from turnout.providers.rerank import ranked_result

MAX_RESPONSE_BYTES = 256 * 1024 * 1024
RERANK_RESPONSE_BYTES = 16 * 1024 * 1024  # a ranking or a moderation: scores, never documents


class OpenAICompatibleAdapter:
    limits_document_tokens = False  # (Reranks: vLLM's and Jina's /rerank have no such limit)

    def __init__(self, settings: ProviderSettings, client: HttpClient) -> None:
        self.name = settings.name
        self.capabilities = capabilities_for(settings)
        self.settings = settings
        self.link = ProviderLink(settings, client, parse_error_body, request_headers(settings))
        self._endpoints: dict[tuple[str, str], Endpoint] = {}

    def _endpoint(self, operation: str, model: str) -> Endpoint:
        """`operation` is `chat/completions`, `responses`, `embeddings` or `models`; Azure addresses a
        deployment (the target's model) in the URL, everyone else names the model in the body."""
        per_deployment = self.settings.kind.azure_paths and self.settings.api_version != "v1"
        key = (operation, model if per_deployment else "")
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if len(self._endpoints) >= MAX_CACHED_ENDPOINTS:
                self._endpoints.clear()
            method = "GET" if operation == "models" else "POST"
            endpoint = self.link.endpoint(method, self._url(operation, model))
            self._endpoints[key] = endpoint
        return endpoint

    def _url(self, operation: str, model: str) -> str:
        s = self.settings
        if s.kind.azure_paths and s.api_version == "v1":
            return f"{s.base_url}/openai/v1/{operation}"
        if s.kind.azure_paths:
            where = "models" if operation == "models" else f"deployments/{quote(model, safe='')}/{operation}"
            return f"{s.base_url}/openai/{where}?api-version={s.api_version}"
        return f"{s.base_url}/{operation}"

    async def _send(self, operation: str, model: str, body: bytes, timeouts: Timeouts) -> UpstreamResponse:
        return await self.link.send(self._endpoint(operation, model), body, timeouts)

    # ------------------------------------------------------------------ chat

    def _native(self, call: ChatCall) -> bytes | None:
        """The client's own Responses request for this deployment's model, if it came as one and
        this provider has the Responses API."""
        native = call.native
        if native is None or native.wire != "responses" or self.capabilities.native_wire != "responses":
            return None
        return request_json({**native.body, "model": call.model})

    def _legacy(self, call: ChatCall, *, stream: bool) -> bytes | None:
        """The client's own legacy Completions request for this deployment's model, if it came as
        one and this provider serves that API (a stream asks for its usage, for the ledger)."""
        native = call.native
        if native is None or native.wire != "completions" or not self.capabilities.legacy_completions:
            return None
        body = {**native.body, "model": call.model}
        if stream and self.settings.stream_usage:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return request_json(body)

    async def complete(self, call: ChatCall) -> ChatResult:
        legacy = None if call.native is None else self._legacy(call, stream=False)
        if legacy is not None:
            response = await self._send("completions", call.model, legacy, call.timeouts)
            data = await self.link.answer(response, MAX_RESPONSE_BYTES)
            try:
                usage = legacy_api.usage_of(data)
            except DECODE_ERRORS:
                raise UpstreamProtocolError(
                    f"The provider '{self.name}' answered with something that is not a text completion."
                ) from None
            return ChatResult(usage, native=data)
        native = None if call.native is None else self._native(call)  # chat: one attribute read
        if native is not None:
            response = await self._send("responses", call.model, native, call.timeouts)
            data = await self.link.answer(response, MAX_RESPONSE_BYTES)
            try:
                usage = responses.usage_of(data)
            except DECODE_ERRORS:
                raise UpstreamProtocolError(
                    f"The provider '{self.name}' answered with something that is not a response."
                ) from None
            return ChatResult(usage, native=data)
        body = build.chat_body(
            call.body, call.model, self.settings, stream=False, policy=call.unsupported_params
        )
        response = await self._send("chat/completions", call.model, body, call.timeouts)
        data = await self.link.answer(response, MAX_RESPONSE_BYTES)
        peek = self.link.decode(
            completion_decoder, data, "answered with something that is not a chat completion"
        )
        usage = peek.usage.canonical(peek.service_tier) if peek.usage else None
        return ChatResult(usage, raw=data)

    async def stream(
        self, call: ChatCall
    ) -> OpenAIStream | responses.NativeResponsesStream | legacy_api.NativeLegacyStream:
        legacy = None if call.native is None else self._legacy(call, stream=True)
        if legacy is not None:
            response = await self._send("completions", call.model, legacy, call.timeouts)
            options = call.native.body.get("stream_options") if call.native is not None else None
            wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            return legacy_api.NativeLegacyStream(
                self.link.event_stream(response),
                provider=self.name,
                model=call.model,
                client_wants_usage=wants_usage,
            )
        native = None if call.native is None else self._native(call)  # chat: one attribute read
        if native is not None:
            response = await self._send("responses", call.model, native, call.timeouts)
            return responses.NativeResponsesStream(
                self.link.event_stream(response), provider=self.name, model=call.model
            )
        body = build.chat_body(
            call.body, call.model, self.settings, stream=True, policy=call.unsupported_params
        )
        response = await self._send("chat/completions", call.model, body, call.timeouts)
        return OpenAIStream(
            self.link.event_stream(response),
            provider=self.name,
            drop_usage_chunk=not call.client_wants_usage and self.settings.stream_usage,
        )

    # ------------------------------------------------------------------ embeddings

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        wants_base64 = call.request.encoding_format == "base64"
        convert = wants_base64 and not self.settings.embeddings_base64
        body = build.embeddings_body(
            call.body, call.model, self.settings, encoding_format="float" if convert else None
        )
        response = await self._send("embeddings", call.model, body, call.timeouts)
        data = await response.read(MAX_RESPONSE_BYTES)
        peek = self.link.decode(
            embeddings_decoder, data, "answered with something that is not an embeddings list"
        )
        indices = [item.index for item in peek.data]
        if convert or indices != sorted(indices):
            data = _reshape_embeddings(data, to_base64=convert)
        return EmbeddingResult(body=data, usage=peek.usage.canonical() if peek.usage else None)

    # ------------------------------------------------------------------ images and audio

    async def media(self, call: MediaCall) -> MediaResult:
        """An image, transcription or speech request, forwarded; its answer passed on as it came
        (speech: streamed through), with what it is billed for (providers/openai_compatible/media.py)."""
        request, extra = call.request, b""
        if isinstance(request, TranscriptionRequest):
            body, kind = media.transcription_form(request, call.model)
            extra = f"content-type: {kind}\r\n".encode()
        else:
            body = media.image_body(call) if isinstance(request, ImageRequest) else media.speech_body(call)
            extra = b"content-type: application/json\r\n"
        endpoint = self._media_endpoint(OPERATION[call.api], call.model)
        response = await self.link.send(endpoint, body, call.timeouts, extra_headers=extra)
        if isinstance(request, SpeechRequest):
            kind = media.content_type(response, "application/octet-stream")
            chunks = response.iter_chunks()
            return MediaResult(media.speech_usage(request), kind, chunks=chunks, release=response.release)
        data = await self.link.answer(response, media.MAX_ANSWER_BYTES)
        if isinstance(request, ImageRequest):
            return MediaResult(media.image_usage(request, data, self.name), "application/json", data)
        data, kind, usage = media.transcription_answer(request, data, self.name)
        return MediaResult(usage, kind, data)

    def _media_endpoint(self, operation: str, model: str) -> Endpoint:
        """As `_endpoint`, without a fixed content type (a form's boundary is per request) and
        accepting any (speech answers in audio)."""
        per_deployment = self.settings.kind.azure_paths and self.settings.api_version != "v1"
        key = (operation, model if per_deployment else "")
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if len(self._endpoints) >= MAX_CACHED_ENDPOINTS:
                self._endpoints.clear()
            headers = [(n, v) for n, v in self.link.headers if n not in ("content-type", "accept")]
            endpoint = self.link.endpoint("POST", self._url(operation, model), [*headers, ("accept", "*/*")])
            self._endpoints[key] = endpoint
        return endpoint

    # ------------------------------------------------------------------ rerank, moderations

    async def rerank(self, call: RerankCall) -> RerankResult:
        """vLLM's and Jina's `POST {base}/rerank` (module turnout.providers.openai_compatible.rerank)."""
        refuse_document_limit(call.request, self.name)
        body = ranking.rerank_body(call.request, call.model)
        response = await self._send("rerank", call.model, body, call.timeouts)
        data = await response.read(RERANK_RESPONSE_BYTES)
        answer = self.link.decode(
            ranking.rerank_decoder, data, "answered with something that is not a ranking"
        )
        tokens = answer.tokens
        return ranked_result(
            call,
            self.name,
            answer.ranking(),
            answer_id=answer.id or call.request_id,
            usage=answer.usage_for(call.request, tokens),
            tokens=tokens,
        )

    async def moderate(self, call: ModerationCall) -> ModerationResult:
        """OpenAI's `POST {base}/moderations`, passed on with the deployment's model."""
        body = ranking.moderation_body(call.body, call.model)
        response = await self._send("moderations", call.model, body, call.timeouts)
        data = await response.read(RERANK_RESPONSE_BYTES)
        self.link.decode(ranking.moderation_decoder, data, "answered with something that is not a moderation")
        return ModerationResult(data)

    # ------------------------------------------------------------------ models

    async def list_models(self) -> list[str]:
        if self.settings.kind.azure_paths and self.settings.api_version != "v1":
            return []  # dated Azure versions list base models, not the deployments requests name
        response = await self._send("models", "", b"", LIST_TIMEOUTS)
        data = await response.read(8 * 1024 * 1024)
        return [m.id for m in self.link.decode(models_decoder, data, "sent a malformed model list").data]

    async def aclose(self) -> None:
        self._endpoints.clear()


def _reshape_embeddings(data: bytes, *, to_base64: bool) -> bytes:
    """Put embeddings in input order and, for upstreams that only return floats, encode them as
    the little-endian float32 base64 that OpenAI returns for `encoding_format: base64`."""
    doc: dict[str, Any] = orjson.loads(data)
    items = sorted(doc.get("data", []), key=lambda item: item.get("index", 0))
    if to_base64:
        for item in items:
            vector = item.get("embedding")
            if isinstance(vector, list):
                item["embedding"] = float32_base64(vector)
    doc["data"] = items
    return orjson.dumps(doc)
