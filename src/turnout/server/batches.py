"""The files and batches endpoints (`/v1/files`, `/v1/batches`, OpenAI's shapes): read and answered
at the edge; the work is the batch service's (batches/service.py)."""

from __future__ import annotations

import orjson

from turnout.batches.poll import Batches
from turnout.batches.service import MAX_UPLOAD_BYTES
from turnout.domain.errors import MethodNotAllowed, RouteNotFound
from turnout.keys.index import KeyIndex
from turnout.server.admin_query import integer, query_params
from turnout.server.exchange import Exchange
from turnout.server.message_batches import MessageBatchEndpoints
from turnout.server.routes import Handler

FILES = ("/v1/files/", "/files/")
BATCHES = ("/v1/batches/", "/batches/")
MAX_LIST = 100
MAX_FILES = 10_000  # OpenAI's documented most per page of files


class BatchEndpoints:
    """OpenAI's files and batches, and Anthropic's message batches (server/message_batches.py)."""

    def __init__(self, batches: Batches, keys: KeyIndex) -> None:
        self.service = batches.openai
        self.keys = keys
        self.messages = MessageBatchEndpoints(batches.anthropic, keys)

    def routes(self) -> dict[str, dict[str, Handler]]:
        """The fixed routes (their forms without /v1 are added with the others')."""
        return {
            "/v1/files": {"POST": self.upload, "GET": self.list_files},
            "/v1/batches": {"POST": self.create, "GET": self.list},
            **self.messages.routes(),
        }

    def table(self) -> list[tuple[str, str]]:
        """The routes matched by prefix, `{name}` marking a path parameter."""
        out = self.messages.table()
        for prefix in FILES:
            out += [("GET", prefix + "{file_id}"), ("DELETE", prefix + "{file_id}")]
            out.append(("GET", prefix + "{file_id}/content"))
        for prefix in BATCHES:
            out += [("GET", prefix + "{batch_id}"), ("POST", prefix + "{batch_id}/cancel")]
        return out

    async def dispatch(self, path: str, method: str, x: Exchange) -> bool:
        """Serve a `/v1/files/...`, `/v1/batches/...` or `/v1/messages/batches/...` path (False: not
        one of these)."""
        if await self.messages.dispatch(path, method, x):
            return True
        for prefix in FILES:
            if path.startswith(prefix):
                await self._file(path[len(prefix) :], method, x)
                return True
        for prefix in BATCHES:
            if path.startswith(prefix):
                await self._batch(path[len(prefix) :], method, x)
                return True
        return False

    async def _file(self, rest: str, method: str, x: Exchange) -> None:
        file_id, _, sub = rest.partition("/")
        if not file_id or sub not in ("", "content"):
            raise RouteNotFound(f"Unknown request URL: {method} /v1/files/{rest}.")
        allowed = ("GET", "DELETE") if sub == "" else ("GET",)
        if method not in allowed:
            raise MethodNotAllowed(f"{method} is not allowed here.", allowed=allowed)
        principal = await self.keys.resolve(x.credential())
        if sub == "content":
            await x.relay(await self.service.file_content(principal, file_id))
        elif method == "GET":
            await x.send_json(200, orjson.dumps(await self.service.retrieve_file(principal, file_id)))
        else:
            await x.send_json(200, orjson.dumps(await self.service.delete_file(principal, file_id)))

    async def _batch(self, rest: str, method: str, x: Exchange) -> None:
        batch_id, _, sub = rest.partition("/")
        if not batch_id or sub not in ("", "cancel"):
            raise RouteNotFound(f"Unknown request URL: {method} /v1/batches/{rest}.")
        allowed = ("GET",) if sub == "" else ("POST",)
        if method not in allowed:
            raise MethodNotAllowed(f"{method} is not allowed here.", allowed=allowed)
        principal = await self.keys.resolve(x.credential())
        if sub == "cancel":
            await x.send_json(200, orjson.dumps(await self.service.cancel_batch(principal, batch_id)))
        else:
            await x.send_json(200, orjson.dumps(await self.service.retrieve_batch(principal, batch_id)))

    async def upload(self, x: Exchange) -> None:
        principal = await self.keys.resolve(x.credential())
        x.max_body = MAX_UPLOAD_BYTES  # a file's upload has its own limit
        body = await x.body(json_only=False)
        answer = await self.service.upload(principal, x.header(b"content-type"), body)
        await x.send_json(200, orjson.dumps(answer))

    async def list_files(self, x: Exchange) -> None:
        principal = await self.keys.resolve(x.credential())
        query = query_params(x)
        limit = integer(query, "limit", 1, MAX_FILES) or MAX_FILES
        purpose = query.get("purpose") or None
        page = await self.service.list_files(principal, purpose, query.get("after") or None, limit)
        await x.send_json(200, orjson.dumps(page))

    async def create(self, x: Exchange) -> None:
        principal = await self.keys.resolve(x.credential())
        body = await x.json()
        await x.send_json(200, orjson.dumps(await self.service.create_batch(principal, body)))

    async def list(self, x: Exchange) -> None:
        principal = await self.keys.resolve(x.credential())
        query = query_params(x)
        limit = integer(query, "limit", 1, MAX_LIST) or 20
        after = query.get("after") or None
        await x.send_json(200, orjson.dumps(await self.service.list_batches(principal, after, limit)))
