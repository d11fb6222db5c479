"""Stopping while the ledger journal is being moved into SQLite lets the move in progress end and
stores every entry: cancelled half-way, a move's connection could keep SQLite's write lock until
the garbage collector found it, and the last move failed with "database is locked" (the entries
then waited in the journal for the next start)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from turnout.domain.ledger_entry import LedgerEntry
from turnout.spend.ledger_store import LedgerStore
from turnout.spend.recorder import SpendRecorder
from turnout.storage.database import Database

ROUNDS = 5
ENTRIES = 3000


class WatchedStore(LedgerStore):
    """The real store, telling when a move starts and whether one was cancelled half-way."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.moving = asyncio.Event()
        self.cancelled: list[int] = []

    async def insert(self, entries: list[LedgerEntry]) -> int:
        self.moving.set()
        try:
            return await super().insert(entries)
        except asyncio.CancelledError:
            self.cancelled.append(len(entries))
            raise


async def test_stopping_during_a_move_leaves_every_entry_in_the_database(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        url = f"sqlite+aiosqlite:///{tmp_path / str(round_)}/turnout.db"
        database = await Database.open(url)
        store = WatchedStore(database)
        recorder = SpendRecorder(tmp_path / str(round_) / "journal", store, interval=0.001)
        await recorder.start()
        for i in range(ENTRIES):
            recorder.record(LedgerEntry(request_id=f"r{i}", at=time.time(), api="chat", key_id="k"))
        await store.moving.wait()
        for _ in range(round_):  # stop at different points of the move
            await asyncio.sleep(0)
        await recorder.aclose()
        await database.close()

        again = await Database.open(url)
        try:
            assert store.cancelled == [], f"round {round_}: a move was cancelled half-way"
            assert await LedgerStore(again).count() == ENTRIES, f"round {round_}"
        finally:
            await again.close()
