"""Prices and cost, in exact money: prices are decimals (USD per 1M tokens; a reranker's searches
USD per 1,000 search units), costs are integer micro-dollars (one USD per 1M tokens is one
micro-dollar per token). Never floats."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from turnout.domain.usage import Usage

Micros = int  # money: integer micro-dollars (1 USD = 1,000,000)
CAPABILITIES = frozenset(
    {"tools", "images", "json_schema", "reasoning", "embeddings", "rerank", "moderation"}
)
# what a model does besides chat, each behind its own endpoint (a model with one of them and no
# `chat` capability is never sent a chat request)
MEDIA_CAPABILITIES = frozenset({"image_generation", "transcription", "speech"})
MICROS_PER_THOUSAND = 1000  # USD per 1,000 units is this many micro-dollars per unit


MAX_DECIMAL = Decimal(10**15)  # far above any price, markup or amount; keeps arithmetic exact


def decimal_price(value: object) -> Decimal:
    """A price as written (a string or a number; a number through its shortest text, so 2.5 is
    exactly 2.5): non-negative, finite and at most 10^15, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError('a price is a number of USD per 1M tokens, e.g. "2.50"')
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a price: {value!r}") from None
    if not price.is_finite() or price < 0:
        raise ValueError(f"a price must be zero or more: {value!r}")
    if price > MAX_DECIMAL:
        raise ValueError(f"a price must be at most {MAX_DECIMAL}: {value!r}")
    return price


STANDARD_TIERS = frozenset({"auto", "default", "standard", "standard_only", "scale", "on_demand"})
SERVICE_TIERS = frozenset({"flex", "priority", "batch"})  # the tiers a price can name


def tier_of(service_tier: str | None) -> str | None:
    """The priced tier a provider's (or a request's) `service_tier` stands for: flex, priority or
    batch; None for the standard tier (auto, default, standard, OpenAI's scale tier, anything
    unknown)."""
    return service_tier if service_tier in SERVICE_TIERS else None


@functools.lru_cache(maxsize=4096)  # read for every versioned price of every request
def since_timestamp(since: str) -> float:
    """When a price version starts (unix seconds): a date from its midnight UTC, or an instant
    (`2025-09-05T16:00:00Z`); ValueError for anything else."""
    if len(since) == 10:
        return dt.datetime.fromisoformat(since).replace(tzinfo=dt.UTC).timestamp()
    if not since.endswith("Z"):
        raise ValueError(f"not a date (YYYY-MM-DD) or a UTC time (YYYY-MM-DDTHH:MM:SSZ): {since!r}")
    return dt.datetime.fromisoformat(since[:-1]).replace(tzinfo=dt.UTC).timestamp()


