"""The reserve and settle steps of the pipeline. Until budgets exist nothing is reserved; settling
records what each request consumed (usage totals per model), the seam the ledger plugs into."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from turnout.domain.principal import Principal
from turnout.domain.usage import Usage
from turnout.routing.catalog import Route


@dataclass(slots=True)
class Reservation:
    principal: Principal
    alias: str


@dataclass(slots=True)
class UsageTotals:
    requests: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    unreported: int = 0  # answers whose upstream gave no usage


class Budgets:
    def __init__(self) -> None:
        self.totals: defaultdict[str, UsageTotals] = defaultdict(UsageTotals)

    def reserve(self, principal: Principal, route: Route) -> Reservation:
        return Reservation(principal, route.alias)

    def settle(self, reservation: Reservation, usage: Usage | None, *, answered: bool) -> None:
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
