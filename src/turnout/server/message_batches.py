"""Anthropic's Message Batches endpoints (`/v1/messages/batches`), in Anthropic's shapes and error
format: read and answered at the edge, the work the batch service's (batches/message_batches.py).
A batch's `results_url` names turnout's results endpoint, never the provider's."""

from __future__ import annotations

from typing import Any

import orjson

from turnout.batches.message_batches import MessageBatchService
from turnout.domain.errors import MethodNotAllowed, RouteNotFound
from turnout.domain.rate_limits import Quota
from turnout.inbound.anthropic_messages import error_json
from turnout.keys.index import KeyIndex
from turnout.server.admin_query import integer, query_params
from turnout.server.exchange import Exchange
from turnout.server.routes import Handler

PREFIXES = ("/v1/messages/batches/", "/messages/batches/")
MAX_LIST = 1000  # Anthropic's documented most per page


def anthropic(x: Exchange) -> Exchange:
    """The exchange answering in Anthropic's error format."""
    x.render_error = lambda error: error_json(error, x.request_id)
    x.quota_headers = Quota.anthropic_headers
    return x


class MessageBatchEndpoints:
    def __init__(self, service: MessageBatchService, keys: KeyIndex) -> None:
        self.service = service
        self.keys = keys

    def routes(self) -> dict[str, dict[str, Handler]]:
        return {"/v1/messages/batches": {"POST": self.create, "GET": self.list}}

    @staticmethod
    def table() -> list[tuple[str, str]]:
        out = []
        for prefix in PREFIXES:
            out += [("GET", prefix + "{batch_id}"), ("DELETE", prefix + "{batch_id}")]
            out += [("POST", prefix + "{batch_id}/cancel"), ("GET", prefix + "{batch_id}/results")]
        return out

    async def dispatch(self, path: str, method: str, x: Exchange) -> bool:
        for prefix in PREFIXES:
            if path.startswith(prefix):
                await self._batch(path[len(prefix) :], method, anthropic(x))
                return True
        return False

    async def _batch(self, rest: str, method: str, x: Exchange) -> None:
        batch_id, _, sub = rest.partition("/")
        allowed = {"": ("GET", "DELETE"), "cancel": ("POST",), "results": ("GET",)}.get(sub)
        if not batch_id or allowed is None:
            raise RouteNotFound(f"Unknown request URL: {method} /v1/messages/batches/{rest}.")
        if method not in allowed:
            raise MethodNotAllowed(f"{method} is not allowed here.", allowed=allowed)
        principal = await self.keys.resolve(x.credential())
        if sub == "results":
            response = await self.service.results(principal, batch_id)
            await x.relay(response, b"application/binary")
        elif sub == "cancel":
            await x.send_json(200, _shown(await self.service.cancel(principal, batch_id)))
        elif method == "GET":
            await x.send_json(200, _shown(await self.service.retrieve(principal, batch_id)))
        else:
            await x.send_json(200, orjson.dumps(await self.service.delete(principal, batch_id)))

    async def create(self, x: Exchange) -> None:
        anthropic(x)
        principal = await self.keys.resolve(x.credential())
        body = await x.json()
        await x.send_json(200, _shown(await self.service.create(principal, body)))

    async def list(self, x: Exchange) -> None:
        anthropic(x)
        principal = await self.keys.resolve(x.credential())
        query = query_params(x)
        limit = integer(query, "limit", 1, MAX_LIST) or 20
        page = await self.service.list(principal, query.get("after_id") or None, limit)
        page["data"] = [_with_results_url(b) for b in page["data"]]
        await x.send_json(200, orjson.dumps(page))


def _with_results_url(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch with its `results_url` (once it has results) at turnout: a path, which the SDKs
    resolve against their base URL (right behind a proxy that terminates TLS or adds a prefix,
    where a URL built from the request's Host would not be)."""
    if not batch.get("results_url") or not isinstance(batch.get("id"), str):
        return batch
    return {**batch, "results_url": f"/v1/messages/batches/{batch['id']}/results"}


def _shown(batch: dict[str, Any]) -> bytes:
    return orjson.dumps(_with_results_url(batch))
