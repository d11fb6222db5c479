"""The reserve and settle steps of the pipeline: budgets per key, team and user, each over a period
(daily, weekly, monthly, never) in its own time zone, exact under concurrency on this instance.

Before a request goes to any provider, its maximum cost is reserved in every budget that covers
it (its key's, its team's, its user's; a key's own `max_budget` is a budget that never resets):
its prompt at one token a UTF-8 byte (a bound for byte-level tokenizers: domain/prompt_bounds.py),
with its framing, tools and images at their most, plus its output limit (`max_tokens`, else
`DEFAULT_OUTPUT_RESERVE`, for each of its `n` choices), at the dearest price among the alias's
deployments (spend/request_bound.py). When that does not fit in what one of them has left — its
limit less what was spent and what is reserved in the current window — the prompt is counted
exactly before anything is refused (o200k_base for OpenAI's models), and so are the prompts of
the requests this instance reserved cheaply in that window and still runs: their reservations
shrink to their exact bounds. Only a request that still does not fit is refused with 429
`insufficient_quota`, and never sent; so near the end of a budget every request that fits is
served.
When it ends, the reservation is replaced by what it cost (released in full when nothing was
answered), in the window the request arrived in.

Windows turn over by themselves: the first request after a window's end opens the next one at
zero. Each window is written once to `budget_windows` (its start is its key, so however many
instances share the database, a budget has exactly one row — one reset — per period), and so is
the first time its soft limit was reached: that is when the soft-limit alert is logged, once.
Spend in the current windows is read on start from the ledger's running totals (spend/totals.py: a
few cells per budget, whatever the ledger's size); budgets changed on another instance are picked
up within `REFRESH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.domain.chat import ChatRequest
from turnout.domain.errors import BudgetExhausted
from turnout.domain.periods import ALL_TIME, time_zone, window
from turnout.domain.pricing import Micros, format_usd
from turnout.domain.principal import Principal
from turnout.domain.usage import Usage
from turnout.limits.admission import Ticket
from turnout.limits.shared import Ask
from turnout.periodic import Periodic
from turnout.routing.catalog import Route
from turnout.spend.alerts import EXHAUSTED, SOFT_LIMIT, AlertOutbox
from turnout.spend.budget_counters import BudgetCounters, Outcome
from turnout.spend.budget_sharing import SharedWindows
from turnout.spend.budget_values import BudgetRule, Reservation, Scope, Window
from turnout.spend.request_bound import RequestBound, list_price
from turnout.spend.totals import by_value, window_cost
from turnout.storage.database import Database
from turnout.storage.tables import budget_windows, budgets, spend_rollups
from turnout.storage.times import as_utc

log = logging.getLogger("turnout.budgets")

REFRESH_SECONDS = 5.0  # how often budgets changed elsewhere are read again

SCOPES: tuple[Scope, ...] = ("key", "team", "user")


@dataclass(slots=True)
class UsageTotals:
    requests: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    unreported: int = 0  # answers whose upstream gave no usage


def max_cost(route: Route, request: ChatRequest | None) -> Micros:
    """The most `request` can cost on any deployment of `route` at its cheap bound (0 where no
    price is known)."""
    return RequestBound(route, request).most(list_price)


def rule_of(row: Any) -> BudgetRule:
    return BudgetRule(
        id=row.id,
        scope=row.scope,
        subject_id=row.subject_id,
        period=row.period,
        tz=time_zone(row.timezone),
        limit=row.limit_micros,
        soft_limit=row.soft_limit_micros,
    )


class Budgets:
    def __init__(
        self,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        counters: BudgetCounters | None = None,
    ) -> None:
        self.clock = clock
        self.shared = None if counters is None else counters.shared
        self.sharing = (
            None if counters is None else SharedWindows(counters, self.ledger_spent, self._shared_value)
        )
        self.peers = 1  # live instances on this database (storage/instances.py)
        self.totals: defaultdict[str, UsageTotals] = defaultdict(UsageTotals)
        self.rules: dict[tuple[Scope, str], list[BudgetRule]] = {}
        self.windows: dict[str, Window] = {}  # by rule id: its current window
        self.previous: dict[str, Window] = {}  # by rule id: the window before (a clock corrected)
        # by rule id: the reservations made at the cheap bound and still running (by their id)
        self.loose: dict[str, dict[int, Reservation]] = {}
        self.key_spent: dict[str, Micros] = {}  # lifetime spend by key, for keys' own max_budget
        self.soft_limit_alerts = 0  # soft limits reached (once per budget and window)
        self.alerts: AlertOutbox | None = None  # raises the soft-limit and exhaustion events
        self.database: Database | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self.refresher = Periodic(self.refresh, REFRESH_SECONDS, "reading budgets")

    # ------------------------------------------------------------------ loading

    async def load(self, database: Database) -> None:
        """Every budget, with what was spent in its current window and each key's lifetime spend,
        from the ledger's totals (call after the ledger journal was moved into the database)."""
        self.database = database
        now = self.clock()
        async with database.engine.connect() as conn:  # one connection; the marks in one query
            self.key_spent = await by_value(conn, "key", spend_rollups.c.cost_micros)
            rules = [rule_of(row) for row in await conn.execute(sa.select(budgets))]
            spans = {rule.id: window(rule.period, rule.tz, now) for rule in rules}
            marks = await _current_marks(conn, spans)
            for rule in rules:
                self.rules.setdefault((rule.scope, rule.subject_id), []).append(rule)
                start, end = spans[rule.id]
                self.windows[rule.id] = await self._opened(conn, rule, start, end, marks)

    def set_peers(self, live: int) -> None:
        """How many instances share the database now (storage/instances.py)."""
        self.peers = live

    def start(self) -> None:
        """Keep up with budgets changed on other instances."""
        self.refresher.start()
        if self.sharing is not None:
            self.sharing.start()

    async def refresh(self) -> None:
        assert self.database is not None
        async with self.database.engine.connect() as conn:
            stored = {r.id: rule_of(r) for r in await conn.execute(sa.select(budgets))}
        held = {rule.id: rule for rules in self.rules.values() for rule in rules}
        for rule_id in held.keys() - stored.keys():
            self.drop(rule_id)
        for rule in stored.values():
            if rule != held.get(rule.id):
                await self.put(rule)

    async def put(self, rule: BudgetRule) -> None:
        """Add or change a budget; a new one's current window starts from the ledger's spend."""
        self.drop(rule.id, keep_window=True)
        self.rules.setdefault((rule.scope, rule.subject_id), []).append(rule)
        current = self.windows.get(rule.id)
        start, end = window(rule.period, rule.tz, self.clock())
        if current is None or current.start != start:
            self.windows[rule.id] = await self._open(rule, start, end)

    def drop(self, rule_id: str, *, keep_window: bool = False) -> None:
        for subject, rules in list(self.rules.items()):
            kept = [r for r in rules if r.id != rule_id]
            if kept:
                self.rules[subject] = kept
            else:
                del self.rules[subject]
        if not keep_window:
            self.windows.pop(rule_id, None)

    async def _open(self, rule: BudgetRule, start: dt.datetime, end: dt.datetime | None) -> Window:
        """A window as the database knows it: what the ledger holds for it, whether its soft limit
        was already reached (and alerted)."""
        if self.database is None:
            return Window(start, end)
        async with self.database.engine.connect() as conn:
            marks = await _current_marks(conn, {rule.id: (start, end)})
            return await self._opened(conn, rule, start, end, marks)

    async def _opened(
        self,
        conn: AsyncConnection,
        rule: BudgetRule,
        start: dt.datetime,
        end: dt.datetime | None,
        marks: dict[tuple[str, dt.datetime], Any],
    ) -> Window:
        opened = Window(start, end)
        opened.spent = await window_cost(conn, rule.scope, rule.subject_id, start, end)
        row = marks.get((rule.id, start.astimezone(dt.UTC)))
        if row is not None:
            opened.soft_reached = row.soft_limit_reached_at is not None
            opened.hard_reached = row.hard_limit_reached_at is not None
        else:
            self._write(self._mark_opened(rule, start))
        return opened

    async def ledger_spent(self, rule: BudgetRule, start: dt.datetime, end: dt.datetime | None) -> Micros:
        """What the ledger holds for a budget's window: the authority every counter starts from
        (read from the running totals, which keep what ledger retention deleted)."""
        assert self.database is not None
        async with self.database.engine.connect() as conn:
            return await window_cost(conn, rule.scope, rule.subject_id, start, end)

    # ------------------------------------------------------------------ the hot path

    def _window(self, rule: BudgetRule, now: dt.datetime) -> Window:
        current = self.windows.get(rule.id)
        if current is not None and current.start <= now and (current.end is None or now < current.end):
            return current
        start, end = window(rule.period, rule.tz, now)
        before = self.previous.get(rule.id)
        # a clock set back returns to the window it left; else the reset: a new window, at zero
        turned = before if before is not None and before.start == start else Window(start, end)
        if current is not None:
            self.previous[rule.id] = current
        self.windows[rule.id] = turned
        if turned is before:
            return turned
        if current is not None:
            log.info("budget %s reset: a new %s window from %s", rule.id, rule.period, start.isoformat())
        self._write(self._mark_opened(rule, start))
        return turned

    def _covering(self, principal: Principal) -> list[BudgetRule]:
        found: list[BudgetRule] = []
        rules = self.rules
        if rules:
            found += rules.get(("key", principal.key_id), ())
            if principal.replaced_by is not None:  # its budgets moved to its replacement
                found += rules.get(("key", principal.replaced_by), ())
            if principal.team_id is not None:
                found += rules.get(("team", principal.team_id), ())
            spender = principal.spender  # its user, or the user who issued a key without one
            if spender is not None:
                found += rules.get(("user", spender), ())
        if principal.max_budget_micros is not None:
            found.append(
                BudgetRule(
                    "key:" + principal.key_id,
                    "key",
                    principal.key_id,
                    "never",
                    ZoneInfo("UTC"),
                    principal.max_budget_micros,
                    stored=False,
                )
            )
        return found

    async def reserve(
        self,
        principal: Principal,
        route: Route,
        request: ChatRequest | None = None,
        ticket: Ticket | None = None,
        searches: int = 0,
        units: Usage | None = None,
        *,
        amount: Micros | None = None,
    ) -> Reservation:
        """Reserve the request's most in its budgets (`searches`: a rerank request's search units;
        `units`: an image or audio request's images, seconds of audio or characters at most; or
        `amount`: a batch's, bounded by its lines). A rate-limit `ticket` still to be decided by
        Redis rides in the same script run when budgets are shared (decided there: RateLimited if a
        limit has no room); else it is left pending for the admission to decide."""
        covering = self._covering(principal)
        if not covering:
            return Reservation(principal, route.alias)
        bound = (
            None
            if amount is not None
            else RequestBound(route, request, None if ticket is None else ticket.prompt, searches, units)
        )
        held = self._held(principal, covering)
        most = bound.most(list_price) if bound is not None else amount or 0
        reservation = Reservation(principal, route.alias, most, held, bound=bound)
        if self.sharing is not None and await self._reserve_shared(reservation, ticket):
            return self._reserved(reservation)
        short = self._short(reservation)
        if short is not None and bound is not None and await self._count_exactly(reservation, [short]):
            short = self._short(reservation)  # checked again: other requests ran meanwhile
        if short is not None:
            rule, current = short
            left = self._share(rule, current) - current.spent - current.reserved
            self._refuse(rule, current, left, reservation.amount)
        for _, current in held:
            current.reserved += reservation.amount
        return self._reserved(reservation)

    def _held(self, principal: Principal, covering: list[BudgetRule]) -> list[tuple[BudgetRule, Window]]:
        """The current window of each budget in `covering`."""
        now = self.clock()
        held = []
        for rule in covering:
            if not rule.stored and rule.id not in self.windows:  # its spend: the key's lifetime
                self.windows[rule.id] = Window(ALL_TIME, None, spent=self.key_spent.get(principal.key_id, 0))
            held.append((rule, self._window(rule, now)))
        return held

    def unreserved(self, principal: Principal, alias: str) -> Reservation:
        """A reservation of nothing in the budgets covering `principal`, never refused: what a cost
        reserved elsewhere (on another instance, or before a restart) is settled with."""
        covering = self._covering(principal)
        return Reservation(principal, alias, 0, self._held(principal, covering) if covering else [])

    def _short(self, reservation: Reservation) -> tuple[BudgetRule, Window] | None:
        """The first budget (this instance's view, and its share) without room for it."""
        for rule, current in reservation.held:
            left = self._share(rule, current) - current.spent - current.reserved
            if reservation.amount > left or left <= 0:
                return rule, current
        return None

    def _share(self, rule: BudgetRule, current: Window) -> Micros:
        """What this instance may use of a window it decides alone: all of it, or 1/n while n
        instances share the database without Redis (n only grows within a window, so the shares
        of the instances never add up to more than the limit)."""
        current.share_of = max(current.share_of, self.peers)
        return rule.limit // current.share_of

    def _reserved(self, reservation: Reservation) -> Reservation:
        """Note a reservation made at the cheap bound, to be counted exactly when room runs out."""
        if reservation.bound is not None and reservation.bound.countable:
            for rule, _ in reservation.held:
                self.loose.setdefault(rule.id, {})[id(reservation)] = reservation
        return reservation

    def _forget(self, reservation: Reservation) -> None:
        for rule, _ in reservation.held:
            loose = self.loose.get(rule.id)
            if loose is not None and loose.pop(id(reservation), None) is not None and not loose:
                del self.loose[rule.id]

    async def _count_exactly(self, reservation: Reservation, short: list[tuple[BudgetRule, Window]]) -> bool:
        """Before refusing: count the request's prompt exactly, and the prompts of the requests
        this instance reserved cheaply in the windows without room (their reservations shrink).
        False when nothing could make room (the request's output alone does not fit)."""
        bound = reservation.bound
        assert bound is not None
        others = {id(r): r for rule, _ in short for r in self.loose.get(rule.id, {}).values()}
        for rule, current in short:
            loose = sum(r.amount for r in self.loose.get(rule.id, {}).values())
            if rule.limit - current.spent - current.reserved + loose < bound.least(list_price):
                return False
        if await bound.count():
            reservation.amount = bound.most(list_price)
        freed = []
        for other in others.values():
            assert other.bound is not None
            await other.bound.count()
            if id(other) not in self.loose.get(other.held[0][0].id, {}):
                continue  # it ended while its prompt was counted
            self._forget(other)
            delta = other.amount - other.bound.most(list_price)
            if delta > 0:
                other.amount -= delta
                for _, current in other.held:
                    current.reserved -= delta
                if other.shared:
                    freed.append((other, delta))
        if freed:
            await self._shrink_shared(freed)
        return True

    async def _shrink_shared(self, freed: list[tuple[Reservation, Micros]]) -> None:
        """Give back to the shared counters what counting exactly took off reservations."""
        assert self.sharing is not None
        await self.sharing.shrink(freed)

    async def _reserve_shared(self, reservation: Reservation, ticket: Ticket | None = None) -> bool:
        """Reserve in the instances' shared counters; False when they cannot be reached (this
        instance's own counters decide instead). Counted exactly before a refusal, as locally.
        A pending rate-limit ticket is decided in the same run."""
        ask = ticket.ask() if ticket is not None and ticket.pending else None
        outcome = await self._shared_attempt(reservation, ask)
        if outcome is not None and outcome.code > 0 and reservation.bound is not None:
            short = reservation.held[outcome.code - 1]
            if await self._count_exactly(reservation, [short]):
                outcome = await self._shared_attempt(reservation, ask)
        if ticket is not None and ask is not None:
            if outcome is None:
                ticket.unreachable()
            elif outcome.limits is not None and outcome.code in (0, -3):
                ticket.answered(outcome.limits)  # RateLimited when refused: no budget was taken
        if outcome is None:
            return False
        if outcome.code > 0:
            rule, current = reservation.held[outcome.code - 1]
            self._refuse(rule, current, rule.limit - outcome.value, reservation.amount)
        reservation.shared = True
        for _, current in reservation.held:
            current.reserved += reservation.amount  # this instance's view, for its status and its release
        return True

    async def _shared_attempt(self, reservation: Reservation, ask: Ask | None = None) -> Outcome | None:
        """Reserve in Redis (code 0) or learn which budget has no room (code > 0). When this
        instance chose a window that does not hold Redis's instant (its clock is off: corrected
        by the answer), the windows are chosen again. None: decide alone."""
        assert self.sharing is not None
        for _ in range(3):
            outcome = await self.sharing.reserve(reservation, ask)
            if outcome is None or outcome.code >= 0 or outcome.code == -3:
                return outcome
            now = self.clock()
            reservation.held = [(rule, self._window(rule, now)) for rule, _ in reservation.held]
        return None

    def _refuse(self, rule: BudgetRule, current: Window, left: Micros, amount: Micros) -> None:
        if not current.hard_reached and rule.stored:
            current.hard_reached = True
            self._write(self._mark(rule, current, "hard_limit_reached_at", event=EXHAUSTED))
        raise BudgetExhausted(
            f"The {rule.label} budget cannot cover this request: {format_usd(max(left, 0))} USD "
            f"of {format_usd(rule.limit)} left, and the request may cost up to {format_usd(amount)} USD.",
        )

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose request never started (a later step refused it)."""
        self._settle_windows(reservation, 0)

    def settle(
        self, reservation: Reservation, usage: Usage | None, *, answered: bool, cost: Micros | None = None
    ) -> None:
        self._settle_windows(reservation, cost or 0)
        if cost and reservation.principal.max_budget_micros is not None:
            key = reservation.principal.key_id
            self.key_spent[key] = self.key_spent.get(key, 0) + cost
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

    def _settle_windows(self, reservation: Reservation, cost: Micros) -> None:
        """Replace the reservation by `cost` in its windows (here, and in the shared counters)."""
        if not reservation.held:
            return
        self._forget(reservation)
        for rule, current in reservation.held:
            current.reserved -= reservation.amount
            if cost:
                current.spent += cost
                if not reservation.shared:
                    self._check_soft_limit(rule, current, current.spent)
        if self.sharing is not None:
            self.sharing.settle(reservation, cost)

    def _shared_value(self, context: tuple[BudgetRule, Window], used: Micros) -> None:
        self._check_soft_limit(context[0], context[1], used)

    def _check_soft_limit(self, rule: BudgetRule, current: Window, used: Micros) -> None:
        if rule.soft_limit is None or current.soft_reached or used < rule.soft_limit:
            return
        current.soft_reached = True
        self._write(self._mark(rule, current, "soft_limit_reached_at", event=SOFT_LIMIT))

    # ------------------------------------------------------------------ what is written behind

    def _write(self, work: Any) -> None:
        if self.database is None:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _mark_opened(self, rule: BudgetRule, start: dt.datetime) -> None:
        if not rule.stored:
            return
        assert self.database is not None
        statement = self.database.insert_new(budget_windows, "budget_id", "window_start").values(
            budget_id=rule.id, window_start=start, opened_at=self.clock()
        )
        try:
            async with self.database.engine.begin() as conn:
                await conn.execute(statement)
        except Exception:
            log.warning("could not record budget %s's window", rule.id, exc_info=True)

    async def _mark(self, rule: BudgetRule, current: Window, column: str, *, event: str) -> None:
        """Record when a window first reached a limit; the instance whose write lands first (the
        only one, whatever the number of instances) raises its alert (`event`): a log line for
        the soft limit, and through `alerts` the audit log and the webhooks, in the same
        transaction."""
        await self._mark_opened(rule, current.start)
        assert self.database is not None
        target = budget_windows.c[column]
        statement = (
            sa.update(budget_windows)
            .where(
                budget_windows.c.budget_id == rule.id,
                budget_windows.c.window_start == current.start,
                target.is_(None),
            )
            .values({column: self.clock()})
        )
        spent = current.spent
        try:
            async with self.database.engine.begin() as conn:
                first = (await conn.execute(statement)).rowcount == 1
                if first and self.alerts is not None:
                    await self.alerts.raise_event(conn, event, rule, current, spent)
        except Exception:
            log.warning("could not record budget %s's limit", rule.id, exc_info=True)
            first = True  # better an alert twice than never
        if first and self.alerts is not None:
            self.alerts.notify()
        if event == SOFT_LIMIT and first:
            self.soft_limit_alerts += 1
            log.warning(
                "budget %s (%s) reached its soft limit: %s of %s USD spent (hard limit %s USD)",
                rule.id,
                rule.label,
                format_usd(current.spent),
                format_usd(rule.soft_limit or 0),
                format_usd(rule.limit),
            )

    async def status(self, rule: BudgetRule) -> dict[str, Any]:
        """A budget's current window as the admin API shows it. With shared counters, `spent`
        is every instance's (and the reservations other instances hold at that moment)."""
        return (await self.statuses([rule]))[0]

    async def statuses(self, rules: list[BudgetRule]) -> list[dict[str, Any]]:
        """`status` of each budget, their shared counters read concurrently."""
        windows = [self._current(rule) for rule in rules]
        used: list[int | None] = [None] * len(rules)
        sharing = self.sharing
        if sharing is not None and rules:  # every instance's (else this instance's view)
            used = list(
                await asyncio.gather(*(sharing.used(r, w) for r, w in zip(rules, windows, strict=True)))
            )
        return [
            self._shown(rule, current, shared)
            for rule, current, shared in zip(rules, windows, used, strict=True)
        ]

    def _current(self, rule: BudgetRule) -> Window:
        current = self._window(rule, self.clock()) if self.database is not None else self.windows.get(rule.id)
        return current or Window(*window(rule.period, rule.tz, self.clock()))

    @staticmethod
    def _shown(rule: BudgetRule, current: Window, shared: int | None) -> dict[str, Any]:
        used = shared or current.spent + current.reserved
        return {
            "window_start": current.start.timestamp() if rule.period != "never" else None,
            "window_end": None if current.end is None else current.end.timestamp(),
            "spent_micros": used - current.reserved,
            "reserved_micros": current.reserved,
            "remaining_micros": max(rule.limit - used, 0),
            "soft_limit_reached": current.soft_reached,
            "hard_limit_reached": current.hard_reached,
        }

    async def aclose(self) -> None:
        await self.refresher.aclose()
        if self.sharing is not None:
            await self.sharing.aclose()
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)


async def _current_marks(
    conn: AsyncConnection, spans: dict[str, tuple[dt.datetime, dt.datetime | None]]
) -> dict[tuple[str, dt.datetime], Any]:
    """The rows of `budget_windows` for these budgets' current windows (by budget id and window
    start in UTC), in one query: the windows starting at or after the earliest of them."""
    if not spans:
        return {}
    earliest = min(start for start, _ in spans.values())
    query = sa.select(
        budget_windows.c.budget_id,
        budget_windows.c.window_start,
        budget_windows.c.soft_limit_reached_at,
        budget_windows.c.hard_limit_reached_at,
    ).where(budget_windows.c.budget_id.in_(list(spans)), budget_windows.c.window_start >= earliest)
    return {(row.budget_id, as_utc(row.window_start)): row for row in await conn.execute(query)}
