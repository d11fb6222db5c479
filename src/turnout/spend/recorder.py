"""Recording spend: the pipeline hands each finished request's entry to `record` (a journal
append, no database round trip); a background task moves the journal into the ledger table every
`interval` seconds, and once more when the gateway stops. Journals left by a process that died
are moved on start."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from turnout.periodic import Periodic
from turnout.spend.journal import Journal
from turnout.spend.ledger import LedgerEntry
from turnout.spend.ledger_store import LedgerStore

log = logging.getLogger("turnout.spend")

FLUSH_INTERVAL = 1.0  # seconds between moves into the database
RETRY_AFTER = 5.0  # after a failed move (the database is away)


class SpendRecorder:
    def __init__(self, journal_dir: Path, store: LedgerStore, interval: float = FLUSH_INTERVAL) -> None:
        self.journal = Journal(journal_dir)
        self.store = store
        self.interval = interval
        self.recorded = 0  # entries journaled by this process
        self.moved = 0  # entries moved into the database by this process
        self._mover = Periodic(self._move, interval, "moving the ledger journal")

    async def start(self) -> None:
        """Move what earlier processes left, then keep moving in the background."""
        try:
            replayed = await self.journal.move(self.store.insert)
            if replayed:
                log.info("moved %d ledger entries left by an earlier process into the database", replayed)
        except Exception as error:  # the database is away: the background task keeps trying
            log.warning("could not move the ledger journal into the database yet: %s", error)
        self._mover.start()

    def record(self, entry: LedgerEntry) -> None:
        self.journal.append(entry)
        self.recorded += 1

    async def flush(self) -> None:
        """Seal the journal and move everything into the database (raises if that fails)."""
        self.journal.seal()
        self.moved += await self.journal.move(self.store.insert)

    async def _move(self) -> None:
        if not self.journal.pending and not self.journal.sealed():
            return
        try:
            await self.flush()
        except Exception as error:
            log.warning("could not move the ledger journal into the database: %s", error)
            await asyncio.sleep(RETRY_AFTER)

    async def aclose(self) -> None:
        await self._mover.aclose()
        try:
            await self.flush()
        except Exception as error:  # the journal keeps them: the next start moves them
            log.error("ledger entries stay in the journal until the next start: %s", error)
        self.journal.close()
