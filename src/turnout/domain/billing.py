"""What a customer pays for a request (resellers and internal platforms), as against what it cost.

A team's terms come from its plan, or its own markup: the customer price is the provider cost
times a markup, or the plan's fixed per-token prices applied to the request's tokens whatever
model served it; a plan may include tokens each month, which are free until used up (a request
that crosses the allowance pays for the share of its tokens beyond it). Without terms the customer
price is the cost. Money is integer micro-dollars, rounded half up; never floats.

A preset's creator is credited a share of what its callers pay (`revenue_share`), up to a cap per
month above which the share stays with the platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from turnout.domain.pricing import Micros, ModelPrice
from turnout.domain.usage import Usage


def round_micros(value: Decimal) -> Micros:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class Terms:
    """How a team is billed."""

    markup: Decimal | None = None  # customer price = cost times markup
    prices: ModelPrice | None = None  # fixed per-token prices (USD per 1M tokens), any model
    included_tokens: int = 0  # free tokens each month
    monthly_fee: Micros = 0
    prepaid: bool = False  # spending stops when the credit balance reaches zero

    def list_price(self, usage: Usage, cost: Micros | None) -> Micros | None:
        """The price before any included tokens (None: the cost is unknown and the plan prices by
        markup, so there is nothing to price from)."""
        if self.prices is not None and not (usage.images or usage.audio_seconds or usage.characters):
            return self.prices.cost(usage)
        # (a plan's per-token prices do not price images or audio: those pay what they cost)
        if cost is None:
            return None
        return cost if self.markup is None else round_micros(cost * self.markup)


NO_TERMS = Terms()


def tokens_of(usage: Usage) -> int:
    return usage.input_tokens + usage.output_tokens


def customer_price(terms: Terms, usage: Usage, cost: Micros | None, allowance_left: int) -> Micros | None:
    """What the customer pays for `usage`, given the tokens left in this month's allowance."""
    price = terms.list_price(usage, cost)
    tokens = tokens_of(usage)
    if price is None or allowance_left <= 0 or tokens == 0:
        return price
    if allowance_left >= tokens:
        return 0
    return round_micros(Decimal(price) * (tokens - allowance_left) / tokens)


@dataclass(frozen=True, slots=True)
class RevenueShare:
    share: Decimal  # of what the caller pays, 0..1
    monthly_cap: Micros | None = None  # the most the creator is credited in a month

    def credit(self, paid: Micros, credited_this_month: Micros) -> Micros:
        """The creator's credit for a call the caller paid `paid` for."""
        amount = round_micros(Decimal(paid) * self.share)
        if self.monthly_cap is not None:
            amount = min(amount, max(self.monthly_cap - credited_this_month, 0))
        return max(amount, 0)
