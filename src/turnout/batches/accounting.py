"""A finished batch's usage in the ledger, once: its output file's lines summed (each answered
line's `usage`), priced at the deployment's batch rates, recorded under the request id
`batch:<id>`. Of every instance (and every restart) that finds the batch finished, only the one
whose update marks it accounted in the database (store.claim_accounting) journals the entry and
settles the budgets; the ledger inserts an entry once however often it is journaled."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from turnout.batches.store import BatchRecord, BatchStore
from turnout.batches.upstream import BatchUpstream
from turnout.domain.errors import UpstreamProtocolError
from turnout.domain.ledger_entry import LedgerEntry
from turnout.domain.principal import Principal
from turnout.domain.usage import OpenAIUsage, Usage
from turnout.keys.index import KeyIndex
from turnout.providers.anthropic.wire import AnthropicUsage
from turnout.routing.catalog import Target
from turnout.spend.billing import Billing
from turnout.spend.budget_values import Reservation
from turnout.spend.budgets import Budgets
from turnout.spend.recorder import SpendRecorder

log = logging.getLogger("turnout.batches")

BATCH_TIER = "batch"
MAX_OUTPUT_BYTES = 1024 * 1024 * 1024  # an output file read for its usage (1 GiB at most)
MAX_OUTPUT_LINE = 64 * 1024 * 1024


class _Response(msgspec.Struct, frozen=True):
    status_code: int = 0
    body: dict[str, Any] | None = None


class _OutputLine(msgspec.Struct, frozen=True):
    response: _Response | None = None


_line = msgspec.json.Decoder(_OutputLine)
_usage = msgspec.json.Decoder(OpenAIUsage)


def ledger_id(batch_id: str) -> str:
    """The ledger's request id for a batch (64 characters at most, as the ledger keeps)."""
    return ("batch:" + batch_id)[:64]


async def download_lines(
    chunks: AsyncIterator[bytes],
    provider: str,
    max_bytes: int = MAX_OUTPUT_BYTES,
    max_line: int = MAX_OUTPUT_LINE,
) -> AsyncIterator[bytes]:
    """The lines of a JSON Lines download as they arrive (each byte looked at once), within bounds."""
    held = bytearray()
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise UpstreamProtocolError(
                f"The provider '{provider}' sent batch results over {max_bytes} bytes."
            )
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            held += chunk[start:end]
            yield bytes(held)
            held.clear()
            start = end + 1
        held += chunk[start:]
        if len(held) > max_line:
            raise UpstreamProtocolError(
                f"The provider '{provider}' sent a batch result line over {max_line} bytes."
            )
    if held:
        yield bytes(held)


def _add(total: Usage, usage: Usage) -> Usage:
    return Usage(
        input_tokens=total.input_tokens + usage.input_tokens,
        output_tokens=total.output_tokens + usage.output_tokens,
        cached_input_tokens=total.cached_input_tokens + usage.cached_input_tokens,
        cache_write_tokens=total.cache_write_tokens + usage.cache_write_tokens,
        cache_write_1h_tokens=total.cache_write_1h_tokens + usage.cache_write_1h_tokens,
        reasoning_tokens=total.reasoning_tokens + usage.reasoning_tokens,
        service_tier=BATCH_TIER,
    )


class _Message(msgspec.Struct, frozen=True):
    usage: AnthropicUsage | None = None


class _Result(msgspec.Struct, frozen=True):
    type: str = ""
    message: _Message | None = None


class _ResultLine(msgspec.Struct, frozen=True):
    result: _Result | None = None


_result = msgspec.json.Decoder(_ResultLine)


async def results_usage(upstream: BatchUpstream, batch_id: str) -> Usage:
    """The usage of every succeeded request of an Anthropic message batch's results, summed."""
    total = Usage(service_tier=BATCH_TIER)
    response = await upstream.get_stream(f"messages/batches/{batch_id}/results")
    async for line in download_lines(response.iter_chunks(), upstream.provider):
        if not line.strip():
            continue
        try:
            result = _result.decode(line).result
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if result is not None and result.type == "succeeded" and result.message and result.message.usage:
            total = _add(total, result.message.usage.canonical())
    return total


