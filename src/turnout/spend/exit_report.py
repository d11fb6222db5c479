"""If a provider vanished tonight, how much of its traffic could move today, and at what cost?

Read from history, not from prompts: each answered ledger row of the period (its alias, the
provider that served it, its tokens and what the request needed: `features`, migration 0016) is
judged against the alternatives the configuration gives it now — the alias's deployments on
*other* providers, then those of its fallback aliases (and theirs) — with their capabilities
(streaming, tools, images, structured outputs, embeddings), context windows and longest answers.
A row is movable when one alternative could carry it; else it is stuck for the first reason every
alternative shares ("no alternative carries images", "longer than every alternative's context
window" ...). Movable rows are priced at the cheapest alternative's current price (the cost
difference), and counted per minute against the alternative that would take them (its `rpm`
and `tpm`, where the configuration gives them), so a move that fits on paper but not in capacity
shows. Rows are streamed from the database, a few columns each: a month of a busy gateway takes
seconds, not memory.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from turnout.domain.ledger_entry import REHEARSAL_KEY_ID
from turnout.domain.pricing import Micros
from turnout.domain.request_features import IMAGES, STREAMING, STRUCTURED, TOOLS
from turnout.domain.usage import Usage
from turnout.routing.catalog import Catalog, Target
from turnout.storage.database import Database
from turnout.storage.tables import ledger
from turnout.storage.times import as_utc

CHAT_APIS = ("chat", "messages", "responses")
NO_ALTERNATIVE = "no alternative deployment on another provider"
PASSTHROUGH = "the provider's own API (pass-through)"
# What a request needed, in the order a stuck row is explained by it.
NEEDS: tuple[tuple[int, str, str], ...] = (
    (IMAGES, "images", "no alternative carries images"),
    (TOOLS, "tools", "no alternative carries tools"),
    (STRUCTURED, "json_schema", "no alternative carries structured outputs"),
    (STREAMING, "streaming", "no alternative streams"),
)
CONTEXT = "longer than every alternative's context window"
OUTPUT = "a longer answer than every alternative gives"
EMBEDDINGS = "no alternative makes embeddings"
CHAT = "every alternative is a reranker, a moderation model, or an image or audio model"
# the APIs only a model declared for them serves (supports: rerank / moderation / image_generation /
# transcription / speech), and why none can
TASKS = {
    "rerank": ("rerank", "no alternative reranks"),
    "moderations": ("moderation", "no alternative moderates"),
    "images": ("image_generation", "no alternative generates images"),
    "transcriptions": ("transcription", "no alternative transcribes audio"),
    "speech": ("speech", "no alternative makes speech"),
}


@dataclass
class _Moves:
    """Where one alias's traffic on one provider could go."""

    alternatives: tuple[Target, ...]


@dataclass
class ProviderExit:
    provider: str
    requests: int = 0
    tokens: int = 0
    cost: Micros = 0
    unpriced: int = 0  # rows with no known cost
    movable_requests: int = 0
    movable_tokens: int = 0
    movable_cost: Micros = 0
    cost_if_moved: Micros = 0  # the movable rows at the cheapest alternative's price
    moved_unpriced: int = 0  # movable rows no capable alternative has a price for
    stuck: Counter[str] = field(default_factory=Counter)
    stuck_aliases: set[str] = field(default_factory=set)  # aliases with no alternative at all
    # per alternative that would take the rows: requests and tokens in each minute
    load: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    token_load: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    limits: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        def share(part: int, whole: int) -> float:
            return round(part / whole, 4) if whole else 0.0

        alternatives = []
        for name in sorted(self.load):
            peak_rpm = max(self.load[name].values(), default=0)
            peak_tpm = max(self.token_load[name].values(), default=0)
            rpm, tpm = self.limits.get(name, (None, None))
            alternatives.append(
                {
                    "deployment": name,
                    "requests": sum(self.load[name].values()),
                    "peak_rpm": peak_rpm,
                    "rpm_limit": rpm,
                    "peak_tpm": peak_tpm,
                    "tpm_limit": tpm,
                    "over_capacity": (rpm is not None and peak_rpm > rpm)
                    or (tpm is not None and peak_tpm > tpm),
                }
            )
        stuck = self.requests - self.movable_requests
        return {
            "provider": self.provider,
            "requests": self.requests,
            "tokens": self.tokens,
            "cost_usd": _usd(self.cost),
            "unpriced_requests": self.unpriced,
            "movable": {
                "requests": self.movable_requests,
                "request_share": share(self.movable_requests, self.requests),
                "tokens": self.movable_tokens,
                "token_share": share(self.movable_tokens, self.tokens),
                "cost_usd": _usd(self.movable_cost),
                "spend_share": share(self.movable_cost, self.cost),
                "cost_if_moved_usd": _usd(self.cost_if_moved),
                "cost_difference_usd": _usd(self.cost_if_moved - self.movable_cost),
                "unpriced_after_move": self.moved_unpriced,
            },
            "stuck": [
                {"reason": reason, "requests": n, "request_share": share(n, self.requests)}
                for reason, n in self.stuck.most_common()
            ],
            "stuck_requests": stuck,
            "aliases_without_alternative": sorted(self.stuck_aliases),
            "alternatives": alternatives,
        }


def _usd(micros: Micros) -> str:
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


