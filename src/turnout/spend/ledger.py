"""The ledger: one entry per upstream attempt, keyed by turnout's own request id and the attempt's
number (a request that reached no upstream is one entry, attempt 0), written to a local
append-only journal on the hot path (a plain `write`, which survives the process being killed)
and moved into the database in batches by a background task. Replaying a journal is idempotent,
so a crash between the database insert and the journal's removal never counts a request twice."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import msgspec

from turnout.domain.errors import CLIENT_CLOSED, TurnoutError
from turnout.domain.ledger_entry import LedgerEntry
from turnout.domain.pricing import Micros
from turnout.domain.principal import Principal
from turnout.domain.usage import Usage

if TYPE_CHECKING:
    from turnout.routing.catalog import Route, Target
    from turnout.routing.values import AttemptRecord, Served
    from turnout.spend.billing import Billing, PresetCharge


class Outcome:
    """What a request came to, collected by the pipeline as it goes: every upstream attempt it
    made (`tally`), the deployment that served it, the status it ended with. `entries` turns it
    into the ledger's entries, one per attempt."""

    __slots__ = (
        "at",
        "billed",
        "charged",
        "elapsed",
        "features",
        "preset",
        "reason",
        "recorded",
        "served",
        "service_tier",
        "started",
        "status",
        "tally",
        "usage",
    )

    def __init__(self) -> None:
        self.at = time.time()
        self.started = time.monotonic()  # (the clock streams' first tokens are timed with)
        self.elapsed = 0.0  # seconds from its arrival to its entries (set by `entries`)
        self.served: Served | None = None
        self.tally: list[AttemptRecord] = []
        self.usage: Usage | None = None  # every attempt's, summed (None: none reported or counted)
        self.status = 200
        self.reason: str | None = None  # why it failed
        self.recorded = False
        self.billed: Micros | None = 0  # what the ledger entries charged
        self.charged: Micros | None = 0  # ... and what the customer paid (domain.billing)
        self.preset: PresetCharge | None = None  # the preset it was called through
        self.service_tier: str | None = None  # the tier the request asked for (`service_tier`)
        self.features = 0  # what the request needed (domain/request_features.py)

    def failed(self, error: BaseException, cancelled: tuple[int, str] = (499, CLIENT_CLOSED)) -> None:
        """The request failed with `error`. Cancelled, it ended as `cancelled` says (the client went
        away: 499, as nginx logs it; or the gateway's shutdown cut it short); anything else is our
        own failure (500)."""
        if isinstance(error, TurnoutError):
            self.status, self.reason = error.status, error.reason
        elif isinstance(error, asyncio.CancelledError):
            self.status, self.reason = cancelled
        else:
            self.status, self.reason = 500, "internal_error"

    def left(self) -> None:
        """The client left a stream before its end (499)."""
        self.status, self.reason = 499, CLIENT_CLOSED

    def entries(
        self,
        request_id: str,
        api: str,
        principal: Principal,
        route: Route,
        *,
        stream: bool,
        billing: Billing | None = None,
    ) -> list[LedgerEntry]:
        """One entry per attempt (costs and charges summed into `billed` and `charged`)."""
        entry = _Entries(self, request_id, api, principal, route, stream, billing)
        if not self.tally:
            return [entry.of(0, None, self.status, self.reason, None, False)]
        winner = None if self.served is None else self.served.record
        rows = []
        for record in self.tally:
            status, reason = (record.status, record.reason) if record.status else (self.status, self.reason)
            if record is winner and self.status != 200:
                status, reason = self.status, self.reason  # answered, but the request still failed
            usage, estimated = record.used()
            rows.append(entry.of(record.number, record.target, status, reason, usage, estimated))
        return rows


class _Entries:
    """Builds a request's entries, summing what they cost into its outcome."""

    def __init__(
        self,
        outcome: Outcome,
        request_id: str,
        api: str,
        principal: Principal,
        route: Route,
        stream: bool,
        billing: Billing | None,
    ) -> None:
        self.outcome = outcome
        self.request_id = request_id
        self.api = api
        self.principal = principal
        self.route = route
        self.stream = stream
        self.billing = billing
        outcome.elapsed = time.monotonic() - outcome.started
        self.latency_ms = round(outcome.elapsed * 1000)
        outcome.billed = outcome.charged = 0
        outcome.usage = None

    def of(
        self,
        attempt: int,
        target: Target | None,
        status: int,
        reason: str | None,
        usage: Usage | None,
        estimated: bool,
    ) -> LedgerEntry:
        outcome, principal, preset = self.outcome, self.principal, self.outcome.preset
        counted = usage or NO_USAGE
        empty = counted == NO_USAGE
        if not empty and counted.service_tier is None and outcome.service_tier is not None:
            counted = msgspec.structs.replace(counted, service_tier=outcome.service_tier)
        price = None if target is None else target.price
        version = None if price is None or empty else price.at(outcome.at)
        cost = 0 if target is None or empty else (None if version is None else version.cost(counted))
        charge = None if self.billing is None else self.billing.charge(principal, counted, cost, preset)
        customer = cost if charge is None else charge.customer_price
        billed, charged = outcome.billed, outcome.charged  # (summed inline: unknown if any is)
        outcome.billed = None if billed is None or cost is None else billed + cost
        outcome.charged = None if charged is None or customer is None else charged + customer
        if usage is not None:
            outcome.usage = usage if outcome.usage is None else _sum(outcome.usage, usage)
        return LedgerEntry(
            request_id=self.request_id,
            attempt=attempt,
            at=outcome.at,
            api=self.api,
            key_id=principal.key_id,
            team_id=principal.team_id,
            user_id=principal.spender,
            alias=self.route.alias,
            deployment=None if target is None else target.label,
            provider=None if target is None else target.provider,
            model=None if target is None else target.model,
            stream=self.stream,
            status=status,
            input_tokens=counted.input_tokens,
            output_tokens=counted.output_tokens,
            cached_input_tokens=counted.cached_input_tokens,
            cache_write_tokens=counted.cache_write_tokens,
            reasoning_tokens=counted.reasoning_tokens,
            estimated=estimated or counted.estimated,
            cost_micros=cost,
            cache_write_1h_tokens=counted.cache_write_1h_tokens,
            service_tier=None if counted.service_tier is None else counted.service_tier[:32],
            price_version=None if version is None else version.version or None,
            latency_ms=self.latency_ms,
            attempts=len(outcome.tally),
            customer_price_micros=customer,
            preset=None if preset is None else preset.name,
            preset_team_id=None if preset is None else preset.team_id,
            revenue_share_micros=None if charge is None else charge.revenue_share,
            reason=None if status < 400 else (reason or "error")[:64],
            features=outcome.features,
            search_units=counted.search_units,
            images=counted.images,
            audio_seconds=counted.audio_seconds,
            characters=counted.characters,
        )


def _sum(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cached_input_tokens=a.cached_input_tokens + b.cached_input_tokens,
        cache_write_tokens=a.cache_write_tokens + b.cache_write_tokens,
        cache_write_1h_tokens=a.cache_write_1h_tokens + b.cache_write_1h_tokens,
        reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
        search_units=a.search_units + b.search_units,
        estimated=a.estimated or b.estimated,
        service_tier=a.service_tier or b.service_tier,
        images=a.images + b.images,
        image_kind=a.image_kind or b.image_kind,
        audio_seconds=a.audio_seconds + b.audio_seconds,
        characters=a.characters + b.characters,
    )


NO_USAGE = Usage()
