"""The files and batches endpoints' work: a batch file checked and uploaded to the deployment of
the model its lines name (that model's alias replaced by the deployment's own), a batch created on
the deployment that holds its file with its most reserved in the caller's budgets, and every later
call sent to that deployment; only the owning key's team sees them. A batch found finished (read by
its client, or by the periodic poll) is accounted (accounting.py)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from turnout.batches.accounting import BATCH_TIER, BatchAccountant
from turnout.batches.form import Part, parse_form
from turnout.batches.jsonl import BatchInput, read_batch_input, rewritten
from turnout.batches.store import TERMINAL, BatchRecord, BatchStore, FileRecord, Owner, Placement
from turnout.batches.upstream import BatchUpstream
from turnout.domain.errors import (
    InvalidRequest,
    ModelNotFound,
    ResourceNotFound,
    ServiceUnavailable,
    UnsupportedFeature,
    UpstreamProtocolError,
)
from turnout.domain.principal import Principal
from turnout.domain.usage import Usage
from turnout.periodic import Periodic
from turnout.providers.http.connection import UpstreamResponse
from turnout.routing.catalog import Catalog, Route, Target
from turnout.spend.budgets import Budgets

log = logging.getLogger("turnout.batches")

MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # a batch file's upload, the whole multipart body
COMPLETION_WINDOWS = ("24h",)
MAX_METADATA = 16
POLL_INTERVAL = 60.0  # seconds between looks at the batches not accounted yet
POLL_BATCH = 50  # batches asked about in one round
POLL_SCAN = 1000  # batches not accounted yet read in one round (the ones to ask about chosen among them)
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_BATCH_FIELDS = frozenset({"input_file_id", "endpoint", "completion_window", "metadata"})


def _checked_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ResourceNotFound(f"No such {what}: {str(value)[:130]!r}.")
    return value


class BatchService:
    def __init__(
        self,
        store: BatchStore,
        catalog: Callable[[], Catalog],
        budgets: Budgets,
        accountant: BatchAccountant,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.budgets = budgets
        self.accountant = accountant
        self.poller = Periodic(self.poll, POLL_INTERVAL, "polling batches")
        self._polled: dict[str, float] = {}  # by batch id: when this instance last asked about it

    # ------------------------------------------------------------------ placement

    def _authorised(self, principal: Principal, model: str) -> Route:
        route = self.catalog().resolve(model)
        if route is None or (not principal.may_use(route.alias) and not principal.may_use(model)):
            raise ModelNotFound(
                f"The model '{model}' does not exist or you do not have access to it.", param="model"
            )
        return route

    def _target(self, place: Placement) -> tuple[BatchUpstream, Target]:
        route = self.catalog().resolve(place.alias)
        for target in () if route is None else route.targets:
            upstream = BatchUpstream.of(target.adapter)
            if target.label == place.deployment and upstream is not None:
                return upstream, target
        raise ServiceUnavailable(
            f"The deployment '{place.deployment}' that holds this object is no longer configured.",
            code="deployment_unavailable",
        )

    async def _file(self, principal: Principal, file_id: str) -> FileRecord:
        record = await self.store.file(_checked_id(file_id, "File object"))
        if record is None or not record.owner.admits(principal.key_id, principal.team_id):
            raise ResourceNotFound(f"No such File object: {file_id}.", param="file_id")
        return record

    async def _batch(self, principal: Principal, batch_id: str) -> BatchRecord:
        record = await self.store.batch(_checked_id(batch_id, "Batch object"))
        if record is None or not record.owner.admits(principal.key_id, principal.team_id):
            raise ResourceNotFound(f"No such Batch object: {batch_id}.", param="batch_id")
        return record

    # ------------------------------------------------------------------ files

    async def upload(self, principal: Principal, content_type: bytes | None, body: bytes) -> dict[str, Any]:
        purpose, file = _upload_parts(parse_form(content_type, body))
        if purpose != "batch":
            raise InvalidRequest(
                f"turnout takes files for batches only ('purpose': 'batch'), not '{purpose[:40]}'.",
                param="purpose",
            )
        checked: BatchInput = await asyncio.to_thread(read_batch_input, file.data)
        route = self._authorised(principal, checked.model)
        upstream, target = _batch_target(route, checked.model)
        content = await asyncio.to_thread(rewritten, file.data, target.model, upstream.line_prefix)
        answer = await upstream.upload(file.filename or "batch.jsonl", content)
        file_id = _answered_id(answer, upstream)
        place = Placement(target.provider, target.label, target.model, route.alias)
        record = FileRecord(
            file_id,
            place,
            Owner(principal.key_id, principal.team_id),
            "batch",
            checked.endpoint,
            checked.lines,
            checked.max_input_tokens,
            checked.max_output_tokens,
            answer,
        )
        if not await self.store.add_file(record):
            raise UpstreamProtocolError(
                f"The provider '{upstream.provider}' answered with a file id already in use."
            )
        return answer

    async def retrieve_file(self, principal: Principal, file_id: str) -> dict[str, Any]:
        record = await self._file(principal, file_id)
        upstream, _ = self._target(record.place)
        return await upstream.get(f"files/{record.id}")

    async def file_content(self, principal: Principal, file_id: str) -> UpstreamResponse:
        record = await self._file(principal, file_id)
        upstream, _ = self._target(record.place)
        return await upstream.content(record.id)

    async def delete_file(self, principal: Principal, file_id: str) -> dict[str, Any]:
        record = await self._file(principal, file_id)
        upstream, _ = self._target(record.place)
        answer = await upstream.delete(f"files/{record.id}")
        await self.store.drop_file(record.id)
        return answer

    # ------------------------------------------------------------------ batches

    async def create_batch(self, principal: Principal, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        unknown = sorted(set(body) - _BATCH_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"Unrecognized request argument supplied: {', '.join(unknown)[:200]}", param=unknown[0]
            )
        window = body.get("completion_window")
        if window not in COMPLETION_WINDOWS:
            raise InvalidRequest("'completion_window' must be '24h'.", param="completion_window")
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or len(metadata) > MAX_METADATA
            or not all(
                isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                for k, v in metadata.items()
            )
        ):
            raise InvalidRequest(
                f"'metadata' must be at most {MAX_METADATA} string pairs (keys up to 64 characters, "
                "values up to 512).",
                param="metadata",
            )
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str):
            raise InvalidRequest("'input_file_id' must be a string.", param="input_file_id")
        file = await self._file(principal, file_id)
        if file.purpose != "batch" or file.endpoint is None:
            raise InvalidRequest(f"The file '{file_id}' is not a batch input file.", param="input_file_id")
        if body.get("endpoint") != file.endpoint:
            raise InvalidRequest(
                f"'endpoint' must be '{file.endpoint}', the url the file's requests name.", param="endpoint"
            )
        route = self._authorised(principal, file.place.alias)
        upstream, target = self._target(file.place)
        amount = _most(target, file)
        reservation = await self.budgets.reserve(principal, route, amount=amount)
        try:
            sent: dict[str, Any] = {
                "input_file_id": file.id,
                "endpoint": upstream.line_prefix + file.endpoint[len("/v1") :],
                "completion_window": window,
            }
            if metadata is not None:
                sent["metadata"] = metadata
            answer = await upstream.post("batches", sent)
            batch_id = _answered_id(answer, upstream)
            record = BatchRecord(
                batch_id,
                file.place,
                Owner(principal.key_id, principal.team_id, principal.user_id),
                time.time(),
                amount,
                str(answer.get("status") or "validating")[:32],
                answer,
                None,
            )
            await self.store.add_batch(record)
        except BaseException:
            self.budgets.release(reservation)
            raise
        self.accountant.reservations[batch_id] = reservation
        return _shown(answer, record)

    async def retrieve_batch(self, principal: Principal, batch_id: str) -> dict[str, Any]:
        record = await self._batch(principal, batch_id)
        upstream, target = self._target(record.place)
        answer = await upstream.get(f"batches/{record.id}")
        await self._observe(record, answer, upstream, target)
        return _shown(answer, record)

    async def cancel_batch(self, principal: Principal, batch_id: str) -> dict[str, Any]:
        record = await self._batch(principal, batch_id)
        upstream, target = self._target(record.place)
        answer = await upstream.post(f"batches/{record.id}/cancel")
        await self._observe(record, answer, upstream, target)
        return _shown(answer, record)

    async def list_batches(self, principal: Principal, after: str | None, limit: int) -> dict[str, Any]:
        records, more = await self.store.page(principal.key_id, principal.team_id, after, limit)
        data = [_shown(r.batch, r) for r in records]
        return {
            "object": "list",
            "data": data,
            "first_id": records[0].id if records else None,
            "last_id": records[-1].id if records else None,
            "has_more": more,
        }

    async def _observe(
        self, record: BatchRecord, answer: dict[str, Any], upstream: BatchUpstream, target: Target | None
    ) -> None:
        """Keep the batch's last state, make its output files reachable by its owner, and account
        it once it has finished."""
        status = str(answer.get("status") or record.status)[:32]
        await self.store.update_batch(record.id, status, answer)
        for field in ("output_file_id", "error_file_id"):
            produced = answer.get(field)
            if isinstance(produced, str) and _ID.match(produced):
                output = {"id": produced, "object": "file", "purpose": "batch_output"}
                await self.store.add_file(
                    FileRecord(produced, record.place, record.owner, "batch_output", None, 0, 0, 0, output)
                )
        if status in TERMINAL and record.accounted_at is None:
            await self.accountant.account(record, answer, upstream, target)

    # ------------------------------------------------------------------ the poll

    def start(self) -> None:
        self.poller.start()

    async def aclose(self) -> None:
        await self.poller.aclose()

    async def poll(self) -> int:
        """Ask the providers about POLL_BATCH batches not accounted yet at most, those this instance
        asked about longest ago first (so batches that keep failing cannot starve the others);
        returns how many it asked about."""
        for batch_id in list(self.accountant.reservations):
            held = await self.store.batch(batch_id)
            if held is None or held.accounted_at is not None:
                self.accountant.release(batch_id)
        records = await self.store.unaccounted(POLL_SCAN)
        waiting = {r.id for r in records}
        self._polled = {k: v for k, v in self._polled.items() if k in waiting}
        asked = 0
        for record in sorted(records, key=lambda r: self._polled.get(r.id, 0.0)):
            if asked == POLL_BATCH:
                break
            self._polled[record.id] = time.monotonic()
            try:
                upstream, target = self._target(record.place)
                asked += 1
                answer = await upstream.get(f"batches/{record.id}")
                await self._observe(record, answer, upstream, target)
            except Exception as error:  # the next round tries again
                log.warning("batch %s could not be polled: %s", record.id, error)
        return asked


def _upload_parts(parts: list[Part]) -> tuple[str, Part]:
    """The form's `purpose` and `file`, each once, and nothing else."""
    named: dict[str, Part] = {}
    for part in parts:
        if part.name not in ("purpose", "file"):
            raise InvalidRequest(f"Unrecognized form field: '{part.name}'.", param=part.name)
        if part.name in named:
            raise InvalidRequest(f"The form field '{part.name}' is given twice.", param=part.name)
        named[part.name] = part
    if "file" not in named or named["file"].filename is None:
        raise InvalidRequest("The form needs a 'file' part with a filename.", param="file")
    if "purpose" not in named:
        raise InvalidRequest("The form needs a 'purpose' field.", param="purpose")
    raw = named["purpose"].data
    if len(raw) > 64:
        raise InvalidRequest("'purpose' is too long.", param="purpose")
    return raw.decode("utf-8", "replace").strip(), named["file"]


