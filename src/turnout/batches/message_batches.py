"""Anthropic's Message Batches (`/v1/messages/batches`) on Anthropic deployments: the requests
checked with strict bounds, every one for the same model alias (a batch runs on one deployment),
the alias replaced by the deployment's model, the batch's most reserved in the caller's budgets, and
its results' usage accounted once it has ended (accounting.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from turnout.batches.accounting import results_usage
from turnout.batches.creation import BatchEndpoints, Creation
from turnout.batches.placement import listing, most
from turnout.batches.store import BatchRecord, Placement
from turnout.batches.upstream import BatchUpstream
from turnout.domain.errors import InvalidRequest
from turnout.domain.principal import Principal
from turnout.domain.steering_fields import STEERING_FIELDS
from turnout.providers.http.connection import UpstreamResponse
from turnout.routing.catalog import Target

MAX_REQUESTS = 100_000  # Anthropic's documented limit of requests in one batch
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
WIRE = "anthropic"
API = "messages"


@dataclass(frozen=True)
class MessageBatchInput:
    model: str
    requests: list[tuple[str, dict[str, Any]]]  # (custom_id, params)
    max_input_tokens: int
    max_output_tokens: int


def read_message_batch(body: Any) -> MessageBatchInput:
    """A create request checked (400 naming the first bad request and what is wrong with it)."""
    if not isinstance(body, dict) or set(body) != {"requests"}:
        raise InvalidRequest("The body must be an object with 'requests' only.", param="requests")
    requests = body["requests"]
    if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_REQUESTS:
        raise InvalidRequest(f"'requests' must hold 1-{MAX_REQUESTS} requests.", param="requests")
    seen: set[str] = set()
    model: str | None = None
    checked = []
    input_tokens = output_tokens = 0
    for index, request in enumerate(requests):
        where = f"requests.{index}"
        if not isinstance(request, dict) or set(request) != {"custom_id", "params"}:
            raise InvalidRequest(
                f"{where} must be an object with 'custom_id' and 'params' only.", param=where
            )
        custom_id, params = request["custom_id"], request["params"]
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id) or custom_id in seen:
            raise InvalidRequest(
                f"{where}.custom_id must be 1-64 letters, digits, '-' or '_', unique in the batch.",
                param=f"{where}.custom_id",
            )
        seen.add(custom_id)
        if not isinstance(params, dict) or not isinstance(params.get("messages"), list):
            raise InvalidRequest(f"{where}.params must be a Messages request.", param=f"{where}.params")
        name, limit = params.get("model"), params.get("max_tokens")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{where}.params.model must be a model.", param=f"{where}.params.model")
        if model is None:
            model = name
        elif name != model:
            raise InvalidRequest(
                f"{where}.params.model is not '{model}': a batch through turnout is for one model.",
                param=f"{where}.params.model",
            )
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidRequest(
                f"{where}.params.max_tokens must be a positive integer.", param=f"{where}.params.max_tokens"
            )
        if not STEERING_FIELDS.isdisjoint(params):
            field = next(k for k in params if k in STEERING_FIELDS)
            raise InvalidRequest(
                f"{where}.params.{field} cannot be set: turnout chooses the upstream, its address and its "
                "credentials.",
                param=f"{where}.params.{field}",
                code="forbidden_parameter",
            )
        if params.get("stream"):
            raise InvalidRequest(
                f"{where}.params.stream: a batch cannot stream.", param=f"{where}.params.stream"
            )
        # the prompt at a token a byte of its JSON: a bound for byte-level tokenizers
        prompt = {k: v for k, v in params.items() if k not in ("model", "max_tokens")}
        try:
            input_tokens += len(orjson.dumps(prompt))
        except orjson.JSONEncodeError:
            raise InvalidRequest(
                f"{where}.params is nested too deep to be sent.", param=f"{where}.params"
            ) from None
        output_tokens += limit
        checked.append((custom_id, params))
    assert model is not None
    return MessageBatchInput(model, checked, input_tokens, output_tokens)


class MessageBatchService(BatchEndpoints):
    api = API
    wire = WIRE

    async def create(self, principal: Principal, body: Any) -> dict[str, Any]:
        checked = read_message_batch(body)
        route = self.places.authorised(principal, checked.model)
        upstream, target = self.places.first(route, checked.model, WIRE)
        sent = [{"custom_id": c, "params": {**p, "model": target.model}} for c, p in checked.requests]
        creation = Creation(
            route,
            Placement(target.provider, target.label, target.model, route.alias),
            most(target, checked.max_input_tokens, checked.max_output_tokens),
            "messages/batches",
            {"requests": sent},
            "processing_status",
            "in_progress",
        )
        return (await self.created(principal, upstream, creation)).batch

    async def retrieve(self, principal: Principal, batch_id: str) -> dict[str, Any]:
        record, upstream, target = await self._call(principal, batch_id)
        answer = await upstream.get(f"messages/batches/{record.id}")
        await self.observe(record, answer, upstream, target)
        return answer

    async def cancel(self, principal: Principal, batch_id: str) -> dict[str, Any]:
        record, upstream, target = await self._call(principal, batch_id)
        answer = await upstream.post(f"messages/batches/{record.id}/cancel")
        await self.observe(record, answer, upstream, target)
        return answer

    async def delete(self, principal: Principal, batch_id: str) -> dict[str, Any]:
        record, upstream, _ = await self._call(principal, batch_id)
        return await upstream.delete(f"messages/batches/{record.id}")

    async def results(self, principal: Principal, batch_id: str) -> UpstreamResponse:
        record, upstream, _ = await self._call(principal, batch_id)
        return await upstream.get_stream(f"messages/batches/{record.id}/results")

    async def list(self, principal: Principal, after: str | None, limit: int) -> dict[str, Any]:
        records, more = await self.store.page(self.api, principal.key_id, principal.team_id, after, limit)
        return listing(records, [r.batch for r in records], more)

    async def observe(
        self, record: BatchRecord, answer: dict[str, Any], upstream: BatchUpstream, target: Target | None
    ) -> None:
        """Keep the batch's last state; account it once it has ended."""
        status = str(answer.get("processing_status") or record.status)[:32]
        await self.store.update_batch(record.id, status, answer)
        if status == "ended" and record.accounted_at is None:
            usage = await results_usage(upstream, record.id)
            await self.accountant.account(record, usage, target, failed=False)

    async def refresh(self, record: BatchRecord) -> None:
        """Ask the provider about the batch, and act on what it says (the poll's step)."""
        upstream, target = self.places.target(record.place, WIRE)
        await self.observe(record, await upstream.get(f"messages/batches/{record.id}"), upstream, target)
