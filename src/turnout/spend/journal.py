"""The ledger's local journal: append-only files of one JSON entry per line.

Appending is one `write` to a file opened with O_APPEND: the entry is in the kernel's page cache
when `append` returns, so it survives the process being killed (SIGKILL included). The writer
appends to the newest segment; the flusher seals it (new entries go to a fresh segment), moves
every sealed segment into the database, and deletes each once it is in. On start, segments left
by an earlier process are sealed and moved the same way (the inserts are idempotent).

A write that fails (a full disk, no inodes, a quota, a read-only or failing disk) never fails the
request whose answer was already given: its entry is held in memory (`held`), any part of it that
reached the file is cut off again, and the journal is *unwritable* — the pipeline refuses new
requests before any provider is called (`accepting`) — until `recover` (run every second by the
recorder, with `probe`) has written every held entry. A segment that cannot be opened at `seal`
leaves the journal writing to the old one (*degraded*)."""

from __future__ import annotations

import errno
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import msgspec

from turnout.domain.ledger_entry import LedgerEntry, entry_decoder, entry_encoder

log = logging.getLogger("turnout.spend")

PREFIX = "ledger-"
SUFFIX = ".journal"
BATCH = 500
HELD_LIMIT = 10_000  # entries held in memory past which new requests are refused in any state
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND


