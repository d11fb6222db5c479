"""Shadow traffic: a share of an alias's admitted chat requests also sent to a candidate deployment,
in the background, to rehearse moving to it on real traffic.

A shadow is a task of its own: the client's request never waits for it, never sees its answer,
its latency or its error. Each is bounded by the mirror's `timeout` and cancelled when the gateway
stops; at most `concurrency` run at once per alias (more are skipped, so a slow candidate cannot
pile tasks up). Its ledger entry is rehearsal spend (`rehearsal`, under `REHEARSAL_KEY_ID`, no team,
no customer price): no customer budget counts it and no customer is charged for it. The mirror's
own budget caps it: once the rehearsal spend of the period's window reaches it, shadows stop until
the next window. With mirroring off the pipeline pays one dictionary lookup per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from turnout.config.settings import MirrorSettings
from turnout.domain.chat import ChatRequest, counted_usage
from turnout.domain.cut_answer import cut_answer_usage
from turnout.domain.errors import TurnoutError, UpstreamAnswerCut
from turnout.domain.ledger_entry import REHEARSAL_KEY_ID, LedgerEntry
from turnout.domain.periods import window
from turnout.domain.pricing import Micros
from turnout.domain.usage import Usage
from turnout.periodic import Periodic
from turnout.routing.capabilities import first_unmet, fits_context, fits_output, needs
from turnout.routing.catalog import Target

log = logging.getLogger("turnout.mirror")

REFRESH_SECONDS = 5.0  # how often each mirror reads its window's rehearsal spend from the ledger
UTC = ZoneInfo("UTC")
SUFFIX = "-shadow"  # a shadow's request id: its client request's, with this after it

# (alias, window start) → the rehearsal spend the ledger holds for it (micro-dollars)
SpentSince = Callable[[str, dt.datetime], Awaitable[int]]
Record = Callable[[LedgerEntry], None]
Skipped = Callable[[str, str], None]  # (alias, why): busy | budget | unsupported | out_of_service
OutOfService = Callable[[], frozenset[str]]  # the providers taken out of service (admin API)


def _none_out() -> frozenset[str]:
    return frozenset()


class RehearsalBudget:
    """A mirror's spend in its period's current window: the ledger's figure (read every
    REFRESH_SECONDS, every instance's shadows) or, when higher, the figure read at the window's
    first look plus what this instance's shadows cost since. Shadows are allowed only once the
    window's spend has been read, and while it is below the limit."""

    def __init__(self, settings: MirrorSettings, clock: Callable[[], float] = time.time) -> None:
        self.limit = settings.budget
        self.period = settings.period
        self.clock = clock
        self.start: dt.datetime | None = None  # the window the figures below are of
        self.base: Micros | None = None  # the ledger's figure at the window's first read
        self.latest: Micros = 0  # ... at the last read
        self.mine: Micros = 0  # this instance's shadows' cost since the first read

    def _current(self) -> dt.datetime:
        start, _ = window(self.period, UTC, dt.datetime.fromtimestamp(self.clock(), dt.UTC))
        if start != self.start:
            self.start, self.base, self.latest, self.mine = start, None, 0, 0
        return start

    @property
    def spent(self) -> Micros:
        return 0 if self.base is None else max(self.latest, self.base + self.mine)

    def allows(self) -> bool:
        self._current()
        return self.base is not None and self.spent < self.limit

    def add(self, cost: Micros) -> None:
        if self.base is not None:
            self.mine += cost

    async def refresh(self, alias: str, spent_since: SpentSince) -> None:
        start = self._current()
        figure = await spent_since(alias, start)
        if self.start != start:  # the window moved on while the ledger was read
            return
        if self.base is None:
            self.base = figure
        self.latest = figure


