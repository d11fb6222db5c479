"""Vertex AI's deployment of the Gemini API: the same requests and answers as the Developer API,
from `{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/
google/models/{model}:generateContent` (the `global` location from the bare host), with a service
account's access token in each request's `Authorization`. In express mode an API key in
`x-goog-api-key` reaches the global `publishers/google/models/{model}` instead.

Embeddings use the text-embedding `:predict` method Vertex AI documents for gemini-embedding-001,
text-embedding-005 and text-multilingual-embedding-002 (the usage is the token counts it returns).
"""

from __future__ import annotations

from urllib.parse import quote

import orjson

from turnout.config.settings import ProviderSettings, Timeouts
from turnout.domain.chat import estimated_text_tokens
from turnout.domain.errors import UpstreamAuthError, UpstreamProtocolError
from turnout.domain.usage import Usage
from turnout.providers.base import EmbeddingCall, EmbeddingResult
from turnout.providers.embeddings import embeddings_list, in_order, texts_of
from turnout.providers.gemini.access_tokens import REFRESH_MARGIN, ServiceAccountTokens
from turnout.providers.gemini.adapter import MAX_RESPONSE_BYTES, GeminiAdapter
from turnout.providers.gemini.wire import predict_decoder
from turnout.providers.http.client import Endpoint, HttpClient
from turnout.providers.http.connection import UpstreamResponse

MAX_INSTANCES = 250  # texts per `:predict` call
SINGLE_INSTANCE_PREFIX = "gemini-embedding"  # these models take one text per call
PARALLEL_PREDICTS = 8  # calls in flight at once for one embeddings request


class VertexAdapter(GeminiAdapter):
    def __init__(
        self, settings: ProviderSettings, client: HttpClient, *, refresh_margin: float = REFRESH_MARGIN
    ) -> None:
        super().__init__(settings, client)
        vertex = settings.vertex
        assert vertex is not None, "a vertex provider's settings carry its vertex block"
        base = settings.base_url
        if vertex.project is None:  # express mode
            self._models = f"{base}/publishers/google/models"
        else:
            where = f"projects/{quote(vertex.project, safe=':')}/locations/{quote(vertex.location, safe='')}"
            self._models = f"{base}/{where}/publishers/google/models"
        self._tokens = (
            None
            if vertex.credentials_file is None
            else ServiceAccountTokens(self.link, vertex.credentials_file, refresh_margin=refresh_margin)
        )

    def _url(self, model: str, method: str) -> str:
        return f"{self._models}/{quote(model, safe='')}:{method}"

    async def _send(self, endpoint: Endpoint, body: bytes, timeouts: Timeouts) -> UpstreamResponse:
        if self._tokens is None:
            return await self.link.send(endpoint, body, timeouts)
        header = await self._tokens.header()
        try:
            return await self.link.send(endpoint, body, timeouts, extra_headers=header)
        except UpstreamAuthError:
            self._tokens.invalidate()  # revoked or expired early: the next request gets a new one
            raise

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        texts = texts_of(call.request, "Vertex AI")
        size = 1 if call.model.startswith(SINGLE_INSTANCE_PREFIX) else MAX_INSTANCES
        parameters = (
            {} if call.request.dimensions is None else {"outputDimensionality": call.request.dimensions}
        )
        endpoint = self._endpoint(call.model, "predict")

        async def predict(batch: list[str]) -> tuple[list[list[float]], int | None]:
            return await self._predict(endpoint, batch, parameters, call.timeouts)

        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        results = await in_order(batches, predict, PARALLEL_PREDICTS)
        vectors = [v for batch_vectors, _ in results for v in batch_vectors]
        counts = [count for _, count in results]
        estimated = any(c is None for c in counts)
        tokens = estimated_text_tokens(texts) if estimated else sum(c or 0 for c in counts)
        out = embeddings_list(
            vectors, model=call.model, tokens=tokens, as_base64=call.request.encoding_format == "base64"
        )
        usage = Usage(input_tokens=tokens, estimated=estimated)
        return EmbeddingResult(body=orjson.dumps(out), usage=usage)

    async def _predict(
        self, endpoint: Endpoint, texts: list[str], parameters: dict[str, int], timeouts: Timeouts
    ) -> tuple[list[list[float]], int | None]:
        """One `:predict` call: its vectors, in order, and the tokens it counted (None if not all)."""
        body: dict[str, object] = {"instances": [{"content": t} for t in texts]}
        if parameters:
            body["parameters"] = parameters
        response = await self._send(endpoint, orjson.dumps(body), timeouts)
        data = await response.read(MAX_RESPONSE_BYTES)
        predictions = self.link.decode(predict_decoder, data, "sent malformed embeddings").predictions
        if len(predictions) != len(texts):
            raise UpstreamProtocolError(
                f"The provider '{self.name}' sent {len(predictions)} embeddings for {len(texts)} inputs."
            )
        counts = [p.embeddings.statistics.tokens if p.embeddings.statistics else None for p in predictions]
        total = None if any(c is None for c in counts) else sum(c or 0 for c in counts)
        return [p.embeddings.values for p in predictions], total

    async def list_models(self) -> list[str]:
        """None: Vertex AI lists Google's models only in v1beta1's Model Garden, every publisher
        model at once rather than what this project can call, so a wildcard alias on Vertex is used
        by name and not enumerated. With a service account, getting a token at least shows that
        its credentials still work (what an active health check asks)."""
        if self._tokens is not None:
            await self._tokens.header()
        return []

    async def aclose(self) -> None:
        if self._tokens is not None:
            await self._tokens.aclose()
        await super().aclose()