class Journal:
    def __init__(self, directory: Path, held_limit: int = HELD_LIMIT) -> None:
        self.directory = directory
        self.held_limit = held_limit
        self.held: deque[LedgerEntry] = deque()  # entries no write has kept yet, oldest first
        self.fault: str | None = None  # why the journal cannot be written (an errno name), while so
        self.seal_fault: str | None = None  # why the last seal could not open a new segment
        self.accepting = True  # may a request be admitted (checked before any provider is called)
        self.on_hold: Callable[[], None] | None = None  # told when an entry is held
        self._direct = True  # may `append` write (no fault, nothing held before it)
        self._fd = -1
        self._written = 0  # entries in the open segment
        self._size = 0  # its bytes, all of them whole entries
        existing = self.segments() if directory.is_dir() else []
        self._number = int(existing[-1].name[len(PREFIX) : -len(SUFFIX)]) + 1 if existing else 1
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._open()
        except OSError as error:  # started on a disk that cannot take it: refuse until it can
            self._failed(error, "could not open the ledger journal")

    def _path(self, number: int) -> Path:
        return self.directory / f"{PREFIX}{number:010d}{SUFFIX}"

    def _open(self) -> None:
        self._fd = os.open(self._path(self._number), FLAGS, 0o600)
        self._written = 0
        self._size = os.fstat(self._fd).st_size

    # ------------------------------------------------------------------ writing

    def append(self, entry: LedgerEntry) -> None:
        """Journal `entry`, or hold it in memory if the journal cannot take it now (never raises)."""
        line = entry_encoder.encode(entry) + b"\n"
        if self._direct:
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    self._write_rest(line, written)
                self._size += len(line)
                self._written += 1
                return
            except OSError as error:
                self._cut_back()
                self._failed(error, "a ledger entry could not be written to the journal")
        self.held.append(entry)
        if len(self.held) >= self.held_limit:
            self._update()
        if self.on_hold is not None:
            self.on_hold()

    def _write_rest(self, line: bytes, written: int) -> None:
        """A short write: write the rest, until all of it is in (raises OSError if it cannot)."""
        view = memoryview(line)
        while written < len(line):
            more = os.write(self._fd, view[written:])
            if more <= 0:
                raise OSError(errno.EIO, "the journal took no more bytes")
            written += more

    def _cut_back(self) -> None:
        """Cut off what a failed write left of its entry, so the segment ends with a whole entry.
        (If even that fails, `recover` tries again before anything else is written.)"""
        try:
            if os.fstat(self._fd).st_size != self._size:
                os.ftruncate(self._fd, self._size)
        except OSError:
            pass

    def _failed(self, error: OSError, what: str) -> None:
        name = errno.errorcode.get(error.errno or 0, "OSError")
        if self.fault is None:
            log.error(
                "%s (%s: %s, in %s): ledger entries are held in memory and retried every second, and "
                "new requests are refused with 503 (ledger_unavailable) until the journal can be written",
                what,
                name,
                error.strerror,
                self.directory,
            )
        self.fault = name
        self._update()

    def _update(self) -> None:
        self._direct = self.fault is None and not self.held
        self.accepting = self.fault is None and len(self.held) < self.held_limit

    # ------------------------------------------------------------------ health

    @property
    def state(self) -> str:
        """ok | degraded (entries held, or a seal that could not open a segment) | unwritable."""
        if self.fault is not None:
            return "unwritable"
        return "degraded" if self.held or self.seal_fault is not None else "ok"

    def probe(self) -> None:
        """A cheap look at the journal's filesystem (one `fstatvfs` a second, never per request):
        read-only, or without a free block, it is unwritable before a write fails there."""
        if self._fd < 0 or self.fault is not None:
            return
        try:
            fault = self._disk_fault()
        except OSError as error:
            self._failed(error, "the ledger journal's disk could not be examined")
            return
        if fault is not None:
            self._failed(OSError(fault, os.strerror(fault)), "the ledger journal's disk cannot take more")

    def _disk_fault(self) -> int | None:
        fs = os.fstatvfs(self._fd)
        if fs.f_flag & os.ST_RDONLY:
            return errno.EROFS
        # (a filesystem that reports no blocks at all does not say how full it is)
        return errno.ENOSPC if fs.f_bavail == 0 and fs.f_blocks > 0 else None

    def recover(self) -> int:
        """Write the held entries, oldest first, after cutting off any torn tail; the journal is
        writable again once all are in (or, holding none, once a newline — which replay skips —
        could be written), and while its disk is read-only or full it is not tried. Returns how
        many held entries were written."""
        if self.fault is None and not self.held:
            return 0
        written = 0
        try:
            if self._fd < 0:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._open()
            fault = self._disk_fault()
            if fault is not None:
                self.fault = errno.errorcode[fault]
                self._update()
                return 0
            self._mend()
            if not self.held:
                self._write(b"\n")
            while self.held:
                self._write(entry_encoder.encode(self.held[0]) + b"\n")
                self.held.popleft()
                self._written += 1
                written += 1
        except OSError as error:
            if self._fd >= 0:
                self._cut_back()
            self._failed(error, "the ledger journal still cannot be written")
            return written
        if self.fault is not None:
            log.warning("the ledger journal can be written again; %d held entries are in it", written)
        self.fault = None
        self._update()
        return written

    def _mend(self) -> None:
        """Cut off a torn tail a failed write left; where that fails, end it with a newline (replay
        skips the broken line; the next entry starts on a line of its own)."""
        size = os.fstat(self._fd).st_size
        if size == self._size:
            return
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            self._write(b"\n")
            self._size = os.fstat(self._fd).st_size

    def _write(self, line: bytes) -> None:
        written = os.write(self._fd, line)
        if written != len(line):
            self._write_rest(line, written)
        self._size += len(line)

    def release(self, count: int) -> None:
        """Forget the `count` oldest held entries: they are in the database (moved there directly)."""
        for _ in range(min(count, len(self.held))):
            self.held.popleft()
        self._update()

    # ------------------------------------------------------------------ segments

    @property
    def pending(self) -> bool:
        """Does the open segment hold entries not yet sealed?"""
        return self._written > 0

    def seal(self) -> None:
        """Start a new segment for new entries; the current one can now be moved. The new one is
        opened first: if it cannot be, entries keep going to the current one (reported as
        `seal_fault`), which is moved once a seal succeeds."""
        if self._written == 0:
            return
        try:
            fd = os.open(self._path(self._number + 1), FLAGS, 0o600)
        except OSError as error:
            if self.seal_fault is None:
                log.error(
                    "a new ledger journal segment could not be opened (%s: %s, in %s): entries keep "
                    "going to the current one, which reaches the database once a new one can be opened",
                    errno.errorcode.get(error.errno or 0, "OSError"),
                    error.strerror,
                    self.directory,
                )
            self.seal_fault = errno.errorcode.get(error.errno or 0, "OSError")
            return
        old, self._fd = self._fd, fd
        self._number += 1
        self._written = self._size = 0
        if self.seal_fault is not None:
            log.warning("ledger journal segments can be opened again")
            self.seal_fault = None
        _close(old)

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob(f"{PREFIX}*{SUFFIX}"))

    def sealed(self) -> list[Path]:
        current = self._path(self._number)
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
            _close(self._fd)
            self._fd = -1
            if self._written == 0:  # nothing in it: no need to keep it
                self._path(self._number).unlink(missing_ok=True)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError as error:  # what was written is in the page cache: nothing to do but say so
        log.warning("closing a ledger journal segment failed: %s", error)


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
