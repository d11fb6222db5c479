"""The shared counters checked against the ledger (the authority): every `interval` seconds a few
budget windows (`BATCH` per run, in turn) compare what Redis says was spent with what the ledger
holds. The two differ for a moment all the time (a settlement reaches Redis before its row reaches
the ledger), so only a difference seen twice in a row, unchanged, is drift: it is corrected (only if
the counter did not move meanwhile) and logged."""

from __future__ import annotations

import itertools
import logging
import secrets
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from turnout.periodic import Periodic
from turnout.spend.budget_counters import BudgetCounters
from turnout.spend.budget_sharing import counter_key

if TYPE_CHECKING:
    from turnout.spend.budget_values import BudgetRule
    from turnout.spend.budgets import Budgets

log = logging.getLogger("turnout.budgets")

BATCH = 20  # budget windows compared per run: bounded work, whatever the number of budgets


class Reconciler:
    def __init__(self, budgets: Budgets, counters: BudgetCounters, interval: float) -> None:
        self.budgets = budgets
        self.counters = counters
        self.seen: dict[str, int] = {}  # by counter: the difference seen at its last comparison
        self.corrections = 0
        self._turn = 0
        self.periodic = Periodic(self.run, interval, "reconciling budget counters with the ledger")

    def start(self) -> None:
        self.periodic.start()

    def _next(self) -> list[BudgetRule]:
        rules = sorted(
            (r for rs in self.budgets.rules.values() for r in rs if r.id in self.budgets.windows),
            key=lambda r: r.id,
        )
        if not rules:
            return []
        start = self._turn % len(rules)
        self._turn = start + BATCH
        return list(itertools.islice(itertools.cycle(rules), start, start + min(BATCH, len(rules))))

    async def run(self) -> None:
        if self.counters.shared.down:
            return
        for rule in self._next():
            try:
                await self.check(rule)
            except RedisError:
                return  # Redis away: the next run tries again

    async def check(self, rule: BudgetRule) -> None:
        current = self.budgets.windows[rule.id]
        key = counter_key(rule, current)
        token = secrets.token_hex(8)
        if not await self.counters.lock(key, token):
            return  # another instance is seeding or checking it
        try:
            read = await self.counters.read(key)
            if read is None:
                self.seen.pop(key, None)
                return  # no counter: the next reservation seeds it from the ledger
            ledger = await self.budgets.ledger_spent(rule, current.start, current.end)
            drift, before = read[0] - ledger, self.seen.get(key)
            self.seen[key] = drift
            if drift == 0 or drift != before:
                return
            if await self.counters.correct(key, read[0], -drift):
                self.corrections += 1
                self.seen.pop(key, None)
                log.warning(
                    "budget %s (%s): Redis counted %d µ$ spent in the window from %s, the ledger %d µ$; "
                    "the counter is corrected to the ledger's",
                    rule.id,
                    rule.label,
                    read[0],
                    current.start.isoformat(),
                    ledger,
                )
        finally:
            await self.counters.unlock(key, token)

    async def aclose(self) -> None:
        await self.periodic.aclose()
