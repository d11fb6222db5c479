"""The ledger: one entry per request, keyed by turnout's own request id, written to a local
append-only journal on the hot path (a plain `write`, which survives the process being killed)
and moved into the database in batches by a background task. Replaying a journal is idempotent,
so a crash between the database insert and the journal's removal never counts a request twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from turnout.domain.chat import ChatRequest, counted_prompt_tokens, estimated_text_tokens
from turnout.domain.errors import TurnoutError
from turnout.domain.pricing import Micros
from turnout.domain.principal import Principal
from turnout.domain.usage import Usage

if TYPE_CHECKING:
    from turnout.routing.catalog import Route
    from turnout.routing.router import Served
    from turnout.spend.billing import Billing, PresetCharge


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What one request did and cost. `cost_micros` is None when the model's price is unknown;
    `estimated` marks token counts turnout computed because the provider reported none."""

    request_id: str
    at: float  # when the request arrived, unix seconds
    api: str  # chat | messages | responses | embeddings
    key_id: str
    team_id: str | None = None
    user_id: str | None = None
    alias: str = ""
    deployment: str | None = None
    provider: str | None = None
    model: str | None = None
    stream: bool = False
    status: int = 200
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    cost_micros: Micros | None = 0
    latency_ms: int = 0
    attempts: int = 0
    customer_price_micros: Micros | None = None  # what the caller's team pays (domain.billing)
    preset: str | None = None  # called through `preset/<name>`
    preset_team_id: str | None = None  # the preset's creator
    revenue_share_micros: Micros | None = None  # credited to the preset's creator


entry_encoder = msgspec.json.Encoder()
entry_decoder = msgspec.json.Decoder(LedgerEntry)


class Outcome:
    """What a request came to, collected by the pipeline as it goes: the deployment that served it,
    the usage it reported, the status it ended with. `entry` turns it into the ledger's entry."""

    __slots__ = (
        "at",
        "billed",
        "charged",
        "estimate",
        "preset",
        "recorded",
        "served",
        "started",
        "status",
        "usage",
    )

    def __init__(self) -> None:
        self.at = time.time()
        self.started = time.perf_counter()
        self.served: Served | None = None
        self.usage: Usage | None = None
        self.status = 200
        self.estimate: Callable[[], Usage] | None = None  # tokens by turnout's count, if none reported
        self.recorded = False
        self.billed: Micros | None = 0  # what the ledger entry charged
        self.charged: Micros | None = 0  # ... and what the customer paid (domain.billing)
        self.preset: PresetCharge | None = None  # the preset it was called through

    def failed(self, error: BaseException) -> None:
        if isinstance(error, TurnoutError):
            self.status = error.status
        else:  # cancelled: the client went away (499, as nginx logs it); else our own failure
            self.status = 499 if isinstance(error, asyncio.CancelledError) else 500

    def cost(self, usage: Usage | None = None) -> Micros | None:
        """What the request cost (None: its deployment's price is unknown)."""
        if self.served is None:
            return 0
        price = self.served.target.price
        return None if price is None else price.cost(usage or self.usage or NO_USAGE)

    def entry(
        self,
        request_id: str,
        api: str,
        principal: Principal,
        route: Route,
        *,
        stream: bool,
        billing: Billing | None = None,
    ) -> LedgerEntry:
        served, usage = self.served, self.usage
        estimated = False
        if usage is None and served is not None and self.estimate is not None:
            usage, estimated = self.estimate(), True
        usage = usage or NO_USAGE
        cost = self.billed = self.cost(usage)
        charge = None if billing is None else billing.charge(principal, usage, cost, self.preset)
        self.charged = cost if charge is None else charge.customer_price
        preset = self.preset
        return LedgerEntry(
            request_id=request_id,
            at=self.at,
            api=api,
            key_id=principal.key_id,
            team_id=principal.team_id,
            user_id=principal.user_id,
            alias=route.alias,
            deployment=served.target.label if served else None,
            provider=served.target.provider if served else None,
            model=served.target.model if served else None,
            stream=stream,
            status=self.status,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            estimated=estimated or usage.estimated,
            cost_micros=cost,
            latency_ms=round((time.perf_counter() - self.started) * 1000),
            attempts=served.attempts if served else 0,
            customer_price_micros=cost if charge is None else charge.customer_price,
            preset=None if preset is None else preset.name,
            preset_team_id=None if preset is None else preset.team_id,
            revenue_share_micros=None if charge is None else charge.revenue_share,
        )


NO_USAGE = Usage()


def estimated_usage(request: ChatRequest, sent: str | None) -> Usage:
    """turnout's count for a request whose provider reported no usage (a client that left
    mid-stream, say): the prompt's tokens, and the answer's from the text the client was sent
    (RelayStream.sent_text; None where it was not tracked), both by tokenizer (domain.tokens)."""
    output = estimated_text_tokens((sent,)) if sent else 0
    return Usage(input_tokens=counted_prompt_tokens(request), output_tokens=output, estimated=True)