@dataclass(frozen=True, slots=True)
class LongContext:
    """Rates for a request whose prompt (cache reads and writes included) is above `above`
    tokens: every token of it is billed at them (Gemini 2.5 Pro, Claude's 1M-context tiers)."""

    above: int
    rates: ModelPrice


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """Prices per unit rather than per token, as providers price images and audio: USD per image
    by its quality and size (`"hd 1024x1792"`, or the size alone where quality does not change
    the price), USD per minute of audio transcribed (billed by the second), USD per 1M characters
    read aloud."""

    per_image: tuple[tuple[str, Decimal], ...] = ()
    per_audio_minute: Decimal | None = None
    per_1m_characters: Decimal | None = None

    def image(self, kind: str | None) -> Decimal | None:
        """The price of one image of `kind` ("quality size"): its own, else its size's, else the
        dearest listed (an image is never billed below what it may cost)."""
        if not self.per_image:
            return None
        prices = dict(self.per_image)
        if kind is not None:
            if kind in prices:
                return prices[kind]
            size = kind.rpartition(" ")[2]
            if size in prices:
                return prices[size]
        return max(prices.values())

    def micros(self, usage: Usage) -> Decimal:
        """What `usage`'s units cost, in (unrounded) micro-dollars."""
        total = Decimal(0)
        if usage.images:
            each = self.image(usage.image_kind)
            if each is not None:
                total += usage.images * each * _MICROS
        if usage.audio_seconds and self.per_audio_minute is not None:
            total += usage.audio_seconds * self.per_audio_minute * _MICROS / 60
        if usage.characters and self.per_1m_characters is not None:
            total += usage.characters * self.per_1m_characters  # USD per 1M: micros per character
        return total


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """What a model's tokens cost, USD per 1M tokens. Cache reads and writes default to the
    input price where the provider does not price them apart; a 1-hour cache write (Anthropic's)
    to the 5-minute one. A price may step up for long prompts (`long_context`), differ by service
    tier (`service_tiers`: flex, priority, batch) and change over time: `since` is the date (UTC)
    from which it applies, `earlier` the versions before it, newest first."""

    input: Decimal
    output: Decimal = Decimal(0)
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    search_units: Decimal | None = None  # USD per 1,000 search units (rerankers)
    long_context: LongContext | None = None
    service_tiers: tuple[tuple[str, ModelPrice], ...] = ()
    since: str = ""  # YYYY-MM-DD (from midnight UTC) or YYYY-MM-DDTHH:MM:SSZ; "" where unknown
    earlier: tuple[ModelPrice, ...] = ()
    context_window: int | None = None
    max_output_tokens: int | None = None  # the most tokens one answer may hold, when documented
    capabilities: frozenset[str] = frozenset()
    units: UnitPrices | None = None  # images, audio, characters (None: priced by tokens only)
    # a shipped price's figures that no provider page backed (config/prices.yaml's `source`):
    # shown by `turnout config check` and warned of at start, so an operator can set their own
    unverified: frozenset[str] = frozenset()

    @property
    def blended(self) -> Decimal:
        """One number to order deployments by (input counts 3:1, as prompts outweigh answers)."""
        return (3 * self.input + self.output) / 4

    @property
    def version(self) -> str:
        """What the ledger records as the price a request was charged at: its date."""
        return self.since

    def at(self, when: float | None) -> ModelPrice:
        """The version in force at `when` (unix seconds): the newest whose date has come; the
        oldest where none has (None: this one)."""
        if when is None or not self.earlier:
            return self
        for version in (self, *self.earlier):
            if version.since and since_timestamp(version.since) <= when:
                return version
        return self.earlier[-1]

    def rates(self, usage: Usage) -> ModelPrice:
        """The rates `usage` is billed at: its service tier's (standard where the tier is not
        priced), above a long-context threshold the long-context ones."""
        price = self
        if usage.service_tier is not None and self.service_tiers:
            tier = tier_of(usage.service_tier)
            price = next((p for name, p in self.service_tiers if name == tier), self)
        if price.long_context is not None and usage.input_tokens > price.long_context.above:
            price = price.long_context.rates
        return price

    def cost(self, usage: Usage, at: float | None = None) -> Micros:
        """The cost of `usage` at the version in force `at` (unix seconds; None: this version),
        rounded half up to the micro-dollar. `usage.input_tokens` counts every prompt token,
        cache reads and writes included (as OpenAI counts them)."""
        version = self if at is None or not self.earlier else self.at(at)
        rates = version  # (a price without tiers or long-prompt steps has its own rates: no calls)
        if version.service_tiers or version.long_context is not None:
            rates = version.rates(usage)
        if version.units is not None:  # images and audio: by unit, and by token where reported
            units = version.units.micros(usage)
            tokens = dataclasses.replace(version, units=None).cost(usage)
            return tokens + int(units.quantize(_ONE, rounding=ROUND_HALF_UP))
        cached = usage.cached_input_tokens
        written = usage.cache_write_tokens
        if usage.search_units and version.search_units is not None:  # a reranker's searches
            searched = usage.search_units * version.search_units * MICROS_PER_THOUSAND
        else:
            searched = _ZERO
        if not (cached or written or usage.cache_write_1h_tokens):  # no cache: two products, not five
            total = max(0, usage.input_tokens) * rates.input + usage.output_tokens * rates.output + searched
            return int(total.quantize(_ONE, rounding=ROUND_HALF_UP))
        hour = min(usage.cache_write_1h_tokens, written)
        uncached = max(0, usage.input_tokens - cached - written)
        write = rates.input if rates.cache_write is None else rates.cache_write
        total = (
            uncached * rates.input
            + cached * (rates.input if rates.cached_input is None else rates.cached_input)
            + (written - hour) * write
            + hour * (write if rates.cache_write_1h is None else rates.cache_write_1h)
            + usage.output_tokens * rates.output
            + searched
        )
        return int(total.quantize(_ONE, rounding=ROUND_HALF_UP))


_ONE = Decimal(1)
_MICROS = Decimal(1_000_000)
_ZERO = Decimal(0)


def format_usd(micros: Micros) -> str:
    """Micro-dollars as dollars with six decimals ("0.001250")."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"
