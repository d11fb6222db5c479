"""One provider's link to its upstream, the same for every wire format: the request headers (the
provider's key in the header its kind authenticates with, the configured extra headers), endpoints
prepared through its proxy and CA, a send that turns a non-2xx answer into the error tree, and the
checks that what came back is what the wire format promises."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from turnout.config.settings import ProviderSettings, Timeouts
from turnout.domain.errors import UpstreamProtocolError
from turnout.domain.malformed import DECODE_ERRORS
from turnout.observability.tracing import UPSTREAM_TRACE_HEADERS
from turnout.providers.http.client import Endpoint, HttpClient, Proxy
from turnout.providers.http.connection import UpstreamResponse
from turnout.providers.upstream_errors import UpstreamErrorBody, error_from_response

T = TypeVar("T")

BASE_HEADERS = (
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
    ("user-agent", "turnout/0.1"),
)
LIST_TIMEOUTS = Timeouts(connect=5.0, first_byte=10.0, idle=10.0, total=15.0)  # model lists
# endpoints an adapter keeps prepared, per model for formats that put the model in the URL: a
# wildcard alias lets clients name any model, so the cache is emptied when it reaches this size
MAX_CACHED_ENDPOINTS = 1024


def request_headers(settings: ProviderSettings, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    """The headers every request to this provider carries: JSON in and out, its key as its kind
    sends it (`Authorization: Bearer`, `api-key`, `x-api-key`, `x-goog-api-key`), the wire
    format's own (`extra`), then the headers configured for the provider."""
    headers = [*BASE_HEADERS, *extra]
    key = settings.api_key.reveal() if settings.api_key else None
    auth = settings.kind.auth
    if key and auth == "bearer":
        headers.append(("authorization", f"Bearer {key}"))
    elif key and auth != "none":
        headers.append((auth, key))
    for name, value in settings.headers:
        headers.append((name, value if isinstance(value, str) else value.reveal()))
    return headers


class ProviderLink:
    def __init__(
        self,
        settings: ProviderSettings,
        client: HttpClient,
        parse_error_body: Callable[[bytes], UpstreamErrorBody],
        headers: list[tuple[str, str]],
    ) -> None:
        self.provider = settings.name
        self.client = client
        self.headers = headers
        self._parse_error_body = parse_error_body
        p = settings.proxy
        self._proxy = (
            None
            if p is None
            else Proxy(p.host, p.port, p.authorization.reveal() if p.authorization else None)
        )
        self._ca_file = str(settings.tls_ca_file) if settings.tls_ca_file else None

    def endpoint(self, method: str, url: str, headers: list[tuple[str, str]] | None = None) -> Endpoint:
        """`url` through this provider's proxy and CA, with its headers (or `headers` instead)."""
        chosen = self.headers if headers is None else headers
        return Endpoint(method, url, chosen, proxy=self._proxy, ca_file=self._ca_file)

    async def send(
        self, endpoint: Endpoint, body: bytes, timeouts: Timeouts, *, extra_headers: bytes = b""
    ) -> UpstreamResponse:
        """The upstream's answer if it is a 2xx; its error (on the error tree) otherwise.
        `extra_headers` are this request's own (`name: value\\r\\n` lines), e.g. a fresh token;
        the trace context of the attempt it belongs to is added when the request is traced."""
        trace = UPSTREAM_TRACE_HEADERS.get()
        if trace is not None:
            extra_headers += trace
        response = await self.client.send(endpoint, body, timeouts, extra_headers)
        if response.status >= 300:
            raise await error_from_response(response, self._parse_error_body, provider=self.provider)
        return response

    async def answer(self, response: UpstreamResponse, limit: int) -> bytes:
        """The body of a non-streamed chat answer (at most `limit` bytes); one that breaks off is
        `UpstreamAnswerCut` (generated and billed: never to be asked again elsewhere)."""
        return await response.read_answer(limit, self.provider)

    def event_stream(
        self, response: UpstreamResponse, kind: bytes = b"text/event-stream"
    ) -> UpstreamResponse:
        """`response`, checked to be the event stream (of content type `kind`) a streaming request
        must get."""
        content_type = response.header(b"content-type") or b""
        if not content_type.startswith(kind):
            response.release()
            raise UpstreamProtocolError(
                f"The provider '{self.provider}' did not answer the streaming request with an event stream."
            )
        return response

    def decode(self, decoder: msgspec.json.Decoder[T], data: bytes, failure: str) -> T:
        """`data` as the wire format's type; else a protocol error: "The provider 'x' {failure}."."""
        try:
            return decoder.decode(data)
        except DECODE_ERRORS:
            raise UpstreamProtocolError(f"The provider '{self.provider}' {failure}.") from None
