"""The steps every request takes, whatever its endpoint: served on the configuration it began with
and traced; admitted under the rate limits, its most reserved in the budgets and held on a prepaid
team's credit; recorded in the ledger once; settled by what it used and was charged."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from turnout.domain.chat import ChatRequest
from turnout.domain.errors import InvalidRequest, ModelNotFound, TurnoutError
from turnout.domain.principal import Principal
from turnout.domain.rate_limits import RateLimited
from turnout.domain.usage import Usage
from turnout.keys.index import KeyIndex
from turnout.limits.admission import Admission, Ticket
from turnout.observability.tracing import Answer as TracedAnswer
from turnout.observability.tracing import RequestTrace, Tracer
from turnout.pipeline.edge import Answerer, Inbound, RateLimitedInbound, TracedInbound
from turnout.presets.registry import PresetRegistry
from turnout.providers.base import ChatResult
from turnout.request_logs.service import RequestLog
from turnout.routing.catalog import Catalog, Route
from turnout.routing.generation import Generation
from turnout.routing.mirror import Mirrors
from turnout.routing.relay import RelayStream
from turnout.routing.router import Router
from turnout.routing.values import AttemptRecord, Served
from turnout.spend.billing import Billing, CreditHold
from turnout.spend.budget_values import Reservation
from turnout.spend.budgets import Budgets
from turnout.spend.ledger import Outcome
from turnout.spend.recorder import SpendRecorder
from turnout.spend.request_bound import RequestBound

# how long a request refused by a `parallel` limit in Redis waits before it is asked once more:
# longer than another instance takes to give a finished request's place back (its loop's next turn)
PLACE_RECHECK = 0.05
_MODEL_NAME = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,255}$")

Account = Callable[..., None]  # records the request in the ledger, once (Steps._accountant)
Serve = Callable[[Generation, RequestTrace | None], Awaitable[None]]


class Steps:
    """The services a request passes through, and the steps every endpoint takes alike."""

    def __init__(
        self,
        keys: KeyIndex,
        catalog: Catalog,
        router: Router,
        admission: Admission,
        budgets: Budgets,
        spend: SpendRecorder,
        billing: Billing,
        presets: PresetRegistry,
        request_log: RequestLog | None = None,
    ) -> None:
        self.keys = keys
        self.current = Generation(catalog, router)
        self.admission = admission
        self.budgets = budgets
        self.spend = spend
        self.billing = billing
        self.presets = presets
        self.request_log = request_log
        self.tracer: Tracer | None = None  # set when traces are exported (None: tracing off)
        self.mirrors = Mirrors({}, _nothing_spent)  # the aliases' shadow traffic (routing/mirror.py)

    @property
    def catalog(self) -> Catalog:
        return self.current.catalog

    @property
    def router(self) -> Router:
        return self.current.router

    def switch(self, catalog: Catalog, router: Router) -> Generation:
        """Route new requests with `catalog` and `router` (a reloaded configuration's); those in
        flight finish on what they began with: the generation returned, which tells when the last
        of them has ended."""
        retired, self.current = self.current, Generation(catalog, router)
        return retired

    async def _served(self, operation: str, inbound: TracedInbound, serve: Serve) -> None:
        """Serve a request on the configuration it began with (a reload lets it finish there),
        traced when traces are exported."""
        generation = self.current
        generation.enter()
        trace = (
            None
            if self.tracer is None
            else self.tracer.request(operation, inbound.request_id, *inbound.trace_context())
        )
        failure: BaseException | None = None
        try:
            await serve(generation, trace)
        except BaseException as error:
            failure = error
            raise
        finally:
            generation.leave()
            if trace is not None:
                trace.end(failure)

    async def cut_short(self) -> set[asyncio.Task[Any]]:
        """The shutdown's grace ran out: end every stream being relayed (its client told why), and
        have whatever else is cancelled from now on recorded as cut short by the shutdown (503
        `gateway_shutdown`), not as a client that left. Returns the tasks relaying the streams."""
        return await self.router.in_flight.cut_short()

    async def _accounted(
        self,
        inbound: TracedInbound,
        principal: Principal,
        route: Route,
        api: str,
        trace: RequestTrace | None,
        serve: Callable[[Outcome, Account], Awaitable[None]],
        *,
        searches: int = 0,
        units: Usage | None = None,
    ) -> None:
        """Admit and budget a request answered once, not streamed (`searches`: a rerank request's
        search units, `units`: a media request's images, seconds or characters, each reserved at
        their price), `serve` it (route it, account it with the `Account` it is given before the
        client has the answer, answer), and settle it however it ends."""
        self.spend.admit()  # the ledger can record it: else 503, before anything is spent
        ticket, reservation, hold = await self._admit(
            inbound, principal, route, searches=searches, units=units
        )
        outcome = Outcome()
        account = self._accountant(outcome, inbound.request_id, api, principal, route, False, ticket, trace)
        try:
            await serve(outcome, account)
        except BaseException as error:
            outcome.failed(error, self.router.in_flight.cancelled())
            raise
        finally:
            account(None)
            self._settle(outcome, reservation, hold, ticket)

    async def _serve(
        self,
        inbound: TracedInbound,
        respond: Answerer,
        principal: Principal,
        route: Route,
        api: str,
        trace: RequestTrace | None,
        run: Callable[[list[AttemptRecord]], Awaitable[tuple[bytes, Served]]],
        searches: int = 0,
    ) -> None:
        """A request answered in one JSON body (embeddings, rerank, moderations), `run` on the
        router: recorded in the ledger before the client has the answer (`_accounted`)."""

        async def answer(outcome: Outcome, account: Account) -> None:
            body, outcome.served = await run(outcome.tally)
            account(None)
            await respond.answer(body, outcome.served)

        await self._accounted(inbound, principal, route, api, trace, answer, searches=searches)

    async def _admit(
        self,
        inbound: RateLimitedInbound,
        principal: Principal,
        route: Route,
        request: ChatRequest | None = None,
        searches: int = 0,
        units: Usage | None = None,
    ) -> tuple[Ticket, Reservation, CreditHold]:
        """`_admit_once`, asked once more after PLACE_RECHECK when Redis found no free place under a
        `parallel` limit: another instance gives a finished request's place back at its event
        loop's next turn, so a client's next request through another instance may arrive first."""
        try:
            return await self._admit_once(inbound, principal, route, request, searches, units)
        except RateLimited as refusal:
            if not refusal.recheck:
                raise
        await asyncio.sleep(PLACE_RECHECK)
        return await self._admit_once(inbound, principal, route, request, searches, units)

    async def _admit_once(
        self,
        inbound: RateLimitedInbound,
        principal: Principal,
        route: Route,
        request: ChatRequest | None = None,
        searches: int = 0,
        units: Usage | None = None,
    ) -> tuple[Ticket, Reservation, CreditHold]:
        """The request's rate limits decided (with Redis: in the budgets' script run when budgets
        cover it, else in the limits' own), its maximum cost reserved in its budgets and held on a
        prepaid team's credit (before any provider is called); any refusal gives back what was
        taken."""
        try:
            ticket = self.admission.admit(principal, route, request)
        except RateLimited as error:
            if error.quota is not None:
                inbound.rate_limited(error.quota)  # the refusal shows the limit it hit
            raise
        try:
            reservation = await self.budgets.reserve(principal, route, request, ticket, searches, units)
        except BaseException as error:
            self._refused(inbound, ticket, error)
            raise
        try:
            if ticket.pending:
                await self.admission.confirm(ticket)
        except BaseException as error:
            self.budgets.release(reservation)
            self._refused(inbound, ticket, error)
            raise
        if ticket.quota is not None:
            inbound.rate_limited(ticket.quota)
        try:
            bound = reservation.bound
            if bound is None and (searches or units is not None):  # (no budget covers it: a prepaid
                bound = RequestBound(route, None, 0, searches, units)  # team's hold is bounded here)
            return ticket, reservation, await self.billing.hold(principal, route, request, bound)
        except BaseException:
            ticket.release()
            self.budgets.release(reservation)
            raise

    async def admit_uncharged(
        self, inbound: RateLimitedInbound, principal: Principal, route: Route
    ) -> Ticket:
        """Admission for a request that uses no tokens and costs nothing (counting a prompt's
        tokens): it counts in the request limits (rpm, rpd, parallel), reserves no tokens and no
        budget (asked once more as `_admit` is). The caller settles the ticket when it ends."""
        try:
            return await self._admit_requests(inbound, principal, route)
        except RateLimited as refusal:
            if not refusal.recheck:
                raise
        await asyncio.sleep(PLACE_RECHECK)
        return await self._admit_requests(inbound, principal, route)

    async def _admit_requests(
        self, inbound: RateLimitedInbound, principal: Principal, route: Route
    ) -> Ticket:
        try:
            ticket = self.admission.admit(principal, route, tokens=False)
        except RateLimited as error:
            if error.quota is not None:
                inbound.rate_limited(error.quota)
            raise
        try:
            await self.admission.confirm(ticket)
        except BaseException as error:
            self._refused(inbound, ticket, error)
            raise
        if ticket.quota is not None:
            inbound.rate_limited(ticket.quota)
        return ticket

    @staticmethod
    def _refused(inbound: RateLimitedInbound, ticket: Ticket, error: BaseException) -> None:
        ticket.release()
        if isinstance(error, RateLimited) and error.quota is not None:
            inbound.rate_limited(error.quota)  # the refusal shows the limit it hit

    def _settle(self, outcome: Outcome, reservation: Reservation, hold: CreditHold, ticket: Ticket) -> None:
        """Replace the reservation, the hold and the token limits' estimate by what the request
        used and was charged."""
        usage = outcome.usage
        ticket.settle(0 if usage is None else usage.input_tokens + usage.output_tokens)  # if not yet
        self.billing.release(hold, outcome.charged)
        self.budgets.settle(
            reservation, outcome.usage, answered=outcome.served is not None, cost=outcome.billed
        )

    def _accountant(
        self,
        outcome: Outcome,
        request_id: str,
        api: str,
        principal: Principal,
        route: Route,
        stream: bool,
        ticket: Ticket,
        trace: RequestTrace | None = None,
    ) -> Callable[..., None]:
        """Record the request in the ledger once, an entry per upstream attempt: as soon as the
        answer is complete (before the client sees it complete), or when the request ends without
        one (failed, or the client left: 499); the metrics and the trace take it from there. Its
        rate-limit ticket is settled then too, so a client that sends its next request once it has
        the answer finds its place free."""

        def account(relay: RelayStream | None, result: ChatResult | None = None) -> None:
            if outcome.recorded:
                return
            outcome.recorded = True
            if relay is not None and relay.abandoned:
                outcome.left()
            entries = outcome.entries(request_id, api, principal, route, stream=stream, billing=self.billing)
            served = outcome.served
            record = None if served is None else served.record
            first = None if relay is None else relay.first_output_at
            self.spend.record_request(
                entries,
                outcome.status,
                0 if record is None else record.number,
                outcome.elapsed,
                None if first is None else first - outcome.started,
                trace,
                None if trace is None or record is None else answer_of(relay, result, trace.captures_content),
            )
            usage = outcome.usage
            ticket.settle(0 if usage is None else usage.input_tokens + usage.output_tokens)

        return account

    def authenticate(self, inbound: Inbound) -> Principal:
        """In memory only: a key this instance does not know yet is refused."""
        return self.keys.authenticate(inbound.credential())

    async def resolve(self, inbound: Inbound) -> Principal:
        """The caller, asking the key store about a key issued on another instance."""
        return await self.keys.resolve(inbound.credential())

    def authorise(self, principal: Principal, model: str, catalog: Catalog | None = None) -> Route:
        """The route for `model`, if it exists and the caller may use it (404 either way, so a key
        cannot probe for models it is not allowed to see)."""
        if not _MODEL_NAME.match(model):
            raise InvalidRequest("'model' must be 1-256 printable characters.", param="model")
        route = (self.current.catalog if catalog is None else catalog).resolve(model)
        if route is None or (not principal.may_use(route.alias) and not principal.may_use(model)):
            raise ModelNotFound(
                f"The model '{model}' does not exist or you do not have access to it.", param="model"
            )
        return route

    def visible(self, principal: Principal, name: str) -> bool:
        route = self.catalog.resolve(name)
        return route is not None and (principal.may_use(route.alias) or principal.may_use(name))


async def _nothing_spent(alias: str, since: Any) -> int:
    return 0


def answer_of(relay: RelayStream | None, result: ChatResult | None, content: bool) -> TracedAnswer | None:
    """What a chat answer says of itself, for its trace: its id, model and finish reasons (and its
    text, when `content`) — from a stream's accumulator, or a complete answer read typed."""
    if relay is not None:
        folded = relay.answer
        reasons = () if folded.finish_reason is None else (folded.finish_reason,)
        return TracedAnswer(folded.id, folded.model, reasons, folded.text() if content else None)
    if result is None:
        return None
    try:
        completion = result.typed()
    except TurnoutError:  # an answer in the provider's own format (passed through as it is)
        return None
    finished = tuple(c.finish_reason for c in completion.choices if c.finish_reason)
    text = "".join(result.texts()) if content else None
    return TracedAnswer(completion.id, completion.model, finished, text)