async def output_usage(upstream: BatchUpstream, file_id: str) -> Usage:
    """The usage of every answered line of an output file, summed (lines that fail to decode, or
    carry no usage, count nothing)."""
    total = Usage(service_tier=BATCH_TIER)
    response = await upstream.content(file_id)
    async for line in download_lines(response.iter_chunks(), upstream.provider):
        if not line.strip():
            continue
        try:
            parsed = _line.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        answer = parsed.response
        if answer is None or answer.status_code != 200 or not answer.body or "usage" not in answer.body:
            continue
        try:
            usage = msgspec.convert(answer.body["usage"], OpenAIUsage).canonical()
        except msgspec.ValidationError:
            continue
        total = _add(total, usage)
    return total


class BatchAccountant:
    def __init__(
        self,
        store: BatchStore,
        keys: KeyIndex,
        budgets: Budgets,
        spend: SpendRecorder,
        billing: Billing,
    ) -> None:
        self.store = store
        self.keys = keys
        self.budgets = budgets
        self.spend = spend
        self.billing = billing
        self.reservations: dict[str, Reservation] = {}  # by batch id: reserved on this instance

    def principal(self, record: BatchRecord) -> Principal:
        """The batch's key as this instance knows it, else as the batch recorded it."""
        for key_hash in self.keys.hashes_of(record.owner.key_id):
            known = self.keys.get(key_hash)
            if known is not None:
                return known
        owner = record.owner
        return Principal(
            key_id=owner.key_id, name="", role="member", team_id=owner.team_id, user_id=owner.user_id
        )

    async def account(
        self, record: BatchRecord, usage: Usage, target: Target | None, *, failed: bool
    ) -> None:
        """Record the finished batch's usage and settle its budgets (once, whoever else tries)."""
        principal = self.principal(record)
        if not await self.store.claim_accounting(record.id):
            self.release(record.id)  # another instance (or an earlier round) accounted it
            return
        # from the claim to the journal's write nothing awaits: no other task runs in between
        entry = self._entry(record, principal, usage, target, failed)
        self.spend.record(entry)
        reservation = self.reservations.pop(record.id, None)
        if reservation is None:
            reservation = self.budgets.unreserved(principal, record.place.alias)
        self.budgets.settle(reservation, usage, answered=True, cost=entry.cost_micros)
        log.info(
            "batch %s accounted: %d input and %d output tokens",
            record.id,
            usage.input_tokens,
            usage.output_tokens,
        )

    def release(self, batch_id: str) -> None:
        """Give back this instance's reservation for a batch accounted elsewhere."""
        reservation = self.reservations.pop(batch_id, None)
        if reservation is not None:
            self.budgets.release(reservation)

    def _entry(
        self, record: BatchRecord, principal: Principal, usage: Usage, target: Target | None, failed: bool
    ) -> LedgerEntry:
        price = None if target is None else target.price
        version = None if price is None else price.at(record.created_at)
        cost = None if version is None else version.cost(usage)
        customer = self.billing.charge(principal, usage, cost).customer_price
        return LedgerEntry(
            request_id=ledger_id(record.id),
            attempt=1,
            at=record.created_at,
            api="batch",
            key_id=record.owner.key_id,
            team_id=record.owner.team_id,
            user_id=record.owner.user_id,
            alias=record.place.alias,
            deployment=record.place.deployment,
            provider=record.place.provider,
            model=record.place.model,
            status=502 if failed else 200,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_micros=cost,
            service_tier=BATCH_TIER,
            price_version=None if version is None else version.version or None,
            attempts=1,
            customer_price_micros=customer,
            reason="batch_failed" if failed else None,
        )