def _batch_target(route: Route, model: str) -> tuple[BatchUpstream, Target]:
    """The first deployment of the alias whose provider has a batch API."""
    for target in route.targets:
        upstream = BatchUpstream.of(target.adapter)
        if upstream is not None and "*" not in target.model:
            return upstream, target
    raise UnsupportedFeature(
        f"The model '{model}' has no deployment with a batch API (OpenAI or Azure OpenAI).", param="model"
    )


def _answered_id(answer: dict[str, Any], upstream: BatchUpstream) -> str:
    value = answer.get("id")
    if not isinstance(value, str) or not _ID.match(value):
        raise UpstreamProtocolError(f"The provider '{upstream.provider}' answered without a usable id.")
    return value


def _most(target: Target, file: FileRecord) -> int:
    """The most the file's requests can cost on `target`, at its batch rates (0: no price)."""
    if target.price is None:
        return 0
    usage = Usage(
        input_tokens=file.max_input_tokens, output_tokens=file.max_output_tokens, service_tier=BATCH_TIER
    )
    return target.price.cost(usage, at=time.time())


def _shown(answer: dict[str, Any], record: BatchRecord) -> dict[str, Any]:
    """The provider's batch object as the client knows it: its endpoint and model as it named them."""
    shown = dict(answer)
    endpoint = shown.get("endpoint")
    if isinstance(endpoint, str) and not endpoint.startswith("/v1/"):
        shown["endpoint"] = "/v1" + endpoint
    if "model" in shown:
        shown["model"] = record.place.alias
    return shown