class Mirror:
    """One alias's shadows to its candidate deployment."""

    def __init__(
        self,
        alias: str,
        target: Target,
        settings: MirrorSettings,
        record: Record,
        skipped: Skipped,
        draw: Callable[[], float] = random.random,
        out_of_service: OutOfService = _none_out,
    ) -> None:
        self.alias = alias
        self.target = target
        self.settings = settings
        self.budget = RehearsalBudget(settings)
        self._record = record
        self._skipped = skipped
        self._draw = draw
        self._out_of_service = out_of_service
        self.tasks: set[asyncio.Task[None]] = set()

    def offer(
        self, request: ChatRequest, body: dict[str, Any], request_id: str, api: str, features: int
    ) -> None:
        """An admitted request of the alias: shadowed with the mirror's share of chance. Never
        raises: nothing about a shadow may reach the client."""
        if self._draw() >= self.settings.share:
            return
        try:
            self._offer(request, body, request_id, api, features)
        except Exception:
            log.exception("a shadow request to %s could not be started", self.target.label)

    def _offer(
        self, request: ChatRequest, body: dict[str, Any], request_id: str, api: str, features: int
    ) -> None:
        why = self._obstacle(request)
        if why is not None:
            self._skipped(self.alias, why)
            return
        if request.stream:  # a shadow reads its answer whole: nobody is waiting for its tokens
            request = msgspec.structs.replace(request, stream=False, stream_options=None)
            body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        task = asyncio.get_running_loop().create_task(
            self._shadow(request, body, request_id, api, features), name="turnout: shadow request"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _obstacle(self, request: ChatRequest) -> str | None:
        if len(self.tasks) >= self.settings.concurrency:
            return "busy"
        if not self.budget.allows():
            return "budget"
        t = self.target
        if t.provider in self._out_of_service():  # a vendor in crisis gets no rehearsal traffic either
            return "out_of_service"
        caps = t.capabilities
        if (
            (not caps.full_chat and first_unmet(caps, needs(request)) is not None)
            or (t.context_window is not None and not fits_context(t.context_window, request))
            or not fits_output(t.max_output_tokens, request)
        ):
            return "unsupported"
        return None

    async def _shadow(
        self, request: ChatRequest, body: dict[str, Any], request_id: str, api: str, features: int
    ) -> None:
        at, started = time.time(), time.monotonic()
        t = self.target
        usage: Usage | None = None
        status, reason = 200, None
        try:
            async with asyncio.timeout(self.settings.timeout):
                result = await t.adapter.complete(t.call(request, body, False))
            usage = result.usage or counted_usage(request, result.texts())
        except UpstreamAnswerCut as cut:  # generated, so billed: counted from what arrived
            status, reason = cut.status, cut.reason
            usage = cut_answer_usage(request, cut.received)
        except TurnoutError as error:
            status, reason = error.status, error.reason
        except TimeoutError:
            status, reason = 504, "upstream_timeout"
        except asyncio.CancelledError:  # the gateway is stopping
            self._account(request_id, api, features, at, started, 503, "gateway_shutdown", None)
            raise
        except Exception:
            log.exception("a shadow request to %s failed", t.label)
            status, reason = 500, "internal_error"
        self._account(request_id, api, features, at, started, status, reason, usage)

    def _account(
        self,
        request_id: str,
        api: str,
        features: int,
        at: float,
        started: float,
        status: int,
        reason: str | None,
        usage: Usage | None,
    ) -> None:
        t = self.target
        counted = usage or Usage()
        version = None if t.price is None or usage is None else t.price.at(at)
        cost: Micros | None = 0 if usage is None else (None if version is None else version.cost(counted))
        self.budget.add(cost or 0)
        self._record(
            LedgerEntry(
                request_id=request_id + SUFFIX,
                at=at,
                api=api,
                key_id=REHEARSAL_KEY_ID,
                alias=self.alias,
                deployment=t.label,
                provider=t.provider,
                model=t.model,
                status=status,
                input_tokens=counted.input_tokens,
                output_tokens=counted.output_tokens,
                cached_input_tokens=counted.cached_input_tokens,
                cache_write_tokens=counted.cache_write_tokens,
                reasoning_tokens=counted.reasoning_tokens,
                estimated=counted.estimated,
                cost_micros=cost,
                cache_write_1h_tokens=counted.cache_write_1h_tokens,
                price_version=None if version is None else version.version or None,
                latency_ms=round((time.monotonic() - started) * 1000),
                attempts=1,
                reason=None if status < 400 else (reason or "error")[:64],
                features=features,
                rehearsal=True,
            )
        )


class Mirrors:
    """The configured aliases' mirrors (an empty mapping when none is configured), their budgets'
    refresh, and their shadows' end when the gateway stops."""

    def __init__(self, mirrors: Mapping[str, Mirror], spent_since: SpentSince) -> None:
        self.by_alias: dict[str, Mirror] = dict(mirrors)
        self.spent_since = spent_since
        self.retired: list[Mirror] = []  # (a reload) mirrors whose shadows may still run
        self._refresher = Periodic(self.refresh, REFRESH_SECONDS, "reading the mirrors' rehearsal spend")
        self._started = False

    async def refresh(self) -> None:
        for mirror in self.by_alias.values():
            try:
                await mirror.budget.refresh(mirror.alias, self.spent_since)
            except Exception as error:  # the database is away: shadows wait for the next read
                log.warning("cannot read the rehearsal spend of %s: %s", mirror.alias, error)

    def start(self) -> None:
        if self.by_alias and not self._started:
            self._started = True
            self._refresher.start()

    async def switch(self, mirrors: Mapping[str, Mirror]) -> None:
        """A reloaded configuration's mirrors; the shadows running keep going to their end."""
        self.retired = [m for m in (*self.retired, *self.by_alias.values()) if m.tasks]
        self.by_alias = dict(mirrors)
        await self.refresh()
        self.start()

    @property
    def running(self) -> int:
        return sum(len(m.tasks) for m in (*self.by_alias.values(), *self.retired))

    async def aclose(self) -> None:
        """Cancel every shadow still running (each records itself as cut short by the shutdown):
        a shadow never holds a shutdown up."""
        await self._refresher.aclose()
        self._started = False
        tasks = [task for m in (*self.by_alias.values(), *self.retired) for task in m.tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
