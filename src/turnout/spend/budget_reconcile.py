"""The shared counters checked against the ledger (the authority): every `interval` seconds a few
budget windows (`BATCH` per run, in turn) compare what Redis says was spent with what the ledger
holds, and a drift is corrected and logged.

A settlement reaches Redis before its row reaches the ledger (the journal is moved into the
database every second), so the two differ for a moment all the time. Hence: Redis below the ledger
read just before it is spend Redis lost (a flushed counter, a lost settlement): corrected at once.
Redis above the ledger is judged against a ledger read at least `SETTLED` seconds after Redis was:
by then every settlement Redis had counted is in the ledger, so what Redis has more is counted in
error. A correction is applied only if no other was made since its reading (any instance may run
this): one drift is never corrected twice."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from turnout.periodic import Periodic
from turnout.spend.budget_counters import BudgetCounters
from turnout.spend.budget_sharing import counter_key

if TYPE_CHECKING:
    from turnout.spend.budget_values import BudgetRule, Window
    from turnout.spend.budgets import Budgets

log = logging.getLogger("turnout.budgets")

BATCH = 20  # budget windows compared per run: bounded work, whatever the number of budgets
SETTLED = 5.0  # s: a settlement counted in Redis is in the ledger this long after


class Reconciler:
    def __init__(self, budgets: Budgets, counters: BudgetCounters, interval: float) -> None:
        self.budgets = budgets
        self.counters = counters
        # by counter: an earlier reading of Redis (spent, its time in ms, monotonic time read)
        self.earlier: dict[str, tuple[int, int, float]] = {}
        self.corrections = 0
        self._turn = 0
        self.periodic = Periodic(self.run, interval, "reconciling budget counters with the ledger")

    def start(self) -> None:
        self.periodic.start()

    def _next(self) -> list[BudgetRule]:
        """The next `BATCH` budgets, in turn."""
        rules = sorted(
            (r for rs in self.budgets.rules.values() for r in rs if r.id in self.budgets.windows),
            key=lambda r: r.id,
        )
        if not rules:
            return []
        start = self._turn % len(rules)
        self._turn = start + BATCH
        return [rules[(start + i) % len(rules)] for i in range(min(BATCH, len(rules)))]

    async def run(self) -> None:
        if self.counters.shared.down:
            return
        for rule in self._next():
            try:
                await self.check(rule, self.budgets.windows[rule.id])
            except RedisError:
                return  # Redis away: the next run tries again

    async def check(self, rule: BudgetRule, current: Window) -> None:
        key = counter_key(rule, current)
        ledger = await self.budgets.ledger_spent(rule, current.start, current.end)
        reading = await self.counters.reading(key)
        if reading is None:
            self.earlier.pop(key, None)
            return  # no counter: the next reservation seeds it from the ledger
        spent, _, at_ms = reading
        if spent < ledger:
            await self._correct(rule, current, key, ledger - spent, at_ms, spent, ledger)
            return
        earlier = self.earlier.get(key)
        if earlier is not None and time.monotonic() - earlier[2] >= SETTLED:
            if earlier[0] > ledger:
                await self._correct(rule, current, key, ledger - earlier[0], earlier[1], earlier[0], ledger)
            earlier = None
        if earlier is None:
            self.earlier[key] = (spent, at_ms, time.monotonic())

    async def _correct(
        self, rule: BudgetRule, current: Window, key: str, delta: int, at_ms: int, spent: int, ledger: int
    ) -> None:
        if not await self.counters.correct(key, delta, at_ms):
            return  # corrected since by another instance (or the counter is gone)
        self.corrections += 1
        self.earlier.pop(key, None)
        log.warning(
            "budget %s (%s): Redis counted %d µ$ spent in the window from %s, the ledger %d µ$; "
            "the counter is corrected by %+d µ$",
            rule.id,
            rule.label,
            spent,
            current.start.isoformat(),
            ledger,
            delta,
        )

    async def aclose(self) -> None:
        await self.periodic.aclose()
