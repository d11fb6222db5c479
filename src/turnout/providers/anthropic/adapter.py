"""The adapter for Anthropic's Messages API: OpenAI-shaped calls in, `POST /v1/messages` out.

Authentication is the `x-api-key` header with `anthropic-version`; the provider's base URL ends in
`/v1` like every other provider's. Parameters Anthropic lacks follow the provider's
`unsupported_params` policy; the rest is translated (translate.py) and the answer translated back.
"""

from __future__ import annotations

from turnout.config.settings import ProviderSettings, Timeouts
from turnout.domain.errors import UnsupportedFeature
from turnout.providers.anthropic import translate
from turnout.providers.anthropic.errors import parse_error_body
from turnout.providers.anthropic.stream import AnthropicStream, NativeAnthropicStream
from turnout.providers.anthropic.wire import API_VERSION, count_decoder, message_decoder, models_decoder
from turnout.providers.base import ChatCall, ChatResult, EmbeddingCall, EmbeddingResult, NativeRequest
from turnout.providers.capabilities import capabilities_for
from turnout.providers.http.client import Endpoint, HttpClient
from turnout.providers.link import LIST_TIMEOUTS, ProviderLink, request_headers
from turnout.providers.parameters import apply_parameter_policy
from turnout.providers.request_json import request_json

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_COUNT_BYTES = 64 * 1024


def _header_lines(native: NativeRequest) -> bytes:
    return b"".join(b"%s: %s\r\n" % (n.encode(), v.encode("latin-1")) for n, v in native.headers)


class AnthropicAdapter:
    def __init__(self, settings: ProviderSettings, client: HttpClient) -> None:
        self.name = settings.name
        self.settings = settings
        self.capabilities = capabilities_for(settings)
        headers = request_headers(settings, ("anthropic-version", API_VERSION))
        self.link = ProviderLink(settings, client, parse_error_body, headers)
        self._messages = self.link.endpoint("POST", f"{settings.base_url}/messages")
        self._beta_messages = self.link.endpoint("POST", f"{settings.base_url}/messages?beta=true")
        self._count = self.link.endpoint("POST", f"{settings.base_url}/messages/count_tokens")
        self._beta_count = self.link.endpoint("POST", f"{settings.base_url}/messages/count_tokens?beta=true")
        self._models = self.link.endpoint("GET", f"{settings.base_url}/models?limit=1000")

    def _body(self, call: ChatCall, *, stream: bool) -> tuple[bytes, translate.JsonMode | None]:
        apply_parameter_policy(
            dict(call.body), self.settings, call.unsupported_params
        )  # refuses what Anthropic lacks
        body, json_mode = translate.request_body(call.request, call.model, stream=stream)
        return request_json(body), json_mode

    def _native(self, call: ChatCall) -> tuple[Endpoint, bytes, bytes] | None:
        """The client's own Anthropic request for this deployment's model: the endpoint (the beta
        one if the client used it), the body and the client's Anthropic headers."""
        native = call.native
        if native is None or native.wire != "anthropic":
            return None
        endpoint = self._beta_messages if native.beta else self._messages
        return endpoint, request_json({**native.body, "model": call.model}), _header_lines(native)

    async def count_tokens(self, native: NativeRequest, model: str, timeouts: Timeouts) -> bytes:
        """Anthropic's own count of the native request's input tokens (its JSON answer)."""
        endpoint = self._beta_count if native.beta else self._count
        body = request_json({**native.body, "model": model})
        response = await self.link.send(endpoint, body, timeouts, extra_headers=_header_lines(native))
        data = await self.link.answer(response, MAX_COUNT_BYTES)
        self.link.decode(count_decoder, data, "answered a token count with something else")
        return data

    async def complete(self, call: ChatCall) -> ChatResult:
        native = self._native(call)
        if native is not None:
            response = await self.link.send(native[0], native[1], call.timeouts, extra_headers=native[2])
            data = await self.link.answer(response, MAX_RESPONSE_BYTES)
            message = self.link.decode(
                message_decoder, data, "answered with something that is not an Anthropic message"
            )
            usage = message.usage.canonical() if message.usage else None
            return ChatResult(usage, native=data)
        body, json_mode = self._body(call, stream=False)
        response = await self.link.send(self._messages, body, call.timeouts)
        data = await self.link.answer(response, MAX_RESPONSE_BYTES)
        message = self.link.decode(
            message_decoder, data, "answered with something that is not an Anthropic message"
        )
        out = translate.completion(message, json_mode, requested_model=call.model)
        usage = message.usage.canonical() if message.usage else None
        return ChatResult(usage, completion=out)

    async def stream(self, call: ChatCall) -> AnthropicStream:
        native = self._native(call)
        if native is not None:
            response = await self.link.send(native[0], native[1], call.timeouts, extra_headers=native[2])
            return NativeAnthropicStream(
                self.link.event_stream(response),
                provider=self.name,
                requested_model=call.model,
                json_mode=None,
                include_usage=False,
            )
        body, json_mode = self._body(call, stream=True)
        response = await self.link.send(self._messages, body, call.timeouts)
        return AnthropicStream(
            self.link.event_stream(response),
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
        response = await self.link.send(self._models, b"", LIST_TIMEOUTS)
        data = await response.read(8 * 1024 * 1024)
        return [m.id for m in self.link.decode(models_decoder, data, "sent a malformed model list").data]

    async def aclose(self) -> None:
        return None
