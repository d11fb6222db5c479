"""The adapter for Anthropic's Messages API: OpenAI-shaped calls in, `POST /v1/messages` out.

Authentication is the `x-api-key` header with `anthropic-version`; the provider's base URL ends in
`/v1` like every other provider's. Parameters Anthropic lacks follow the provider's
`unsupported_params` policy; the rest is translated (translate.py) and the answer translated back.
"""

from __future__ import annotations

import msgspec
import orjson

from turnout.config.settings import ProviderSettings, Timeouts
from turnout.domain.errors import TurnoutError, UnsupportedFeature, UpstreamProtocolError
from turnout.providers.anthropic import translate
from turnout.providers.anthropic.errors import parse_error_body
from turnout.providers.anthropic.stream import AnthropicStream
from turnout.providers.anthropic.wire import API_VERSION, message_decoder, models_decoder
from turnout.providers.base import ChatCall, ChatResult, EmbeddingCall, EmbeddingResult
from turnout.providers.capabilities import capabilities_for
from turnout.providers.http.client import Endpoint, HttpClient, Proxy
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.parameters import apply_parameter_policy
from turnout.providers.upstream_errors import error_from_response

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
LIST_TIMEOUTS = Timeouts(connect=5.0, first_byte=10.0, idle=10.0, total=15.0)


class AnthropicAdapter:
    def __init__(self, settings: ProviderSettings, client: HttpClient) -> None:
        self.name = settings.name
        self.settings = settings
        self.capabilities = capabilities_for(settings)
        self.client = client
        headers = [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("anthropic-version", API_VERSION),
            ("user-agent", "turnout/0.1"),
        ]
        if settings.api_key is not None:
            headers.append(("x-api-key", settings.api_key.reveal()))
        for name, value in settings.headers:
            headers.append((name, value if isinstance(value, str) else value.reveal()))
        proxy = settings.proxy
        proxy_route = (
            None
            if proxy is None
            else Proxy(proxy.host, proxy.port, proxy.authorization.reveal() if proxy.authorization else None)
        )
        ca_file = str(settings.tls_ca_file) if settings.tls_ca_file else None
        base = settings.base_url
        self._messages = Endpoint("POST", f"{base}/messages", headers, proxy=proxy_route, ca_file=ca_file)
        self._models = Endpoint(
            "GET", f"{base}/models?limit=1000", headers, proxy=proxy_route, ca_file=ca_file
        )

    async def _send(self, endpoint: Endpoint, body: bytes, timeouts: Timeouts) -> UpstreamResponse:
        response = await self.client.send(endpoint, body, timeouts)
        if response.status >= 300:
            raise await self._error(response)
        return response

    async def _error(self, response: UpstreamResponse) -> TurnoutError:
        return await error_from_response(response, parse_error_body, provider=self.name)

    def _body(self, call: ChatCall, *, stream: bool) -> tuple[bytes, translate.JsonMode | None]:
        apply_parameter_policy(dict(call.body), self.settings)  # refuses what Anthropic lacks
        body, json_mode = translate.request_body(call.request, call.model, stream=stream)
        return orjson.dumps(body), json_mode

    async def complete(self, call: ChatCall) -> ChatResult:
        body, json_mode = self._body(call, stream=False)
        response = await self._send(self._messages, body, call.timeouts)
        data = await response.read(MAX_RESPONSE_BYTES)
        try:
            message = message_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamProtocolError(
                f"The provider '{self.name}' answered with something that is not an Anthropic message."
            ) from None
        out = translate.completion(message, json_mode, requested_model=call.model)
        usage = message.usage.canonical() if message.usage else None
        return ChatResult(body=orjson.dumps(out), usage=usage, _data=out)

    async def stream(self, call: ChatCall) -> AnthropicStream:
        body, json_mode = self._body(call, stream=True)
        response = await self._send(self._messages, body, call.timeouts)
        content_type = response.header(b"content-type") or b""
        if not content_type.startswith(b"text/event-stream"):
            response.release()
            raise UpstreamProtocolError(
                f"The provider '{self.name}' did not answer the streaming request with an event stream."
            )
        return AnthropicStream(
            response,
            provider=self.name,
            requested_model=call.model,
            json_mode=json_mode,
            include_usage=call.client_wants_usage,
        )

    async def embed(self, call: EmbeddingCall) -> EmbeddingResult:
        raise UnsupportedFeature(
            f"The provider '{self.name}' (Anthropic) does not offer embeddings.", param="model"
        )

    async def list_models(self) -> list[str]:
        response = await self._send(self._models, b"", LIST_TIMEOUTS)
        data = await response.read(8 * 1024 * 1024)
        try:
            return [m.id for m in models_decoder.decode(data).data]
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamProtocolError(f"The provider '{self.name}' sent a malformed model list.") from None

    async def aclose(self) -> None:
        return None
