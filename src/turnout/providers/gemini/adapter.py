"""The adapter for Google's Gemini API (the Developer API at generativelanguage.googleapis.com;
Vertex AI's deployment of it is `vertex.py`). The key goes in `x-goog-api-key`; the model is part
of each URL (`models/<model>:generateContent`)."""

from __future__ import annotations

from urllib.parse import quote

import orjson

from turnout.config.settings import ProviderSettings, Timeouts
from turnout.domain.chat import estimated_text_tokens
from turnout.domain.usage import Usage
from turnout.providers.base import ChatCall, ChatResult, EmbeddingCall, EmbeddingResult
from turnout.providers.capabilities import capabilities_for
from turnout.providers.embeddings import embeddings_list, texts_of
from turnout.providers.gemini import translate
from turnout.providers.gemini.errors import parse_error_body
from turnout.providers.gemini.stream import GeminiStream
from turnout.providers.gemini.wire import embed_decoder, models_decoder, response_decoder
from turnout.providers.http.client import Endpoint, HttpClient
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.link import LIST_TIMEOUTS, MAX_CACHED_ENDPOINTS, ProviderLink, request_headers
from turnout.providers.parameters import apply_parameter_policy
from turnout.providers.request_json import request_json

MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class GeminiAdapter:
    def __init__(self, settings: ProviderSettings, client: HttpClient) -> None:
        self.name = settings.name
        self.settings = settings
        self.capabilities = capabilities_for(settings)
        self.link = ProviderLink(settings, client, parse_error_body, request_headers(settings))
        self._endpoints: dict[tuple[str, str], Endpoint] = {}

    def _url(self, model: str, method: str) -> str:
        base = self.settings.base_url
        if method == "list":
            return f"{base}/models?pageSize=1000"
        return f"{base}/models/{quote(model, safe='')}:{method}"

    def _endpoint(self, model: str, method: str) -> Endpoint:
        key = (model, method)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if len(self._endpoints) >= MAX_CACHED_ENDPOINTS:
                self._endpoints.clear()
            endpoint = self.link.endpoint("GET" if method == "list" else "POST", self._url(model, method))
            self._endpoints[key] = endpoint
        return endpoint

    async def _send(self, endpoint: Endpoint, body: bytes, timeouts: Timeouts) -> UpstreamResponse:
        """Send with the provider's static headers (a deployment may add per-request ones)."""
        return await self.link.send(endpoint, body, timeouts)

    def _body(self, call: ChatCall) -> bytes:
        apply_parameter_policy(
            dict(call.body), self.settings, call.unsupported_params
        )  # refuses what Gemini lacks
        return request_json(translate.request_body(call.request))

    async def complete(self, call: ChatCall) -> ChatResult:
        endpoint = self._endpoint(call.model, "generateContent")
        response = await self._send(endpoint, self._body(call), call.timeouts)
        data = await self.link.answer(response, MAX_RESPONSE_BYTES)
        answer = self.link.decode(
            response_decoder, data, "answered with something that is not a Gemini response"
        )
        out = translate.completion(answer, model=call.model)
        usage = answer.usage_metadata.canonical() if answer.usage_metadata else None
        return ChatResult(usage, completion=out)

    async def stream(self, call: ChatCall) -> GeminiStream:
        endpoint = self._endpoint(call.model, "streamGenerateContent?alt=sse")
        response = await self._send(endpoint, self._body(call), call.timeouts)
        return GeminiStream(
            self.link.event_stream(response),
            provider=self.name,
            model=call.model,
            include_usage=call.client_wants_usage,
        )

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        texts = texts_of(call.request, "Gemini")
        requests = []
        for text in texts:
            entry: dict[str, object] = {
                "model": f"models/{call.model}",
                "content": {"parts": [{"text": text}]},
            }
            if call.request.dimensions is not None:
                entry["outputDimensionality"] = call.request.dimensions
            requests.append(entry)
        endpoint = self._endpoint(call.model, "batchEmbedContents")
        response = await self._send(endpoint, orjson.dumps({"requests": requests}), call.timeouts)
        data = await response.read(MAX_RESPONSE_BYTES)
        embeddings = self.link.decode(embed_decoder, data, "sent malformed embeddings").embeddings
        tokens = estimated_text_tokens(texts)  # Gemini does not count them: estimated
        out = embeddings_list(
            [e.values for e in embeddings],
            model=call.model,
            tokens=tokens,
            as_base64=call.request.encoding_format == "base64",
        )
        return EmbeddingResult(body=orjson.dumps(out), usage=Usage(input_tokens=tokens, estimated=True))

    async def list_models(self) -> list[str]:
        response = await self._send(self._endpoint("", "list"), b"", LIST_TIMEOUTS)
        data = await response.read(8 * 1024 * 1024)
        models = self.link.decode(models_decoder, data, "sent a malformed model list").models
        return [m.name.removeprefix("models/") for m in models]

    async def aclose(self) -> None:
        self._endpoints.clear()
