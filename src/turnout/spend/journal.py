"""The ledger's local journal: append-only files of one JSON entry per line.

Appending is one `write` to a file opened with O_APPEND: the entry is in the kernel's page cache
when `append` returns, so it survives the process being killed (SIGKILL included). The writer
appends to the newest segment; the flusher seals it (new entries go to a fresh segment), moves
every sealed segment into the database, and deletes each once it is in. On start, segments left
by an earlier process are sealed and moved the same way (the inserts are idempotent)."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import msgspec

from turnout.spend.ledger import LedgerEntry, entry_decoder, entry_encoder

log = logging.getLogger("turnout.spend")

PREFIX = "ledger-"
SUFFIX = ".journal"
BATCH = 500


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        existing = self.segments()
        self._number = int(existing[-1].name[len(PREFIX) : -len(SUFFIX)]) + 1 if existing else 1
        self._fd = -1
        self._written = 0
        self._open()

    def _path(self, number: int) -> Path:
        return self.directory / f"{PREFIX}{number:010d}{SUFFIX}"

    def _open(self) -> None:
        self._fd = os.open(self._path(self._number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._written = 0

    def append(self, entry: LedgerEntry) -> None:
        line = entry_encoder.encode(entry) + b"\n"
        os.write(self._fd, line)
        self._written += 1

    @property
    def pending(self) -> bool:
        """Does the open segment hold entries not yet sealed?"""
        return self._written > 0

    def seal(self) -> None:
        """Start a new segment for new entries; the current one can now be moved."""
        if self._written == 0:
            return
        os.close(self._fd)
        self._number += 1
        self._open()

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob(f"{PREFIX}*{SUFFIX}"))

    def sealed(self) -> list[Path]:
        current = self._path(self._number) if self._fd >= 0 else None
        return [p for p in self.segments() if p != current]

    async def move(self, insert: Callable[[list[LedgerEntry]], Awaitable[object]]) -> int:
        """Insert every sealed segment's entries (in batches) and delete the segment; returns how
        many entries were moved. Raises (leaving the segment) if an insert fails."""
        moved = 0
        for path in self.sealed():
            batch: list[LedgerEntry] = []
            for entry in read_segment(path):
                # a request's entries (written together) stay in one batch: its totals count it once
                if len(batch) >= BATCH and entry.request_id != batch[-1].request_id:
                    await insert(batch)
                    moved += len(batch)
                    batch = []
                batch.append(entry)
            if batch:
                await insert(batch)
                moved += len(batch)
            path.unlink()
        return moved

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self._written == 0:  # nothing in it: no need to keep it
                self._path(self._number).unlink(missing_ok=True)


def read_segment(path: Path) -> Iterator[LedgerEntry]:
    """A segment's entries; a torn last line (the process died mid-write) is skipped."""
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield entry_decoder.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.error("skipping an unreadable ledger entry at %s:%d", path.name, number)
