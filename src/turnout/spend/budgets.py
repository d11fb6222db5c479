"""The reserve and settle steps of the pipeline: a key's budget (its `max_budget`, over its
lifetime for now), exact under concurrency on this instance.

Before a request goes to any provider, its maximum cost is reserved: the prompt at one token a
character (an upper bound for the tokenizers in use) plus its output limit (`max_tokens`, else
`DEFAULT_OUTPUT_RESERVE`), at the dearest price among the alias's deployments. A request whose
reservation does not fit in what is left — spent plus reserved — is refused with 429
`insufficient_quota` and never sent. When it ends, the reservation is replaced by what it cost
(released in full when nothing was answered). Spend so far is read from the ledger on start.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import sqlalchemy as sa

from turnout.domain.chat import ChatRequest, prompt_characters
from turnout.domain.errors import BudgetExhausted
from turnout.domain.pricing import Micros, format_usd
from turnout.domain.principal import Principal
from turnout.domain.usage import Usage
from turnout.routing.catalog import Route
from turnout.storage.database import Database
from turnout.storage.tables import ledger

DEFAULT_OUTPUT_RESERVE = 4096  # output tokens reserved for a request that sets no limit


@dataclass(slots=True)
class Reservation:
    principal: Principal
    alias: str
    amount: Micros = 0


@dataclass(slots=True)
class UsageTotals:
    requests: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    unreported: int = 0  # answers whose upstream gave no usage


def max_cost(route: Route, request: ChatRequest | None) -> Micros:
    """The most `request` can cost on any deployment of `route` (0 where no price is known)."""
    prompt = 0 if request is None else prompt_characters(request)  # a character is at most a token
    output = 0 if request is None else request.output_token_limit or DEFAULT_OUTPUT_RESERVE
    worst = Usage(input_tokens=prompt, output_tokens=output)
    return max((t.price.cost(worst) for t in route.targets if t.price is not None), default=0)


class Budgets:
    def __init__(self) -> None:
        self.totals: defaultdict[str, UsageTotals] = defaultdict(UsageTotals)
        self.spent: defaultdict[str, Micros] = defaultdict(int)  # by key id
        self.reserved: defaultdict[str, Micros] = defaultdict(int)

    async def load(self, database: Database) -> None:
        """What each key has spent so far, from the ledger."""
        query = sa.select(ledger.c.key_id, sa.func.coalesce(sa.func.sum(ledger.c.cost_micros), 0)).group_by(
            ledger.c.key_id
        )
        async with database.engine.connect() as conn:
            for key_id, spent in await conn.execute(query):
                self.spent[key_id] = int(spent)

    def reserve(self, principal: Principal, route: Route, request: ChatRequest | None = None) -> Reservation:
        budget = principal.max_budget_micros
        if budget is None:
            return Reservation(principal, route.alias)
        key = principal.key_id
        amount = max_cost(route, request)
        left = budget - self.spent[key] - self.reserved[key]
        if amount > left or left <= 0:
            raise BudgetExhausted(
                f"This key's budget cannot cover the request: {format_usd(max(left, 0))} USD of "
                f"{format_usd(budget)} left, and the request may cost up to {format_usd(amount)} USD.",
            )
        self.reserved[key] += amount
        return Reservation(principal, route.alias, amount)

    def settle(
        self, reservation: Reservation, usage: Usage | None, *, answered: bool, cost: Micros | None = None
    ) -> None:
        key = reservation.principal.key_id
        if reservation.amount:
            self.reserved[key] -= reservation.amount
        if cost:
            self.spent[key] += cost
        totals = self.totals[reservation.alias]
        totals.requests += 1
        if not answered:
            totals.failed += 1
            return
        if usage is None:
            totals.unreported += 1
            return
        totals.input_tokens += usage.input_tokens
        totals.output_tokens += usage.output_tokens
