"""The files and batches endpoints' work: a batch file checked and uploaded to the deployment of
the model its lines name (that model's alias replaced by the deployment's own), a batch created on
the deployment that holds its file with its most reserved in the caller's budgets, and every later
call sent to that deployment; only the owning key's team sees them. A batch found finished (read by
its client, or by the periodic poll) is accounted (accounting.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from turnout.batches.accounting import output_usage
from turnout.batches.creation import BatchEndpoints, Creation
from turnout.batches.jsonl import BatchInput, read_batch_input, rewritten
from turnout.batches.placement import BATCH_TIER, ID, answered_id, listing, most
from turnout.batches.store import TERMINAL, BatchRecord, FileRecord, Owner, Placement
from turnout.batches.upstream import BatchUpstream
from turnout.domain.errors import InvalidRequest, UpstreamProtocolError
from turnout.domain.media import Form, Upload
from turnout.domain.multipart import form_boundary, parse_form
from turnout.domain.principal import Principal
from turnout.domain.usage import Usage
from turnout.providers.http.connection import UpstreamResponse
from turnout.routing.catalog import Target

MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # a batch file's upload, the whole multipart body
MAX_UPLOAD_PARTS = 8  # its form's parts (it needs two)
COMPLETION_WINDOWS = ("24h",)
MAX_METADATA = 16
_BATCH_FIELDS = frozenset({"input_file_id", "endpoint", "completion_window", "metadata"})
WIRE = "openai"


class BatchService(BatchEndpoints):
    """OpenAI's files and batches endpoints."""

    api = "batches"
    wire = WIRE

    # ------------------------------------------------------------------ files

    async def upload(self, principal: Principal, content_type: bytes | None, body: bytes) -> dict[str, Any]:
        form = parse_form(body, form_boundary(content_type), max_parts=MAX_UPLOAD_PARTS)
        purpose, file = _upload_parts(form)
        if purpose != "batch":
            raise InvalidRequest(
                f"turnout takes files for batches only ('purpose': 'batch'), not '{purpose[:40]}'.",
                param="purpose",
            )
        checked: BatchInput = await asyncio.to_thread(read_batch_input, file.data)
        route = self.places.authorised(principal, checked.model)
        upstream, target = self.places.first(route, checked.model, WIRE)
        content = await asyncio.to_thread(rewritten, file.data, target.model, upstream.line_prefix)
        answer = await upstream.upload(file.filename or "batch.jsonl", content)
        file_id = answered_id(answer, upstream)
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
        record = await self.places.file(principal, file_id)
        upstream, _ = self.places.target(record.place, WIRE)
        return await upstream.get(f"files/{record.id}")

    async def file_content(self, principal: Principal, file_id: str) -> UpstreamResponse:
        record = await self.places.file(principal, file_id)
        upstream, _ = self.places.target(record.place, WIRE)
        return await upstream.content(record.id)

    async def delete_file(self, principal: Principal, file_id: str) -> dict[str, Any]:
        record = await self.places.file(principal, file_id)
        upstream, _ = self.places.target(record.place, WIRE)
        answer = await upstream.delete(f"files/{record.id}")
        await self.store.drop_file(record.id)
        return answer

    async def list_files(
        self, principal: Principal, purpose: str | None, after: str | None, limit: int
    ) -> dict[str, Any]:
        """The caller's team's files as turnout last saw them (newest first)."""
        records, more = await self.store.file_page(principal.key_id, principal.team_id, purpose, after, limit)
        return {"object": "list", **listing(records, [r.file for r in records], more)}

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
        file = await self.places.file(principal, file_id)
        if file.purpose != "batch" or file.endpoint is None:
            raise InvalidRequest(f"The file '{file_id}' is not a batch input file.", param="input_file_id")
        if body.get("endpoint") != file.endpoint:
            raise InvalidRequest(
                f"'endpoint' must be '{file.endpoint}', the url the file's requests name.", param="endpoint"
            )
        route = self.places.authorised(principal, file.place.alias)
        upstream, target = self.places.target(file.place, WIRE)
        sent: dict[str, Any] = {
            "input_file_id": file.id,
            "endpoint": upstream.line_prefix + file.endpoint[len("/v1") :],
            "completion_window": window,
        }
        if metadata is not None:
            sent["metadata"] = metadata
        amount = most(target, file.max_input_tokens, file.max_output_tokens)
        creation = Creation(route, file.place, amount, "batches", sent, "status", "validating")
        record = await self.created(principal, upstream, creation)
        return _shown(record.batch, record)

    async def retrieve_batch(self, principal: Principal, batch_id: str) -> dict[str, Any]:
        record, upstream, target = await self._call(principal, batch_id)
        answer = await upstream.get(f"batches/{record.id}")
        await self.observe(record, answer, upstream, target)
        return _shown(answer, record)

    async def cancel_batch(self, principal: Principal, batch_id: str) -> dict[str, Any]:
        record, upstream, target = await self._call(principal, batch_id)
        answer = await upstream.post(f"batches/{record.id}/cancel")
        await self.observe(record, answer, upstream, target)
        return _shown(answer, record)

    async def list_batches(self, principal: Principal, after: str | None, limit: int) -> dict[str, Any]:
        records, more = await self.store.page(self.api, principal.key_id, principal.team_id, after, limit)
        return {"object": "list", **listing(records, [_shown(r.batch, r) for r in records], more)}

    async def observe(
        self, record: BatchRecord, answer: dict[str, Any], upstream: BatchUpstream, target: Target | None
    ) -> None:
        """Keep the batch's last state, make its output files reachable by its owner, and account
        it once it has finished."""
        status = str(answer.get("status") or record.status)[:32]
        await self.store.update_batch(record.id, status, answer)
        for field in ("output_file_id", "error_file_id"):
            produced = answer.get(field)
            if isinstance(produced, str) and ID.match(produced):
                output = {"id": produced, "object": "file", "purpose": "batch_output"}
                await self.store.add_file(
                    FileRecord(produced, record.place, record.owner, "batch_output", None, 0, 0, 0, output)
                )
        if status in TERMINAL and record.accounted_at is None:
            usage = Usage(service_tier=BATCH_TIER)
            output_id = answer.get("output_file_id")
            if isinstance(output_id, str) and output_id:
                usage = await output_usage(upstream, output_id)
            await self.accountant.account(record, usage, target, failed=status == "failed")

    async def refresh(self, record: BatchRecord) -> None:
        """Ask the provider about the batch, and act on what it says (the poll's step)."""
        upstream, target = self.places.target(record.place, WIRE)
        await self.observe(record, await upstream.get(f"batches/{record.id}"), upstream, target)


