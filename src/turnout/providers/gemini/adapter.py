"""The adapter for Google's Gemini API (the Developer API at generativelanguage.googleapis.com;
Vertex AI's endpoints are not supported yet). The key goes in `x-goog-api-key`; the model is part
of each URL (`models/<model>:generateContent`)."""

from __future__ import annotations

import base64
import struct
from urllib.parse import quote

import msgspec
import orjson

from turnout.config.settings import ProviderSettings, Timeouts
from turnout.domain.chat import CHARS_PER_TOKEN
from turnout.domain.errors import InvalidRequest, TurnoutError, UpstreamProtocolError
from turnout.domain.usage import Usage
from turnout.providers.base import ChatCall, ChatResult, EmbeddingCall, EmbeddingResult
from turnout.providers.capabilities import capabilities_for
from turnout.providers.gemini import translate
from turnout.providers.gemini.errors import parse_error_body
from turnout.providers.gemini.stream import GeminiStream
from turnout.providers.gemini.wire import embed_decoder, models_decoder, response_decoder
from turnout.providers.http.client import Endpoint, HttpClient, Proxy
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.parameters import apply_parameter_policy
from turnout.providers.upstream_errors import error_from_response

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
LIST_TIMEOUTS = Timeouts(connect=5.0, first_byte=10.0, idle=10.0, total=15.0)


class GeminiAdapter:
    def __init__(self, settings: ProviderSettings, client: HttpClient) -> None:
        self.name = settings.name
        self.settings = settings
        self.capabilities = capabilities_for(settings)
        self.client = client
        self._headers = [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("user-agent", "turnout/0.1"),
        ]
        if settings.api_key is not None:
            self._headers.append(("x-goog-api-key", settings.api_key.reveal()))
        for name, value in settings.headers:
            self._headers.append((name, value if isinstance(value, str) else value.reveal()))
        proxy = settings.proxy
        self._proxy = (
            None
            if proxy is None
            else Proxy(proxy.host, proxy.port, proxy.authorization.reveal() if proxy.authorization else None)
        )
        self._ca_file = str(settings.tls_ca_file) if settings.tls_ca_file else None
        self._endpoints: dict[tuple[str, str], Endpoint] = {}

    def _endpoint(self, model: str, method: str) -> Endpoint:
        key = (model, method)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            base = self.settings.base_url
            if method == "list":
                url, verb = f"{base}/models?pageSize=1000", "GET"
            else:
                url, verb = f"{base}/models/{quote(model, safe='')}:{method}", "POST"
            endpoint = Endpoint(verb, url, self._headers, proxy=self._proxy, ca_file=self._ca_file)
            self._endpoints[key] = endpoint
        return endpoint

    async def _send(self, endpoint: Endpoint, body: bytes, timeouts: Timeouts) -> UpstreamResponse:
        response = await self.client.send(endpoint, body, timeouts)
        if response.status >= 300:
            raise await self._error(response)
        return response

    async def _error(self, response: UpstreamResponse) -> TurnoutError:
        return await error_from_response(response, parse_error_body, provider=self.name)

    def _body(self, call: ChatCall) -> bytes:
        apply_parameter_policy(dict(call.body), self.settings)  # refuses what Gemini lacks
        return orjson.dumps(translate.request_body(call.request))

    async def complete(self, call: ChatCall) -> ChatResult:
        response = await self._send(
            self._endpoint(call.model, "generateContent"), self._body(call), call.timeouts
        )
        data = await response.read(MAX_RESPONSE_BYTES)
        try:
            answer = response_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamProtocolError(
                f"The provider '{self.name}' answered with something that is not a Gemini response."
            ) from None
        out = translate.completion(answer, model=call.model)
        usage = answer.usage_metadata.canonical() if answer.usage_metadata else None
        return ChatResult(body=orjson.dumps(out), usage=usage, _data=out)

    async def stream(self, call: ChatCall) -> GeminiStream:
        endpoint = self._endpoint(call.model, "streamGenerateContent?alt=sse")
        response = await self._send(endpoint, self._body(call), call.timeouts)
        content_type = response.header(b"content-type") or b""
        if not content_type.startswith(b"text/event-stream"):
            response.release()
            raise UpstreamProtocolError(
                f"The provider '{self.name}' did not answer the streaming request with an event stream."
            )
        return GeminiStream(
            response, provider=self.name, model=call.model, include_usage=call.client_wants_usage
        )

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        texts = [call.request.input] if isinstance(call.request.input, str) else call.request.input
        if not all(isinstance(t, str) for t in texts):
            raise InvalidRequest(
                "Gemini embeds text only: send 'input' as strings, not token ids.", param="input"
            )
        requests = []
        for text in texts:
            entry: dict[str, object] = {
                "model": f"models/{call.model}",
                "content": {"parts": [{"text": text}]},
            }
            if call.request.dimensions is not None:
                entry["outputDimensionality"] = call.request.dimensions
            requests.append(entry)
        body = orjson.dumps({"requests": requests})
        response = await self._send(self._endpoint(call.model, "batchEmbedContents"), body, call.timeouts)
        data = await response.read(MAX_RESPONSE_BYTES)
        try:
            embeddings = embed_decoder.decode(data).embeddings
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamProtocolError(f"The provider '{self.name}' sent malformed embeddings.") from None
        as_base64 = call.request.encoding_format == "base64"
        items = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(struct.pack(f"<{len(e.values)}f", *e.values)).decode()
                if as_base64
                else e.values,
            }
            for i, e in enumerate(embeddings)
        ]
        tokens = sum(len(t) for t in texts) // CHARS_PER_TOKEN  # Gemini does not count them: estimated
        out = {
            "object": "list",
            "data": items,
            "model": call.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return EmbeddingResult(body=orjson.dumps(out), usage=Usage(input_tokens=tokens, estimated=True))

    async def list_models(self) -> list[str]:
        response = await self._send(self._endpoint("", "list"), b"", LIST_TIMEOUTS)
        data = await response.read(8 * 1024 * 1024)
        try:
            models = models_decoder.decode(data).models
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamProtocolError(f"The provider '{self.name}' sent a malformed model list.") from None
        return [m.name.removeprefix("models/") for m in models]

    async def aclose(self) -> None:
        self._endpoints.clear()
