"""The adapter for Cohere's v2 API: `POST /v2/chat` (plain and streamed), `POST /v2/embed` and
`POST /v2/rerank`, with a Bearer key. The provider's base URL is `https://api.cohere.com/v2`."""

from __future__ import annotations

import orjson

from turnout.config.settings import ProviderSettings
from turnout.domain.usage import Usage
from turnout.providers.base import (
    ChatCall,
    ChatResult,
    EmbeddingCall,
    EmbeddingResult,
    RerankCall,
    RerankResult,
)
from turnout.providers.capabilities import capabilities_for
from turnout.providers.cohere import rerank as ranking
from turnout.providers.cohere import translate
from turnout.providers.cohere.errors import parse_error_body
from turnout.providers.cohere.stream import CohereStream
from turnout.providers.cohere.wire import embed_decoder, models_decoder, response_decoder
from turnout.providers.embeddings import embeddings_list, texts_of
from turnout.providers.http.client import HttpClient
from turnout.providers.link import LIST_TIMEOUTS, ProviderLink, request_headers
from turnout.providers.parameters import apply_parameter_policy
from turnout.providers.request_json import request_json
from turnout.providers.rerank import ranked_result, rerank_decoder

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
RERANK_RESPONSE_BYTES = 16 * 1024 * 1024  # scores, never documents


class CohereAdapter:
    limits_document_tokens = True  # (Reranks: `max_tokens_per_doc` is Cohere's own)

    def __init__(self, settings: ProviderSettings, client: HttpClient) -> None:
        self.name = settings.name
        self.settings = settings
        self.capabilities = capabilities_for(settings)
        self.link = ProviderLink(settings, client, parse_error_body, request_headers(settings))
        base = settings.base_url
        self._chat = self.link.endpoint("POST", f"{base}/chat")
        self._embed = self.link.endpoint("POST", f"{base}/embed")
        self._rerank = self.link.endpoint("POST", f"{base}/rerank")
        # the model list lives under v1
        self._models = self.link.endpoint("GET", base.removesuffix("/v2") + "/v1/models?page_size=1000")

    def _body(self, call: ChatCall, *, stream: bool) -> bytes:
        body = dict(call.body)
        apply_parameter_policy(body, self.settings, call.unsupported_params)  # refuses what Cohere lacks
        return request_json(translate.request_body(call.request, body, call.model, stream=stream))

    async def complete(self, call: ChatCall) -> ChatResult:
        response = await self.link.send(self._chat, self._body(call, stream=False), call.timeouts)
        data = await self.link.answer(response, MAX_RESPONSE_BYTES)
        answer = self.link.decode(
            response_decoder, data, "answered with something that is not a Cohere chat response"
        )
        out = translate.completion(answer, model=call.model)
        usage = answer.usage.canonical() if answer.usage else None
        return ChatResult(usage, completion=out)

    async def stream(self, call: ChatCall) -> CohereStream:
        response = await self.link.send(self._chat, self._body(call, stream=True), call.timeouts)
        return CohereStream(
            self.link.event_stream(response),
            provider=self.name,
            model=call.model,
            include_usage=call.client_wants_usage,
        )

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        request: dict[str, object] = {
            "model": call.model,
            "texts": texts_of(call.request, "Cohere"),
            "input_type": "search_document",
            "embedding_types": ["float"],
        }
        if call.request.dimensions is not None:
            request["output_dimension"] = call.request.dimensions
        response = await self.link.send(self._embed, orjson.dumps(request), call.timeouts)
        data = await response.read(MAX_RESPONSE_BYTES)
        answer = self.link.decode(embed_decoder, data, "sent malformed embeddings")
        billed = answer.meta.billed_units if answer.meta else None
        tokens = int(billed.input_tokens or 0) if billed else 0
        out = embeddings_list(
            answer.embeddings.floats,
            model=call.model,
            tokens=tokens,
            as_base64=call.request.encoding_format == "base64",
        )
        return EmbeddingResult(body=orjson.dumps(out), usage=Usage(input_tokens=tokens))

    async def rerank(self, call: RerankCall) -> RerankResult:
        body = ranking.rerank_body(call.request, call.model)
        response = await self.link.send(self._rerank, body, call.timeouts)
        data = await response.read(RERANK_RESPONSE_BYTES)
        answer = self.link.decode(rerank_decoder, data, "sent a malformed ranking")
        usage = answer.usage_for(call.request)
        return ranked_result(
            call, self.name, answer.ranking(), answer_id=answer.id or call.request_id, usage=usage
        )

    async def list_models(self) -> list[str]:
        response = await self.link.send(self._models, b"", LIST_TIMEOUTS)
        data = await response.read(8 * 1024 * 1024)
        return [m.name for m in self.link.decode(models_decoder, data, "sent a malformed model list").models]

    async def aclose(self) -> None:
        return None
