"""The admission step of the pipeline: rate limits per key, team, user and alias — requests per
minute (rpm) and per day (rpd), tokens per minute (tpm) and requests at once (parallel). Every
limit that covers a request applies, so the tightest wins; a request refused by one is counted in
none (429 `rate_limit_exceeded` naming it, with Retry-After).

A token limit counts the request's estimate at admission — its prompt at a token a UTF-8 byte and
its output limit (domain/prompt_bounds.py), a bound — and the actual once it ends. On one instance
the windows are in memory (limits/window.py). With Redis (`storage.redis_url`) they are shared by
every instance and decided in one script run: the budget reservation's when budgets cover the
request (the pipeline hands the ticket's `ask` to it), else the limits' own. Without Redis, an
instance that shares its database with n - 1 others enforces 1/n of each limit (warned), as budgets
do. With no limit covering a request, admission costs a few dict lookups."""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections.abc import Callable

from turnout.domain.chat import ChatRequest
from turnout.domain.principal import Principal
from turnout.domain.prompt_bounds import byte_bound, output_bound
from turnout.domain.rate_limits import (
    MEASURES,
    SLICES,
    WINDOWS,
    LimitScope,
    Measure,
    Quota,
    RateLimited,
    RateLimits,
)
from turnout.limits.book import LimitBook
from turnout.limits.shared import PREFIX, Answer, Ask, SharedLimits
from turnout.limits.window import SlidingWindow
from turnout.periodic import Periodic
from turnout.routing.catalog import Route

PARALLEL_WAIT = 1.0  # the Retry-After of a refusal for too many requests at once
MAX_PLANS = 100_000  # subjects' limits kept built at once (then built again as they come)


