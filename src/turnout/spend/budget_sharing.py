"""Budget windows shared through Redis (spend/budget_counters.py), as `Budgets` uses them: the
reservations this instance holds there (renewed while their requests run, so only a dead
instance's lapse), a window without a counter seeded from the ledger under a lock, settlements and
spend made while Redis was away sent behind the requests."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from turnout.limits.shared import Ask
from turnout.periodic import Periodic
from turnout.spend.budget_counters import PREFIX, SEED_WAIT, BudgetCounters, Outcome, Settlements, Span

if TYPE_CHECKING:
    from turnout.spend.budget_values import BudgetRule, Reservation, Window

log = logging.getLogger("turnout.budgets")

RENEW_BATCH = 1000  # reservations renewed per script run

LedgerSpent = Callable[["BudgetRule", dt.datetime, "dt.datetime | None"], Awaitable[int]]


def counter_key(rule: BudgetRule, current: Window) -> str:
    """A budget window's counters: the budget's id and the window's start."""
    if not current.key:
        current.key = f"{PREFIX}{rule.id}:{int(current.start.timestamp())}"
    return current.key


def _ms(at: dt.datetime | None) -> int:
    return 0 if at is None else max(int(at.timestamp() * 1000), 0)


def span(rule: BudgetRule, current: Window) -> Span:
    return Span(counter_key(rule, current), rule.limit, _ms(current.start), _ms(current.end))


class SharedWindows:
    def __init__(
        self,
        counters: BudgetCounters,
        ledger_spent: LedgerSpent,
        on_value: Callable[[Any, int], None] | None = None,
    ) -> None:
        self.counters = counters
        self.ledger_spent = ledger_spent
        self.settling = Settlements(counters, on_value)
        self.live: dict[str, Reservation] = {}  # by reservation id: held in Redis, still running
        self._seeding: dict[str, asyncio.Future[bool]] = {}  # by counter: its seeding under way
        self._ids = itertools.count()
        self._prefix = secrets.token_hex(6)
        self.renewer = Periodic(self.renew, counters.lapse_ms / 3000, "renewing reservations in Redis")

    @property
    def down(self) -> bool:
        return self.counters.shared.down

    def start(self) -> None:
        self.renewer.start()

    async def reserve(self, reservation: Reservation, limits: Ask | None = None) -> Outcome | None:
        """One attempt (the rate limits' too, when `limits` asks: limits/shared.py); seeds a window
        that has no counter first (and tries again)."""
        if not reservation.rid:
            reservation.rid = f"{self._prefix}.{next(self._ids)}"
        spans = [span(rule, current) for rule, current in reservation.held]
        outcome = await self.counters.reserve(spans, reservation.rid, reservation.amount, limits)
        if outcome is not None and outcome.code == -1:
            rule, current = reservation.held[outcome.value - 1]
            if not await self.seed(rule, current):
                return None
            outcome = await self.counters.reserve(spans, reservation.rid, reservation.amount, limits)
        if outcome is not None and outcome.code == 0:
            self.live[reservation.rid] = reservation
        return outcome

    async def seed(self, rule: BudgetRule, current: Window) -> bool:
        """Give a window without a counter what the ledger holds for it, under a lock, so the
        database (not one instance's partial view) is the authority. False: it could not be done
        (Redis away, or another instance's seed did not appear in time). The requests of this
        instance that find the counter missing at once wait for one seeding, not one each."""
        key = counter_key(rule, current)
        pending = self._seeding.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._seed(rule, current, key))
            self._seeding[key] = pending
            pending.add_done_callback(lambda _: self._seeding.pop(key, None))
        return await asyncio.shield(pending)

    async def _seed(self, rule: BudgetRule, current: Window, key: str) -> bool:
        token = secrets.token_hex(8)
        try:
            if await self.counters.lock(key, token):
                try:
                    spent = await self.ledger_spent(rule, current.start, current.end)
                    if await self.counters.seed(key, spent, _ms(current.end)):
                        log.info("budget %s: counter %s seeded from the ledger (%d µ$)", rule.id, key, spent)
                finally:
                    await self.counters.unlock(key, token)
                return True
            deadline = time.monotonic() + SEED_WAIT
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # another instance is reading the ledger for it
                if await self.counters.read(key) is not None:
                    return True
        except Exception:  # Redis or the database away: this request is decided by this instance
            log.warning("could not seed budget %s's counter in Redis", rule.id, exc_info=True)
        return False

    def settle(self, reservation: Reservation, cost: int) -> None:
        """Replace a reservation held in Redis by its cost, or add what a request reserved on this
        instance alone (Redis away) cost: sent behind the request, kept until Redis takes it."""
        if reservation.shared:
            self.live.pop(reservation.rid, None)
            for rule, current in reservation.held:
                key = counter_key(rule, current)
                self.settling.add(key, "s", reservation.rid, cost, reservation.amount, (rule, current))
        elif cost:
            for rule, current in reservation.held:
                self.settling.add(counter_key(rule, current), "p", "", cost)

    async def shrink(self, freed: Sequence[tuple[Reservation, int]]) -> None:
        """Give back what counting exactly took off reservations held in Redis."""
        ops = [
            (counter_key(rule, current), "k", reservation.rid, delta, 0)
            for reservation, delta in freed
            for rule, current in reservation.held
        ]
        for key, op, rid, delta, _ in ops:  # numbered with the settlements: never applied twice
            self.settling.add(key, op, rid, delta)
        await self.settling.flush()  # Redis away: sent when it answers; too much held meanwhile

    async def renew(self) -> None:
        """Push back the deadlines of the reservations whose requests still run here."""
        ops = [
            (counter_key(rule, current), "r", rid, 0, 0)
            for rid, reservation in list(self.live.items())
            for rule, current in reservation.held
        ]
        if not ops or self.down:
            return
        try:
            for start in range(0, len(ops), RENEW_BATCH):  # Redis runs one script at a time
                await self.counters.apply(ops[start : start + RENEW_BATCH])
        except RedisError:  # Redis away: they lapse there, and are settled as spend when it returns
            return

    async def used(self, rule: BudgetRule, current: Window) -> int | None:
        try:
            read = await self.counters.read(counter_key(rule, current))
        except RedisError:
            return None
        return None if read is None else read[0] + read[1]

    async def aclose(self) -> None:
        await self.renewer.aclose()
        await self.settling.aclose()
