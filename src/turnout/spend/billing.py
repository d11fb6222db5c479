"""Customer billing at run time: each team's terms, balance and monthly allowance, in memory.

Every request's ledger entry carries its customer price (`domain.billing`): what the caller's team
pays under its plan or markup, after the tokens its plan includes this month. A prepaid team's
request reserves the most it could be charged against the team's balance before any provider is
called (429 `insufficient_quota` when the balance cannot cover it: spending stops at zero) and is
charged what it came to. A call through a preset credits the preset's team its revenue share.

The balance is the team's credits (top-ups, adjustments, less monthly fees; the `credits` table,
read again every `REFRESH_SECONDS`, so top-ups on another instance count within seconds) less what
its requests were charged plus what its presets earned (the ledger's running totals, read on
start, then counted here). Monthly fees are written once per team and month: the credits table's
unique key makes a second write, from this instance or another, a no-op.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from turnout.domain.billing import NO_TERMS, RevenueShare, Terms, customer_price, tokens_of
from turnout.domain.chat import ChatRequest
from turnout.domain.errors import CreditExhausted
from turnout.domain.periods import ALL_TIME
from turnout.domain.pricing import Micros, ModelPrice, format_usd
from turnout.domain.principal import Principal
from turnout.domain.usage import Usage
from turnout.periodic import Periodic
from turnout.routing.catalog import Route
from turnout.spend.budget_counters import BudgetCounters
from turnout.spend.budget_sharing import SharedWindows
from turnout.spend.budget_values import BudgetRule, Reservation, Window
from turnout.spend.request_bound import RequestBound, list_price
from turnout.spend.shared_counters import SharedCounters
from turnout.spend.totals import by_value
from turnout.storage.database import Database
from turnout.storage.tables import credits, plans, spend_rollups, team_billing

log = logging.getLogger("turnout.billing")

REFRESH_SECONDS = 5.0
CREDIT_ID = "credit:"  # a prepaid team's credit is shared as a budget window of this id + team
UTC = ZoneInfo("UTC")


def month_of(when: dt.datetime) -> str:
    """The calendar month (UTC) allowances and fees run by: "2026-12"."""
    return when.astimezone(dt.UTC).strftime("%Y-%m")


def month_start(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


TERMS_QUERY = sa.select(
    team_billing.c.team_id,
    team_billing.c.markup.label("own_markup"),
    team_billing.c.prepaid,
    plans.c.id.label("plan_id"),
    plans.c.markup,
    plans.c.input_price,
    plans.c.output_price,
    plans.c.included_tokens,
    plans.c.monthly_fee_micros,
).outerjoin(plans, plans.c.id == team_billing.c.plan_id)


def terms_of(row: Any) -> Terms:
    """A team's terms from a `TERMS_QUERY` row: its own markup, else its plan's prices or markup."""
    has_plan = row.plan_id is not None
    markup = row.own_markup or (row.markup if has_plan else None)
    prices = None
    if has_plan and row.own_markup is None and row.input_price is not None:
        prices = ModelPrice(input=Decimal(row.input_price), output=Decimal(row.output_price or "0"))
    return Terms(
        markup=None if markup is None else Decimal(markup),
        prices=prices,
        included_tokens=row.included_tokens if has_plan else 0,
        monthly_fee=row.monthly_fee_micros if has_plan else 0,
        prepaid=bool(row.prepaid),
    )


@dataclass(slots=True)
class PresetCharge:
    """What a call through a preset owes its creator."""

    name: str
    team_id: str
    share: RevenueShare


@dataclass(slots=True)
class CreditHold:
    team_id: str | None = None
    amount: Micros = 0
    shared: bool = False  # held in the instances' shared counter (Redis)
    reservation: Reservation | None = None  # its entry there (with Redis configured)


@dataclass(frozen=True, slots=True)
class Charge:
    customer_price: Micros | None
    revenue_share: Micros | None = None


NO_HOLD = CreditHold()


def _most_charged(terms: Terms, bound: RequestBound) -> Micros:
    """The most a team under `terms` can be charged for the request, on any deployment."""
    most = 0
    for target in bound.route.targets:
        usage = bound.usage(target)
        most = max(most, terms.list_price(usage, list_price(target, usage)) or 0)
    return most


class Billing:
    def __init__(
        self,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        counters: BudgetCounters | None = None,
    ) -> None:
        self.clock = clock
        self.shared: SharedCounters | None = None if counters is None else counters.shared
        # Credit shared through Redis as budgets are: a reservation per request that lapses when
        # its instance dies, a counter seeded from the ledger under a lock, numbered settlements
        # and spend made while Redis was away added when it answers (spend/budget_sharing.py).
        self.sharing = None if counters is None else SharedWindows(counters, self.ledger_charged)
        self.windows: dict[str, Window] = {}  # by team: its credit's window (its counter's key)
        self.terms: dict[str, Terms] = {}
        self.credited: dict[str, Micros] = {}  # by team: the credits table's sum
        self.charged: defaultdict[str, Micros] = defaultdict(int)  # by team: customer prices
        self.earned: defaultdict[str, Micros] = defaultdict(int)  # by team: presets' revenue share
        self.reserved: defaultdict[str, Micros] = defaultdict(int)
        self.allowance: dict[str, tuple[str, int]] = {}  # by team: (month, tokens used)
        self.shares_paid: dict[tuple[str, str], Micros] = {}  # by (preset, month): share credited
        self.fees_written: set[tuple[str, str]] = set()  # (team, month): this month's fee is in
        self.database: Database | None = None
        self.refresher = Periodic(self.refresh, REFRESH_SECONDS, "reading billing terms and credits")

    # ------------------------------------------------------------------ loading

    async def load(self, database: Database) -> None:
        """Terms, credits, charges, earnings and this month's allowances and shares (call after
        the ledger journal was moved into the database)."""
        self.database = database
        now = self.clock()
        since = month_start(now)
        month = month_of(now)
        rollup = spend_rollups.c
        async with database.engine.connect() as conn:
            self.charged.update(await by_value(conn, "team", rollup.customer_price_micros))
            self.earned.update(await by_value(conn, "preset_team", rollup.revenue_share_micros))
            used = await by_value(conn, "team", rollup.input_tokens + rollup.output_tokens, since)
            self.allowance = {t: (month, v) for t, v in used.items()}
            shared = await by_value(conn, "preset", rollup.revenue_share_micros, since)
            self.shares_paid = {(p, month): v for p, v in shared.items()}
        await self.refresh()

    def start(self) -> None:
        self.refresher.start()
        if self.sharing is not None:
            self.sharing.start()

    async def ledger_charged(self, rule: BudgetRule, start: dt.datetime, end: dt.datetime | None) -> Micros:
        """What the ledger holds as charged to a prepaid team: what its shared counter starts from."""
        assert self.database is not None
        async with self.database.engine.connect() as conn:
            charged = await by_value(conn, "team", spend_rollups.c.customer_price_micros)
        return charged.get(rule.subject_id, 0)

    async def refresh(self) -> None:
        """Terms and credits as the database has them; this month's fees charged (once)."""
        assert self.database is not None
        async with self.database.engine.connect() as conn:
            terms = {row.team_id: terms_of(row) for row in await conn.execute(TERMS_QUERY)}
        self.terms = terms
        await self.charge_monthly_fees()
        totals = sa.select(credits.c.team_id, sa.func.sum(credits.c.amount_micros)).group_by(
            credits.c.team_id
        )
        async with self.database.engine.connect() as conn:
            self.credited = {t: int(v) for t, v in await conn.execute(totals)}

    async def charge_monthly_fees(self) -> None:
        assert self.database is not None
        month = month_of(self.clock())
        due = [
            team for team, t in self.terms.items() if t.monthly_fee and (team, month) not in self.fees_written
        ]
        if not due:
            return
        fees = [
            {
                "team_id": team,
                "at": self.clock(),
                "amount_micros": -self.terms[team].monthly_fee,
                "kind": "monthly_fee",
                "period": month,
                "note": f"monthly fee {month}",
            }
            for team in due
        ]
        async with self.database.engine.begin() as conn:
            await conn.execute(self.database.insert_new(credits, "team_id", "kind", "period"), fees)
        self.fees_written.update((team, month) for team in due)

    # ------------------------------------------------------------------ the hot path

    def balance(self, team_id: str) -> Micros:
        return self.credited.get(team_id, 0) - self.charged[team_id] + self.earned[team_id]

    async def hold(
        self,
        principal: Principal,
        route: Route,
        request: ChatRequest | None = None,
        bound: RequestBound | None = None,
    ) -> CreditHold:
        """For a prepaid team: reserve the most the request can be charged, or refuse it. The
        request is bounded cheaply first and counted exactly before it is refused (as budgets)."""
        team = principal.team_id
        if team is None:
            return NO_HOLD
        terms = self.terms.get(team)
        if terms is None or not terms.prepaid:
            return NO_HOLD
        bound = bound or RequestBound(route, request)
        hold = CreditHold(team, _most_charged(terms, bound))
        if self.sharing is not None:
            limit = self.credited.get(team, 0) + self.earned[team]
            hold.reservation = self._reservation(principal, route.alias, team, limit, hold.amount)
            used = await self._hold_shared(hold)
            if used is not None and await bound.count():
                hold.amount = hold.reservation.amount = _most_charged(terms, bound)
                used = await self._hold_shared(hold)
            if used is not None:
                self._refuse(limit - used, hold.amount)
        if not hold.shared:
            left = self.balance(team) - self.reserved[team]
            if (hold.amount > left or left <= 0) and await bound.count():
                hold.amount = _most_charged(terms, bound)
                left = self.balance(team) - self.reserved[team]  # others ran meanwhile
            if hold.amount > left or left <= 0:
                self._refuse(left, hold.amount)
        self.reserved[team] += hold.amount
        return hold

    def _reservation(
        self, principal: Principal, alias: str, team: str, limit: Micros, amount: Micros
    ) -> Reservation:
        """A hold's entry in the team's shared credit counter (its limit: the credit as this
        instance last read it)."""
        current = self.windows.get(team)
        if current is None:
            current = self.windows[team] = Window(ALL_TIME, None)
        rule = BudgetRule(CREDIT_ID + team, "team", team, "never", UTC, limit)
        return Reservation(principal, alias, amount, [(rule, current)])

    async def _hold_shared(self, hold: CreditHold) -> Micros | None:
        """Hold in the shared counter: None when held (or Redis is out of reach: `hold.shared`
        says which), else what the team had used."""
        assert self.sharing is not None
        assert hold.reservation is not None
        outcome = await self.sharing.reserve(hold.reservation)
        if outcome is None or outcome.code < 0:  # Redis out of reach: this instance decides
            return None
        if outcome.code > 0:
            return outcome.value
        hold.shared = hold.reservation.shared = True
        return None

    def _refuse(self, left: Micros, amount: Micros) -> None:
        raise CreditExhausted(
            f"The team's prepaid credit cannot cover this request: {format_usd(max(left, 0))} USD left, "
            f"and the request may cost up to {format_usd(amount)} USD. Top up the team's credit.",
        )

    def release(self, hold: CreditHold, charged: Micros | None = 0) -> None:
        """End a hold: the team was charged `charged` (counted by `charge`); the rest goes back."""
        if hold.team_id is None:
            return
        self.reserved[hold.team_id] -= hold.amount
        if self.sharing is not None and hold.reservation is not None:
            # held in Redis: replaced by the charge; held here alone: the charge added when it answers
            self.sharing.settle(hold.reservation, charged or 0)

    def charge(
        self, principal: Principal, usage: Usage, cost: Micros | None, preset: PresetCharge | None = None
    ) -> Charge:
        """What the caller's team pays for `usage` (counted against its allowance and balance),
        and the preset creator's share of it (credited to their balance)."""
        team = principal.team_id
        terms = NO_TERMS if team is None else self.terms.get(team, NO_TERMS)
        if terms is NO_TERMS and preset is None:
            if team is not None and cost:
                self.charged[team] += cost
            return Charge(cost)
        left = 0
        if terms.included_tokens and team is not None:
            month = month_of(self.clock())
            seen, used = self.allowance.get(team, (month, 0))
            used = used if seen == month else 0
            left = terms.included_tokens - used
            self.allowance[team] = (month, used + tokens_of(usage))
        price = customer_price(terms, usage, cost, left)
        if team is not None and price:
            self.charged[team] += price
        share = None
        if preset is not None and price:
            key = (preset.name, month_of(self.clock()))
            share = preset.share.credit(price, self.shares_paid.get(key, 0))
            self.shares_paid[key] = self.shares_paid.get(key, 0) + share
            self.earned[preset.team_id] += share
        return Charge(price, share)

    async def aclose(self) -> None:
        await self.refresher.aclose()
        if self.sharing is not None:
            await self.sharing.aclose()