def _upload_parts(form: Form) -> tuple[str, Upload]:
    """The form's `purpose` and `file`, each once, and nothing else."""
    named: dict[str, bytes | Upload] = {}
    parts = [(name, value.encode()) for name, value in form.fields] + [(f.name, f) for f in form.files]
    for name, part in parts:
        if name not in ("purpose", "file"):
            raise InvalidRequest(f"Unrecognized form field: '{name[:100]}'.", param=name[:100])
        if name in named:
            raise InvalidRequest(f"The form field '{name}' is given twice.", param=name)
        named[name] = part
    file = named.get("file")
    if not isinstance(file, Upload):
        raise InvalidRequest("The form needs a 'file' part with a filename.", param="file")
    purpose = named.get("purpose")
    if purpose is None:
        raise InvalidRequest("The form needs a 'purpose' field.", param="purpose")
    raw = purpose.data if isinstance(purpose, Upload) else purpose
    if len(raw) > 64:
        raise InvalidRequest("'purpose' is too long.", param="purpose")
    return raw.decode("utf-8", "replace").strip(), file


def _shown(answer: dict[str, Any], record: BatchRecord) -> dict[str, Any]:
    """The provider's batch object as the client knows it: its endpoint and model as it named them."""
    shown = dict(answer)
    endpoint = shown.get("endpoint")
    if isinstance(endpoint, str) and not endpoint.startswith("/v1/"):
        shown["endpoint"] = "/v1" + endpoint
    if "model" in shown:
        shown["model"] = record.place.alias
    return shown
