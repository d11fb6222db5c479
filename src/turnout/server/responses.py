"""`/v1/responses`: OpenAI's Responses API in front of every provider. A request is translated
to the canonical chat request and goes through the same pipeline as a chat completion; the answer
and its stream are written as a Response and its events. A deployment whose provider has the
Responses API itself gets the request whole instead (the native request; not for a request that
continues a response turnout stored, whose conversation only turnout holds), and its answer or
events are passed on as they came. With `store` (the default) the finished response is kept for
`GET /v1/responses/{id}`, `.../input_items` and `previous_response_id`, visible only to the key
that created it (the master key sees all)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson

from turnout.domain.completions import Chunk
from turnout.domain.errors import InvalidRequest, ResourceNotFound, TurnoutError
from turnout.domain.principal import Principal
from turnout.inbound.responses_output import EventWriter, conversation_turn, error_of, to_response
from turnout.inbound.responses_request import ResponsesRequest, new_id, parse, previous_response_id
from turnout.keys.index import KeyIndex
from turnout.providers.base import ChatResult, NativeRequest
from turnout.routing.relay import RelayStream
from turnout.routing.values import Served
from turnout.server.exchange import Exchange, WrappedExchange
from turnout.storage.stored_responses import ResponseStore, StoredResponse


def owner_filter(principal: Principal) -> str | None:
    """Whose stored responses a caller may see: its own key's (None: all, for the master key)."""
    return None if principal.kind == "master" else principal.key_id


def _not_found(response_id: str, param: str | None = None) -> ResourceNotFound:
    return ResourceNotFound(f"Response with id '{response_id}' not found.", param=param)


FINAL_PREFIXES = (b"event: response.completed\n", b"event: response.incomplete\n")


class ResponsesExchange(WrappedExchange):
    """The pipeline's Inbound and Responder for one POST /v1/responses."""

    api = "responses"

    def __init__(self, x: Exchange, store: ResponseStore, keys: KeyIndex) -> None:
        super().__init__(x)
        self.store = store
        self.keys = keys
        self.response_id = new_id("resp")
        self._request: ResponsesRequest | None = None

    @property
    def request(self) -> ResponsesRequest:
        assert self._request is not None, "json() parses the request first"
        return self._request

    def _principal(self) -> Principal:
        return self.keys.authenticate(self.x.credential())  # in memory; the pipeline checked it

    async def json(self) -> Any:
        body = await self.x.json()
        history = None
        previous = previous_response_id(body)
        if previous is not None:
            stored = await self.store.get(previous, owner_filter(self._principal()))
            if stored is None:
                raise _not_found(previous, "previous_response_id")
            history = stored.conversation
        self._request = parse(body, history)
        return self._request.chat

    def native(self) -> NativeRequest | None:
        """The request whole, for providers with the Responses API: unless it continues a stored
        response (whose conversation turnout holds, under its own id)."""
        request = self.request
        if request.body.get("previous_response_id") is not None:
            return None
        return NativeRequest("responses", request.body)

    async def answer_native(self, body: bytes, served: Served) -> None:
        """The provider's own Response, passed on as it came (and stored, to be continued)."""
        self._save_native(body)
        await self.x.answer(body, served)

    async def answer_chat(self, result: ChatResult, served: Served) -> None:
        response = to_response(result.typed(), self.request, self.response_id)
        self._save(response)
        await self.x.answer(orjson.dumps(response), served)

    async def stream(self, stream: RelayStream, served: Served) -> None:
        if stream.native:
            await self.x.stream(stream, served, _NativeFraming(self._save_native, self.x.request_id))
            return
        writer = EventWriter(self.request, self.response_id, self._save)
        await self.x.stream(stream, served, _EventFraming(writer))

    def _save_native(self, body: bytes) -> None:
        """Keep a provider's own Response (under its id) as turnout keeps its own."""
        if not self.request.store:
            return
        try:
            response = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if isinstance(response, dict) and isinstance(response.get("id"), str):
            self.response_id = response["id"]
            if not isinstance(response.get("created_at"), int):
                response["created_at"] = int(datetime.now(UTC).timestamp())
            # output of a shape turnout cannot read as a conversation is passed on, not kept
            with contextlib.suppress(KeyError, TypeError, AttributeError):
                self._save(response)

    def _save(self, response: dict[str, Any]) -> None:
        request = self.request
        if not request.store:
            return
        self.store.save(
            StoredResponse(
                self.response_id,
                self._principal().key_id,
                datetime.fromtimestamp(response["created_at"], UTC),
                response,
                request.input_items,
                [*request.conversation, *conversation_turn(response["output"])],
            )
        )