class ExitReadiness:
    """Judges ledger rows against the configuration's alternatives (built per report)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._moves: dict[tuple[str, str], _Moves] = {}
        self.providers: dict[str, ProviderExit] = {}

    def alternatives(self, alias: str, provider: str) -> tuple[Target, ...]:
        key = (alias, provider)
        moves = self._moves.get(key)
        if moves is None:
            moves = _Moves(tuple(self._alternatives(alias, provider)))
            self._moves[key] = moves
        return moves.alternatives

    def _alternatives(self, alias: str, provider: str) -> Iterable[Target]:
        seen_aliases: set[str] = set()
        queue = [alias]
        found: dict[str, Target] = {}
        while queue:
            name = queue.pop(0)
            if name in seen_aliases:
                continue
            seen_aliases.add(name)
            route = self.catalog.resolve(name)
            if route is None:
                continue
            for target in route.targets:
                if target.provider != provider and target.label not in found:
                    found[target.label] = target
            queue += list(route.policy.fallbacks)
        return found.values()

    def add(self, row: Any) -> None:
        provider: str = row.provider
        report = self.providers.get(provider)
        if report is None:
            report = self.providers[provider] = ProviderExit(provider)
        tokens = row.input_tokens + row.output_tokens
        report.requests += 1
        report.tokens += tokens
        if row.cost_micros is None:
            report.unpriced += 1
        else:
            report.cost += row.cost_micros
        if row.api == "passthrough":
            report.stuck[PASSTHROUGH] += 1
            return
        alternatives = self.alternatives(row.alias, provider)
        if not alternatives:
            report.stuck[NO_ALTERNATIVE] += 1
            report.stuck_aliases.add(row.alias)
            return
        capable, reason = _capable(alternatives, row)
        if not capable:
            report.stuck[reason] += 1
            return
        report.movable_requests += 1
        report.movable_tokens += tokens
        report.movable_cost += row.cost_micros or 0
        usage = Usage(
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cached_input_tokens=row.cached_input_tokens,
            cache_write_tokens=row.cache_write_tokens,
            search_units=row.search_units,
            images=row.images,  # (of a kind the ledger does not keep: at the dearest per image)
            audio_seconds=row.audio_seconds,
            characters=row.characters,
        )
        at = as_utc(row.at).timestamp()
        priced = [c for t in capable if (c := _cost(t, usage, at)) is not None]
        if priced:
            report.cost_if_moved += min(priced)
        else:
            report.moved_unpriced += 1
        taker = capable[0]
        minute = int(at // 60)
        report.load[taker.label][minute] += 1
        report.token_load[taker.label][minute] += tokens
        report.limits[taker.label] = (taker.rpm, taker.tpm)

    def describe(self, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
        return {
            "object": "exit_report",
            "since": since.isoformat(),
            "until": until.isoformat(),
            "providers": [self.providers[p].describe() for p in sorted(self.providers)],
        }


def _cost(target: Target, usage: Usage, at: float) -> Micros | None:
    return None if target.price is None else target.price.at(at).cost(usage)


def _capable(alternatives: tuple[Target, ...], row: Any) -> tuple[list[Target], str]:
    """The alternatives that could carry the row (in the order they would be tried), or none and
    the reason every one of them shares."""
    task = TASKS.get(row.api)
    if task is not None:
        capable = [t for t in alternatives if getattr(t.capabilities, task[0])]
        return capable, "" if capable else task[1]
    if row.api == "embeddings":
        capable = [t for t in alternatives if t.capabilities.embeddings and t.capabilities.chat]
        return capable, "" if capable else EMBEDDINGS
    candidates = [t for t in alternatives if t.capabilities.chat]
    if not candidates:
        return [], CHAT
    for bit, capability, reason in NEEDS:
        if row.features & bit:
            candidates = [t for t in candidates if getattr(t.capabilities, capability)]
            if not candidates:
                return [], reason
    needed = row.input_tokens + row.output_tokens
    fitting = [t for t in candidates if t.context_window is None or needed <= t.context_window]
    if not fitting:
        return [], CONTEXT
    answering = [
        t for t in fitting if t.max_output_tokens is None or row.output_tokens <= t.max_output_tokens
    ]
    if not answering:
        return [], OUTPUT
    return answering, ""


ROW_COLUMNS = (
    ledger.c.at,
    ledger.c.api,
    ledger.c.alias,
    ledger.c.provider,
    ledger.c.input_tokens,
    ledger.c.output_tokens,
    ledger.c.cached_input_tokens,
    ledger.c.cache_write_tokens,
    ledger.c.cost_micros,
    ledger.c.features,
    ledger.c.search_units,
    ledger.c.images,
    ledger.c.audio_seconds,
    ledger.c.characters,
)


async def exit_report(
    database: Database, catalog: Catalog, since: dt.datetime, until: dt.datetime
) -> dict[str, Any]:
    """The exit-readiness report over [since, until): per provider, the share of its answered
    requests, tokens and spend the configured alternatives could take now, the rest by reason,
    the cost difference at current prices, and the alternatives' peak load against their limits."""
    since, until = as_utc(since), as_utc(until)
    readiness = ExitReadiness(catalog)
    query = (
        sa.select(*ROW_COLUMNS)
        .where(
            ledger.c.at >= since,
            ledger.c.at < until,
            ledger.c.status < 300,
            ledger.c.provider.is_not(None),
            ledger.c.key_id != REHEARSAL_KEY_ID,  # a rehearsal's replays are not the provider's traffic
            ledger.c.rehearsal.is_(False),  # a mirror's shadows are not the customers' traffic
        )
        .execution_options(yield_per=5000)
    )
    async with database.engine.connect() as conn:
        result = await conn.stream(query)
        async for partition in result.partitions(5000):
            for row in partition:
                readiness.add(row)
    return readiness.describe(since, until)
