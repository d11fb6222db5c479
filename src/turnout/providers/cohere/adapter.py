"""The adapter for Cohere's v2 API: `POST /v2/chat` (plain and streamed) and `POST /v2/embed`,
with a Bearer key. The provider's base URL is `https://api.cohere.com/v2`."""

from __future__ import annotations

import base64
import struct

import msgspec
import orjson

from turnout.config.settings import ProviderSettings, Timeouts
from turnout.domain.errors import InvalidRequest, TurnoutError, UpstreamProtocolError
from turnout.domain.usage import Usage
from turnout.providers.base import ChatCall, ChatResult, EmbeddingCall, EmbeddingResult
from turnout.providers.capabilities import capabilities_for
from turnout.providers.cohere import translate
from turnout.providers.cohere.errors import parse_error_body
from turnout.providers.cohere.stream import CohereStream
from turnout.providers.cohere.wire import embed_decoder, models_decoder, response_decoder
from turnout.providers.http.client import Endpoint, HttpClient, Proxy
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.parameters import apply_parameter_policy
from turnout.providers.upstream_errors import error_from_response

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
LIST_TIMEOUTS = Timeouts(connect=5.0, first_byte=10.0, idle=10.0, total=15.0)


class CohereAdapter:
    def __init__(self, settings: ProviderSettings, client: HttpClient) -> None:
        self.name = settings.name
        self.settings = settings
        self.capabilities = capabilities_for(settings)
        self.client = client
        headers = [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("user-agent", "turnout/0.1"),
        ]
        if settings.api_key is not None:
            headers.append(("authorization", f"Bearer {settings.api_key.reveal()}"))
        for name, value in settings.headers:
            headers.append((name, value if isinstance(value, str) else value.reveal()))
        p = settings.proxy
        proxy = (
            None
            if p is None
            else Proxy(p.host, p.port, p.authorization.reveal() if p.authorization else None)
        )
        ca = str(settings.tls_ca_file) if settings.tls_ca_file else None
        base = settings.base_url
        self._chat = Endpoint("POST", f"{base}/chat", headers, proxy=proxy, ca_file=ca)
        self._embed = Endpoint("POST", f"{base}/embed", headers, proxy=proxy, ca_file=ca)
        # the model list lives under v1
        models_url = base.removesuffix("/v2") + "/v1/models?page_size=1000"
        self._models = Endpoint("GET", models_url, headers, proxy=proxy, ca_file=ca)

    async def _send(self, endpoint: Endpoint, body: bytes, timeouts: Timeouts) -> UpstreamResponse:
        response = await self.client.send(endpoint, body, timeouts)
        if response.status >= 300:
            raise await self._error(response)
        return response

    async def _error(self, response: UpstreamResponse) -> TurnoutError:
        return await error_from_response(response, parse_error_body, provider=self.name)

    def _body(self, call: ChatCall, *, stream: bool) -> bytes:
        body = dict(call.body)
        apply_parameter_policy(body, self.settings)  # refuses what Cohere lacks
        return orjson.dumps(translate.request_body(call.request, body, call.model, stream=stream))

    async def complete(self, call: ChatCall) -> ChatResult:
        response = await self._send(self._chat, self._body(call, stream=False), call.timeouts)
        data = await response.read(MAX_RESPONSE_BYTES)
        try:
            answer = response_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamProtocolError(
                f"The provider '{self.name}' answered with something that is not a Cohere chat response."
            ) from None
        out = translate.completion(answer, model=call.model)
        return ChatResult(
            body=orjson.dumps(out), usage=answer.usage.canonical() if answer.usage else None, _data=out
        )

    async def stream(self, call: ChatCall) -> CohereStream:
        response = await self._send(self._chat, self._body(call, stream=True), call.timeouts)
        content_type = response.header(b"content-type") or b""
        if not content_type.startswith(b"text/event-stream"):
            response.release()
            raise UpstreamProtocolError(
                f"The provider '{self.name}' did not answer the streaming request with an event stream."
            )
        return CohereStream(
            response, provider=self.name, model=call.model, include_usage=call.client_wants_usage
        )

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        texts = [call.request.input] if isinstance(call.request.input, str) else call.request.input
        if not all(isinstance(t, str) for t in texts):
            raise InvalidRequest(
                "Cohere embeds text only: send 'input' as strings, not token ids.", param="input"
            )
        request: dict[str, object] = {
            "model": call.model,
            "texts": texts,
            "input_type": "search_document",
            "embedding_types": ["float"],
        }
        if call.request.dimensions is not None:
            request["output_dimension"] = call.request.dimensions
        response = await self._send(self._embed, orjson.dumps(request), call.timeouts)
        data = await response.read(MAX_RESPONSE_BYTES)
        try:
            answer = embed_decoder.decode(data)
            vectors = answer.embeddings["float"]
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
            raise UpstreamProtocolError(f"The provider '{self.name}' sent malformed embeddings.") from None
        as_base64 = call.request.encoding_format == "base64"
        items = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if as_base64 else v,
            }
            for i, v in enumerate(vectors)
        ]
        billed = ((answer.meta or {}).get("billed_units") or {}).get("input_tokens") or 0
        tokens = int(billed)
        out = {
            "object": "list",
            "data": items,
            "model": call.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return EmbeddingResult(body=orjson.dumps(out), usage=Usage(input_tokens=tokens))

    async def list_models(self) -> list[str]:
        response = await self._send(self._models, b"", LIST_TIMEOUTS)
        data = await response.read(8 * 1024 * 1024)
        try:
            return [m.name for m in models_decoder.decode(data).models]
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamProtocolError(f"The provider '{self.name}' sent a malformed model list.") from None

    async def aclose(self) -> None:
        return None