class _NativeFraming:
    """A provider's own Responses events, passed on as they came, but for the final one
    (`response.completed` / `response.incomplete`), which the stream holds back so that the
    client sees the response end only once it is accounted for; it is stored then."""

    def __init__(self, save: Callable[[bytes], None], request_id: str) -> None:
        self.save = save
        self.request_id = request_id
        self.final = b""

    def frame(self, batch: list[Chunk]) -> bytes:
        out = []
        for chunk in batch:
            raw = chunk.raw
            if raw is None:
                continue
            if raw.startswith(FINAL_PREFIXES):
                self.final = raw
            else:
                out.append(raw)
        return b"".join(out)

    def end(self) -> bytes:
        data = self.final.partition(b"\ndata: ")[2]
        response = _response_of(data)
        if response is not None:
            self.save(response)
        return self.final

    def error(self, error: TurnoutError) -> bytes:
        body = {"type": "error", "code": error_of(error)["code"], "message": error.message, "param": None}
        return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"

    def parts(
        self,
    ) -> tuple[Callable[[list[Chunk]], bytes], Callable[[], bytes], Callable[[TurnoutError], bytes]]:
        return self.frame, self.end, self.error


def _response_of(event: bytes) -> bytes | None:
    """The Response a final event carries, as JSON (None if it carries none)."""
    try:
        data = orjson.loads(event)
    except orjson.JSONDecodeError:
        return None
    response = data.get("response") if isinstance(data, dict) else None
    return orjson.dumps(response) if isinstance(response, dict) else None


class _EventFraming:
    def __init__(self, writer: EventWriter) -> None:
        self.writer = writer

    def parts(
        self,
    ) -> tuple[Callable[[list[Chunk]], bytes], Callable[[], bytes], Callable[[TurnoutError], bytes]]:
        writer = self.writer
        return (lambda batch: b"".join(writer.chunk(c.view) for c in batch)), writer.finish, writer.error


class StoredResponses:
    """GET and DELETE /v1/responses/{id}, and GET /v1/responses/{id}/input_items."""

    def __init__(self, store: ResponseStore, keys: KeyIndex) -> None:
        self.store = store
        self.keys = keys

    async def _stored(self, x: Exchange, response_id: str) -> StoredResponse:
        principal = await self.keys.resolve(x.credential())
        stored = await self.store.get(response_id, owner_filter(principal))
        if stored is None:
            raise _not_found(response_id)
        return stored

    async def retrieve(self, x: Exchange, response_id: str) -> None:
        stored = await self._stored(x, response_id)
        await x.send_json(200, orjson.dumps(stored.response))

    async def delete(self, x: Exchange, response_id: str) -> None:
        principal = await self.keys.resolve(x.credential())
        if not await self.store.delete(response_id, owner_filter(principal)):
            raise _not_found(response_id)
        await x.send_json(200, orjson.dumps({"id": response_id, "object": "response", "deleted": True}))

    async def input_items(self, x: Exchange, response_id: str) -> None:
        stored = await self._stored(x, response_id)
        query = parse_qs(bytes(x.scope.get("query_string") or b"").decode("latin-1"))
        order = (query.get("order") or ["desc"])[0]
        if order not in ("asc", "desc"):
            raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
        raw_limit = (query.get("limit") or ["20"])[0]
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            raise InvalidRequest("'limit' must be an integer from 1 to 100.", param="limit")
        items = stored.input_items if order == "asc" else stored.input_items[::-1]
        if "after" in query:
            after = query["after"][0]
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise InvalidRequest(f"No input item with id '{after}'.", param="after")
            items = items[ids.index(after) + 1 :]
        page = items[: int(raw_limit)]
        body = {
            "object": "list",
            "data": page,
            "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None,
            "has_more": len(items) > len(page),
        }
        await x.send_json(200, orjson.dumps(body))
