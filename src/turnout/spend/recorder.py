"""Recording spend: the pipeline hands each finished request's entry to `record` (a journal
append, no database round trip); a background task moves the journal into the ledger table every
`interval` seconds, and once more when the gateway stops. Journals left by a process that died
are moved on start.

Another task watches the journal every second: it looks at its disk (`Journal.probe`), writes the
entries held in memory after a failed write once the journal can take them (`Journal.recover`),
and meanwhile puts them into the database directly (idempotent inserts, so an entry that reaches
both counts once). `admit` refuses a request while the journal cannot be written."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from turnout.domain.errors import LedgerUnavailable
from turnout.domain.ledger_entry import LedgerEntry
from turnout.observability.gauges import JournalSample
from turnout.observability.metrics import RequestMetrics
from turnout.observability.tracing import Answer, RequestTrace
from turnout.periodic import Periodic, finish
from turnout.spend.journal import BATCH, Journal
from turnout.spend.ledger_store import LedgerStore

log = logging.getLogger("turnout.spend")

FLUSH_INTERVAL = 1.0  # seconds between moves into the database
RETRY_AFTER = 5.0  # after a failed move (the database is away)
WATCH_INTERVAL = 1.0  # seconds between looks at the journal's disk and retries of held entries


class SpendRecorder:
    def __init__(
        self,
        journal_dir: Path,
        store: LedgerStore,
        interval: float = FLUSH_INTERVAL,
        metrics: RequestMetrics | None = None,
    ) -> None:
        self.journal = Journal(journal_dir)
        self.metrics = metrics  # counts every request it records (None: metrics off)
        self.store = store
        self.interval = interval
        self.recorded = 0  # entries journaled by this process
        self.moved = 0  # entries moved into the database by this process
        # when the oldest entry not yet in the database was journaled (the monotonic clock): of
        # those after the last seal, and of those sealed and still being moved
        self._oldest: float | None = None
        self._oldest_sealed: float | None = None
        self._mover = Periodic(self._move, interval, "moving the ledger journal")
        self._watch = Periodic(self._tend, WATCH_INTERVAL, "watching the ledger journal")
        self._store_failing = False
        self._tending = asyncio.Lock()  # one task at a time writes or stores held entries
        self._moving = asyncio.Lock()  # one move at a time: two would insert and unlink a segment twice
        self._urgent: asyncio.Task[None] | None = None
        self.journal.on_hold = self._held

    async def start(self) -> None:
        """Move what earlier processes left, then keep moving in the background."""
        try:
            replayed = await self.journal.move(self.store.insert)
            if replayed:
                log.info("moved %d ledger entries left by an earlier process into the database", replayed)
        except Exception as error:  # the database is away: the background task keeps trying
            log.warning("could not move the ledger journal into the database yet: %s", error)
        self._mover.start()
        self._watch.start()

    def admit(self) -> None:
        """Refuse a request (503) while its ledger entry could not be journaled: checked before
        any provider is called, so nothing is spent that the ledger cannot record."""
        if not self.journal.accepting:
            raise LedgerUnavailable(
                "This gateway cannot record spend right now (its ledger journal cannot be written), "
                "so the request was not sent to any provider. Try again shortly."
            )

    def record(self, entry: LedgerEntry) -> None:
        self.journal.append(entry)
        self.recorded += 1
        if self._oldest is None:
            self._oldest = time.monotonic()

    def record_request(
        self,
        entries: Sequence[LedgerEntry],
        status: int,
        served: int,
        elapsed: float,
        first_token: float | None,
        trace: RequestTrace | None = None,
        answer: Answer | None = None,
    ) -> None:
        """Journal a finished request's entries (one per attempt), count it in the metrics and
        give its trace's spans their figures: the one place all three see it (see
        `RequestMetrics.request` for the arguments; `answer`: what the answer said of itself)."""
        for entry in entries:
            self.record(entry)
        if self.metrics is not None:
            self.metrics.request(entries, status, served, elapsed, first_token)
        if trace is not None:
            trace.recorded(entries, status, answer)

    def record_shadow(self, entry: LedgerEntry) -> None:
        """Journal a mirror's shadow (rehearsal spend) and count it in the metrics by outcome."""
        self.record(entry)
        if self.metrics is not None:
            self.metrics.shadow(entry)

    def shadow_skipped(self, alias: str, why: str) -> None:
        """A request the mirror would have shadowed was not (busy, budget, unsupported,
        out_of_service)."""
        if self.metrics is not None:
            self.metrics.shadow_not_sent(alias, why)

    def backlog(self) -> JournalSample:
        """For the metrics: entries not in the database yet, how long the oldest has waited."""
        journal = self.journal
        waiting = [at for at in (self._oldest_sealed, self._oldest) if at is not None]
        lag = time.monotonic() - min(waiting) if waiting else 0.0
        return JournalSample(
            max(0, self.recorded - self.moved), lag, len(journal.held), journal.state != "unwritable"
        )

    def health(self) -> dict[str, object]:
        """The journal's state for /health/ready: ok, degraded or unwritable, and why."""
        journal = self.journal
        out: dict[str, object] = {"state": journal.state}
        if journal.held:
            out["held"] = len(journal.held)
        if journal.fault is not None:
            out["fault"] = journal.fault
        if journal.seal_fault is not None:
            out["seal_fault"] = journal.seal_fault
        return out

    async def flush(self) -> None:
        """Seal the journal and move everything into the database (raises if that fails). A flush
        asked while the background move runs waits for it, then moves what is left."""
        async with self._moving:
            self.journal.seal()
            if self._oldest_sealed is None:
                self._oldest_sealed = self._oldest
            self._oldest = None
            self.moved += await self.journal.move(self.store.insert)
            self._oldest_sealed = None

    async def _move(self) -> None:
        if not self.journal.pending and not self.journal.sealed():
            return
        try:
            await self.flush()
        except Exception as error:
            log.warning("could not move the ledger journal into the database: %s", error)
            await asyncio.sleep(RETRY_AFTER)

    def _held(self) -> None:
        """An entry was just held: try the database at once rather than at the next look (the
        sooner it is stored, the less a `kill -9` can lose)."""
        if self._urgent is None or self._urgent.done():
            self._urgent = asyncio.get_running_loop().create_task(
                self._store_now(), name="turnout: storing held entries"
            )

    async def _store_now(self) -> None:
        async with self._tending:
            await self._store_held()

    async def _tend(self) -> None:
        journal = self.journal
        journal.probe()
        if journal.fault is None and not journal.held:
            return
        async with self._tending:
            journal.recover()
            await self._store_held()

    async def _store_held(self) -> None:
        """Insert the entries still held into the database directly (each once: the insert skips
        an entry already there, so one that later reaches the journal too is not counted twice)."""
        journal = self.journal
        stored = 0
        while journal.held:
            batch = list(itertools.islice(journal.held, BATCH))
            try:
                await self.store.insert(batch)
            except Exception as error:
                if not self._store_failing:
                    log.error(
                        "%d ledger entries are held in memory: neither the journal nor the database "
                        "can take them now (%s); they are retried every second",
                        len(journal.held),
                        error,
                    )
                self._store_failing = True
                break
            journal.release(len(batch))
            stored += len(batch)
        else:
            self._store_failing = False
        if stored:
            self.moved += stored
            log.warning("moved %d held ledger entries into the database directly", stored)

    async def aclose(self) -> None:
        await self._watch.aclose()
        await self._mover.aclose()
        if self._urgent is not None:  # let it end (see periodic.py); what it holds is stored below
            await finish(self._urgent, "storing held ledger entries")
        self.journal.recover()
        try:
            await self.flush()
        except Exception as error:  # the journal keeps them: the next start moves them
            log.error("ledger entries stay in the journal until the next start: %s", error)
        await self._store_held()
        if self.journal.held:
            log.error(
                "%d ledger entries held in memory are lost: neither the journal nor the database "
                "could take them before the gateway stopped",
                len(self.journal.held),
            )
        self.journal.close()
