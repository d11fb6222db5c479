"""Keep this instance's key index up to date with changes made on other instances.

Every write to `api_keys` sets the row's `updated_at`. Every `interval` seconds, `KeySync` reads
the rows written since its last read, less `overlap` (for clocks that differ between instances,
and for transactions that commit a while after they set `updated_at`), and brings the index to
their stored state: a revoked key is removed, any other virtual key resolves to what it now is —
its lowered role, its rotation's expiry, or, newly issued elsewhere, the key itself, so that it
works here without a lookup. The rows in the overlap are read again on the next ticks: applying a
row is idempotent, and one the index already matches changes nothing. A change on another
instance reaches this one within `interval` plus the read (about a second by default).

A generated master key replaced in the database (`turnout reset-master-key`) replaces the one in
the index, and the old one stops working; a configured master key takes the place of a stored one,
which is then left alone, as at start.

The read is asynchronous and off the hot path (requests only ever read the index). A database that
cannot be reached leaves the index as it is and is tried again on the next tick; the keys changed
meanwhile are picked up then, since the watermark only moves on after a read that succeeded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from turnout.governance.people import MASTER_KEY_ID, master_principal, principal_of
from turnout.keys.index import KeyIndex
from turnout.periodic import Periodic
from turnout.storage.database import Database
from turnout.storage.tables import api_keys

log = logging.getLogger("turnout.keys")

INTERVAL = 1.0  # seconds between two reads
OVERLAP = 5.0  # seconds each read reaches back before the previous one began
READ_TIMEOUT = 10.0  # seconds a read may take before it counts as failed
WARN_EVERY = 60.0  # seconds between two warnings while the database stays unreachable


class KeySync:
    def __init__(
        self,
        database: Database,
        index: KeyIndex,
        *,
        configured_master: bool,
        interval: float = INTERVAL,
        overlap: float = OVERLAP,
    ) -> None:
        self.database = database
        self.index = index
        self.configured_master = configured_master
        self.interval = interval
        self.overlap = dt.timedelta(seconds=overlap)
        self.failures = 0  # reads that failed in a row
        self._warned_at: float | None = None
        self._periodic = Periodic(self.tick, interval, "key sync")

    def start(self) -> None:
        self._periodic.start()

    async def aclose(self) -> None:
        await self._periodic.aclose()

    async def tick(self) -> bool:
        """Read the rows changed since the last read and apply them; False if the database could
        not be read (the index is left as it is)."""
        began = dt.datetime.now(dt.UTC)
        since = (self.index.as_of or began) - self.overlap
        read_at = time.monotonic()
        query = sa.select(api_keys).where(api_keys.c.updated_at >= since).order_by(api_keys.c.updated_at)
        try:
            async with asyncio.timeout(READ_TIMEOUT), self.database.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        except Exception:
            self._failed()
            return False
        if self.failures:
            log.info("key sync: the database answers again (after %d failed reads)", self.failures)
            self.failures = 0
            self._warned_at = None
        self.apply(rows, read_at)
        self.index.as_of = began
        return True

    def apply(self, rows: Sequence[Any], read_at: float) -> None:
        """Bring the index to these rows' state, read from the store from `read_at` on."""
        for row in rows:
            try:
                self._apply(row, read_at)
            except Exception:  # a row that cannot be read: refused here, the others still count
                self.index.remove(row.key_hash)
                log.exception("key sync: cannot read the stored key %r; it is refused here", row.id)

    def _apply(self, row: Any, read_at: float) -> None:
        if row.kind == "master":
            self._apply_master(row, read_at)
        elif row.revoked_at is not None:
            if self.index.get(row.key_hash) is not None:
                self.index.remove(row.key_hash)
        else:
            principal = principal_of(row)
            if self.index.get(row.key_hash) != principal:
                self.index.add(row.key_hash, principal, read_at=read_at)  # next tick if overtaken

    def _apply_master(self, row: Any, read_at: float) -> None:
        if self.configured_master:
            return  # the configured one is used instead of any stored one
        if row.revoked_at is not None:
            if self.index.get(row.key_hash) is not None:
                self.index.remove(row.key_hash)
            return
        principal = master_principal(row.name)
        if self.index.get(row.key_hash) == principal:
            return
        if self.index.add(row.key_hash, principal, read_at=read_at):
            for replaced in self.index.hashes_of(MASTER_KEY_ID):
                if replaced != row.key_hash:
                    self.index.remove(replaced)
                    log.warning("key sync: the master key was replaced; the previous one no longer works")

    def _failed(self) -> None:
        self.failures += 1
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(
                "key sync: cannot read key changes from the database (%d failed reads in a row); "
                "keeping the keys this instance has, trying again every %gs",
                self.failures,
                self.interval,
                exc_info=True,
            )
