"""The batch APIs as one service, and their background poll: every `POLL_INTERVAL` seconds each
instance asks the providers about up to `POLL_BATCH` batches not accounted yet — those it asked
about longest ago first, so batches that keep failing cannot starve the others — and accounts
those that have finished (a batch its client reads is accounted then too)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from turnout.batches.accounting import BatchAccountant
from turnout.batches.message_batches import MessageBatchService
from turnout.batches.placement import Places
from turnout.batches.service import BatchService
from turnout.batches.store import BatchStore
from turnout.keys.index import KeyIndex
from turnout.limits.admission import Admission
from turnout.periodic import Periodic
from turnout.routing.catalog import Catalog
from turnout.spend.billing import Billing
from turnout.spend.budgets import Budgets
from turnout.spend.recorder import SpendRecorder

log = logging.getLogger("turnout.batches")

POLL_INTERVAL = 60.0  # seconds between rounds
POLL_BATCH = 50  # batches asked about in one round
POLL_SCAN = 1000  # batches not accounted yet read in one round (those to ask about chosen among them)


class Batches:
    def __init__(
        self,
        store: BatchStore,
        catalog: Callable[[], Catalog],
        keys: KeyIndex,
        admission: Admission,
        budgets: Budgets,
        spend: SpendRecorder,
        billing: Billing,
    ) -> None:
        places = Places(store, catalog)
        self.store = store
        self.accountant = BatchAccountant(store, keys, budgets, spend, billing)
        self.openai = BatchService(places, admission, budgets, self.accountant)
        self.anthropic = MessageBatchService(places, admission, budgets, self.accountant)
        self.poller = Periodic(self.poll, POLL_INTERVAL, "polling batches")
        self._polled: dict[str, float] = {}  # by batch id: when this instance last asked about it

    def start(self) -> None:
        self.poller.start()

    async def aclose(self) -> None:
        await self.poller.aclose()

    async def poll(self) -> int:
        """One round; returns how many batches it asked about."""
        for batch_id in list(self.accountant.reservations):
            held = await self.store.batch(batch_id)
            if held is None or held.accounted_at is not None:
                self.accountant.release(batch_id)  # accounted elsewhere
        records = await self.store.unaccounted(POLL_SCAN)
        waiting = {r.id for r in records}
        self._polled = {k: v for k, v in self._polled.items() if k in waiting}
        asked = 0
        for record in sorted(records, key=lambda r: self._polled.get(r.id, 0.0)):
            if asked == POLL_BATCH:
                break
            self._polled[record.id] = time.monotonic()
            asked += 1
            try:
                await (self.anthropic if record.api == "messages" else self.openai).refresh(record)
            except Exception as error:  # the next round tries again
                log.warning("batch %s could not be polled: %s", record.id, error)
        return asked
