"""Prices and cost, in exact money: prices are decimals (USD per 1M tokens), costs are integer
micro-dollars (one USD per 1M tokens is one micro-dollar per token). Never floats."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from turnout.domain.usage import Usage

Micros = int  # money: integer micro-dollars (1 USD = 1,000,000)
CAPABILITIES = frozenset({"tools", "images", "json_schema", "reasoning", "embeddings"})


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


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """What a model's tokens cost, USD per 1M tokens. Cache reads and writes default to the
    input price where the provider does not price them apart."""

    input: Decimal
    output: Decimal = Decimal(0)
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None  # the most tokens one answer may hold, when documented
    capabilities: frozenset[str] = frozenset()

    @property
    def blended(self) -> Decimal:
        """One number to order deployments by (input counts 3:1, as prompts outweigh answers)."""
        return (3 * self.input + self.output) / 4

    def cost(self, usage: Usage) -> Micros:
        """The cost of `usage`, rounded half up to the micro-dollar. `usage.input_tokens` counts
        every prompt token, cache reads and writes included (as OpenAI counts them)."""
        cached = usage.cached_input_tokens
        written = usage.cache_write_tokens
        uncached = max(0, usage.input_tokens - cached - written)
        total = (
            uncached * self.input
            + cached * (self.input if self.cached_input is None else self.cached_input)
            + written * (self.input if self.cache_write is None else self.cache_write)
            + usage.output_tokens * self.output
        )
        return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_usd(micros: Micros) -> str:
    """Micro-dollars as dollars with six decimals ("0.001250")."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"