class Rule:
    """One limit of one subject, built once per subject and limits (cached by the admission):
    where it is counted."""

    __slots__ = ("key", "limit", "measure", "scope", "tail", "window", "words")

    def __init__(
        self, scope: LimitScope, subject: str, measure: Measure, limit: int, windows: dict[str, SlidingWindow]
    ) -> None:
        self.scope = scope
        self.measure = measure
        self.limit = limit
        self.key = key = f"{PREFIX}{scope}:{subject}:{measure}"
        self.window: SlidingWindow | None = None
        # its words in the script's arguments (limits/shared.py): kind and limit, the amount, then
        # `tail` (the slice's length in ms and the number of slices)
        self.tail: tuple[int, int] = (0, 0)
        if measure == "parallel":
            self.words: tuple[str, int] = ("p", limit)
            return
        window = windows.get(key)  # shared by every rule counted there (limits changed, same window)
        if window is None:
            window = windows[key] = SlidingWindow(WINDOWS[measure], SLICES[measure])
        self.window = window
        slices = SLICES[measure]
        self.words = ("w", limit)
        self.tail = (int(WINDOWS[measure] * 1000) // slices, slices)


class Applied:
    """One limit applied to one request: how much it counts there, and in which slice."""

    __slots__ = ("amount", "here", "rule", "slice")

    def __init__(self, rule: Rule, amount: int) -> None:
        self.rule = rule
        self.amount = amount
        self.slice = 0  # where it is counted: Redis's slice, or this instance's
        self.here = 0  # with Redis: the slice of this instance's own count (its fallback)


class Ticket:
    """What an admitted request holds until it ends: its places and its token reservations,
    given back or settled to the actual once (`settle`)."""

    __slots__ = ("admission", "applied", "done", "pending", "prompt", "quota", "released", "rid", "shared")

    def __init__(self, admission: Admission | None, applied: list[Applied]) -> None:
        self.admission = admission
        self.applied = applied
        self.quota: Quota | None = None
        self.pending = False  # to be decided by Redis (`ask`, `answered`)
        self.shared = False  # decided by Redis: settled there
        self.done = admission is None
        self.rid = ""
        self.prompt: int | None = None  # the prompt's byte bound, when a tpm limit needed it
        self.released: list[tuple[str, str]] = []  # other requests' places its script run gave back

    def ask(self) -> Ask:
        """The limits' part of a script run (limits/shared.py)."""
        assert self.admission is not None
        return self.admission.ask(self)

    def answered(self, answer: Answer) -> None:
        """Redis's verdict: admitted (counted there), or RateLimited."""
        assert self.admission is not None
        self.admission.answered(self, answer)

    def unreachable(self) -> None:
        """The script that was to decide it could not reach Redis: decided on this instance."""
        assert self.admission is not None
        self.admission.unreachable(self)

    def release(self) -> None:
        """Give everything back: the request was not served (a later step refused it)."""
        self.settle(0)

    def settle(self, tokens: int) -> None:
        """The request ended having used `tokens` (prompt and output): its place back, its token
        reservations set to that."""
        if not self.done:
            self.done = True
            assert self.admission is not None
            self.admission.settle(self, tokens)


_ADMITTED = Ticket(None, [])


class Admission:
    def __init__(
        self,
        book: LimitBook | None = None,
        shared: SharedLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book if book is not None else LimitBook()
        self.shared = shared
        self.clock = clock
        self.windows: dict[str, SlidingWindow] = {}
        self.running: dict[str, int] = {}
        self.peers = 1  # instances sharing the database (without Redis: each enforces 1/peers)
        self.live: dict[str, Ticket] = {}  # by request id: places held in Redis, renewed
        self._plans: dict[tuple[LimitScope, str, RateLimits], tuple[Rule, ...]] = {}
        self._ids = itertools.count()
        self._prefix = secrets.token_hex(6)
        self.renewer = (
            None
            if shared is None
            else Periodic(self.renew, shared.lapse_ms / 3000, "renewing rate-limit places in Redis")
        )

    def set_peers(self, live: int) -> None:
        self.peers = live

    def start(self) -> None:
        if self.renewer is not None:
            self.renewer.start()

    # ------------------------------------------------------------------ which limits apply

    def admit(
        self, principal: Principal, route: Route, request: ChatRequest | None = None, *, tokens: bool = True
    ) -> Ticket:
        """The limits covering the request, decided here (RateLimited if one has no room) or, with
        Redis, left `pending` for the one script run that decides them. A request that uses no
        tokens (`tokens` False: counting them) counts in the request limits only."""
        applying = self._applying(principal, route, request, tokens)
        if applying is None:
            return _ADMITTED
        ticket = Ticket(self, applying[0])
        ticket.prompt = applying[1]  # computed for a tpm limit: the budgets' bound reuses it
        if self.shared is not None and self.shared.usable:
            ticket.pending = True
            ticket.rid = f"{self._prefix}.{next(self._ids)}"
            return ticket
        self._take_here(ticket)
        return ticket

    def _applying(
        self, principal: Principal, route: Route, request: ChatRequest | None, tokens_too: bool = True
    ) -> tuple[list[Applied], int | None] | None:
        """The limits covering the request, and its prompt's byte bound when a tpm limit needed it."""
        book = self.book
        found: list[tuple[LimitScope, str, RateLimits]] = []
        if principal.limits is not None:
            found.append(("key", principal.key_id, principal.limits))
        if book.teams and principal.team_id is not None:
            team = book.teams.get(principal.team_id)
            if team is not None:
                found.append(("team", principal.team_id, team))
        spender = principal.spender if book.users else None  # its user, or who issued a user-less key
        if spender is not None:
            user = book.users.get(spender)
            if user is not None:
                found.append(("user", spender, user))
        alias = route.policy.limits
        if alias is not None:
            found.append(("alias", route.alias, alias))
        if not found:
            return None
        tokens = 0
        prompt: int | None = None
        applied = []
        plans = self._plans
        for found_one in found:
            plan = plans.get(found_one)
            if plan is None:
                plan = self._plan(*found_one)
            for rule in plan:
                if rule.measure == "tpm":
                    if not tokens_too:
                        continue
                    if prompt is None:
                        prompt = byte_bound(request)
                        tokens = max(prompt + output_bound(request), 1)
                    applied.append(Applied(rule, tokens))
                else:
                    applied.append(Applied(rule, 1))
        return (applied, prompt) if applied else None

    def _plan(self, scope: LimitScope, subject: str, limits: RateLimits) -> tuple[Rule, ...]:
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        plan = tuple(
            Rule(scope, subject, measure, value, self.windows)
            for measure in MEASURES
            if (value := limits.get(measure)) is not None
        )
        self._plans[(scope, subject, limits)] = plan
        return plan

    # ------------------------------------------------------------------ on this instance

    def _take_here(self, ticket: Ticket) -> None:
        now = self.clock()
        peers = self.peers
        running = self.running
        refused: tuple[Applied, float] | None = None
        for applied in ticket.applied:
            rule = applied.rule
            limit = rule.limit if peers <= 1 else max(rule.limit // peers, 1)
            window = rule.window
            if window is None:
                if running.get(rule.key, 0) + 1 <= limit:
                    continue
                wait = PARALLEL_WAIT
            else:
                applied.slice = window.prune(now)
                if window.total + applied.amount <= limit:
                    continue
                wait = window.wait(now, applied.amount, limit)
            if refused is None or wait > refused[1]:
                refused = (applied, wait)
        if refused is not None:
            ticket.done = True
            raise self._refusal(*refused)
        quota = Quota(now)
        for applied in ticket.applied:
            rule = applied.rule
            window = rule.window
            if window is None:
                running[rule.key] = running.get(rule.key, 0) + 1
                continue
            window.put(applied.slice, applied.amount)
            limit = rule.limit if peers <= 1 else max(rule.limit // peers, 1)
            if rule.measure == "tpm":
                quota.note_tokens(limit, limit - window.total, window.reset(now))
            else:
                quota.note_requests(limit, limit - window.total, window.reset(now))
        ticket.quota = quota

    def _refusal(self, applied: Applied, wait: float, now: float | None = None) -> RateLimited:
        rule = applied.rule
        detail = ""
        if math.isinf(wait):
            detail = f", and this request alone may use {applied.amount} tokens"
            wait = WINDOWS["tpm"]
        refusal = RateLimited(rule.scope, rule.measure, rule.limit, wait, detail)
        quota = Quota(self.clock() if now is None else now)
        if rule.measure == "tpm":
            quota.note_tokens(rule.limit, 0, wait)
        elif rule.measure != "parallel":
            quota.note_requests(rule.limit, 0, wait)
        refusal.quota = None if quota.empty else quota
        return refusal

    # ------------------------------------------------------------------ through Redis

    def ask(self, ticket: Ticket) -> Ask:
        shared = self.shared
        assert shared is not None
        words: list[str | int] = [len(ticket.applied), ticket.rid, shared.lapse_ms]
        keys = []
        for applied in ticket.applied:
            rule = applied.rule
            keys.append(rule.key)
            words += rule.words
            words.append(applied.amount)
            words += rule.tail
        released = shared.take_released()
        words.append(len(released))
        for key, rid in released:
            keys.append(key)
            words.append(rid)
        ticket.released = released
        return Ask(keys, words, len(ticket.applied), released)

    async def confirm(self, ticket: Ticket) -> None:
        """Decide a pending ticket alone (no budget reservation carried it): one round trip, or
        this instance's share of each limit while Redis cannot be reached."""
        if not ticket.pending:
            return
        assert self.shared is not None
        answer = await self.shared.admit(ticket.ask())
        if answer is None:
            self.shared.give_back(ticket.released)
            ticket.pending = False
            self._take_here(ticket)
            return
        self.answered(ticket, answer)

    def unreachable(self, ticket: Ticket) -> None:
        """The script carrying the ticket could not reach Redis: decide it here."""
        if ticket.pending:
            assert self.shared is not None
            self.shared.give_back(ticket.released)
            ticket.pending = False
            self._take_here(ticket)

    def answered(self, ticket: Ticket, answer: Answer) -> None:
        ticket.pending = False
        now = answer.now_ms / 1000
        if answer.code > 0:
            ticket.done = True
            applied = ticket.applied[answer.code - 1]
            wait = PARALLEL_WAIT if applied.rule.window is None else answer.wait_ms / 1000
            refusal = self._refusal(applied, math.inf if answer.wait_ms < 0 else wait, now)
            refusal.recheck = applied.rule.window is None  # a place may be on its way back
            raise refusal
        ticket.shared = True
        quota = Quota(now)
        holds_place = False
        here = self.clock()
        running = self.running
        for applied, (used, reset_ms, slice_index) in zip(ticket.applied, answer.taken, strict=True):
            applied.slice = slice_index
            rule = applied.rule
            # this instance also counts its own requests, so that if Redis stops answering it
            # enforces its share against what it has already sent, not from zero
            window = rule.window
            if window is None:
                running[rule.key] = running.get(rule.key, 0) + 1
                holds_place = True
                continue
            applied.here = window.add(here, applied.amount)
            if rule.measure == "tpm":
                quota.note_tokens(rule.limit, rule.limit - used, reset_ms / 1000)
            else:
                quota.note_requests(rule.limit, rule.limit - used, reset_ms / 1000)
        ticket.quota = quota
        if holds_place:
            self.live[ticket.rid] = ticket

    async def renew(self) -> None:
        """Push back the deadlines of the places this instance's running requests hold in Redis."""
        shared = self.shared
        if shared is None or shared.down:
            return
        for rid, ticket in list(self.live.items()):
            for applied in ticket.applied:
                if applied.rule.window is None:
                    shared.add(applied.rule.key, "r", rid)

    # ------------------------------------------------------------------ the end of a request

    def settle(self, ticket: Ticket, tokens: int) -> None:
        if ticket.pending:  # refused by a later step before Redis was asked: nothing was taken
            ticket.pending = False
            return
        if ticket.shared:
            self._settle_shared(ticket, tokens)
            return
        for applied in ticket.applied:
            rule = applied.rule
            window = rule.window
            if window is None:
                left = self.running.get(rule.key, 0) - 1
                if left > 0:
                    self.running[rule.key] = left
                else:
                    self.running.pop(rule.key, None)
            elif rule.measure == "tpm" and tokens != applied.amount:
                window.adjust(applied.slice, tokens - applied.amount)

    def _settle_shared(self, ticket: Ticket, tokens: int) -> None:
        shared = self.shared
        assert shared is not None
        self.live.pop(ticket.rid, None)
        running = self.running
        for applied in ticket.applied:
            rule = applied.rule
            window = rule.window
            if window is None:
                shared.release(rule.key, ticket.rid)
                left = running.get(rule.key, 0) - 1
                if left > 0:
                    running[rule.key] = left
                else:
                    running.pop(rule.key, None)
            elif rule.measure == "tpm" and tokens != applied.amount:
                shared.add(rule.key, "t", str(applied.slice), tokens - applied.amount)
                window.adjust(applied.here, tokens - applied.amount)

    async def aclose(self) -> None:
        if self.renewer is not None:
            await self.renewer.aclose()
        await self.book.aclose()
        if self.shared is not None:
            await self.shared.aclose()
