"""`/passthrough/<provider>/<path>`: a provider's own API through turnout (providers/passage.py),
read and answered at the edge; the pipeline decides, records and forwards."""

from __future__ import annotations

from urllib.parse import unquote

from turnout.domain.errors import RouteNotFound
from turnout.domain.rate_limits import Quota
from turnout.pipeline import Pipeline
from turnout.providers.passage import PASSED_REQUEST_HEADERS
from turnout.server.exchange import Exchange

PREFIX = "/passthrough/"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class PassthroughExchange:
    """The pipeline's PassthroughInbound and PassthroughResponder for one request."""

    def __init__(self, x: Exchange) -> None:
        self.x = x
        self.method = str(x.scope["method"])
        self.query = bytes(x.scope.get("query_string", b"")).decode("latin-1")

    @property
    def request_id(self) -> str:
        return self.x.request_id

    def credential(self) -> str | None:
        return self.x.credential()

    def headers(self) -> list[tuple[str, str]]:
        return [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self.x.scope["headers"]
            if name.lower() in PASSED_REQUEST_HEADERS
        ]

    async def body(self) -> bytes:
        return await self.x.body(json_only=False)

    def rate_limited(self, quota: Quota) -> None:
        self.x.rate_limited(quota)

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.x.started = True
        response = {"type": "http.response.start", "status": status}
        await self.x.send({**response, "headers": [*headers, *self.x.response_headers(None)]})

    async def write(self, chunk: bytes, more: bool) -> None:
        await self.x.send({"type": "http.response.body", "body": chunk, "more_body": more})


def provider_and_path(x: Exchange) -> tuple[str, str]:
    """(provider, path under its base URL as sent) of a /passthrough/ request."""
    raw = bytes(x.scope.get("raw_path") or str(x.scope["path"]).encode()).split(b"?", 1)[0]
    rest = raw.decode("latin-1")[len(PREFIX) :]
    provider, slash, path = rest.partition("/")
    if not provider or not slash:
        raise RouteNotFound(f"Unknown request URL: {x.scope['method']} {x.scope['path']}.")
    return unquote(provider), "/" + path


async def passthrough(pipeline: Pipeline, x: Exchange) -> None:
    provider, path = provider_and_path(x)
    inbound = PassthroughExchange(x)
    await pipeline.passthrough(inbound, inbound, provider, path)
