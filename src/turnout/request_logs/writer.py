"""Writing the request log without touching the request path: `capture` appends to a bounded queue
(past `queue_limit` the entry is dropped, counted and logged — a request never waits for the log);
every second a background task takes up to `BATCH` entries, redacts and encodes them in a worker
thread (so a batch of large bodies does not hold the event loop) and inserts them in one statement.
A batch the database refuses goes back to the front of the queue as rows (already cut to size, so
what waits while the database is away is bounded by `queue_limit` times 2 times `max_entry_bytes`), as
much of it as fits."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from typing import Any

from turnout.periodic import Periodic
from turnout.request_logs.capture import Captured, answer_document
from turnout.request_logs.scrub import Scrubber
from turnout.storage.database import Database
from turnout.storage.tables import request_logs

log = logging.getLogger("turnout.request_logs")

BATCH = 200
INTERVAL = 1.0
DROP_REPORT_EVERY = 60.0  # seconds between warnings about dropped entries
Row = dict[str, Any]


class RequestLogWriter:
    def __init__(
        self, database: Database, scrubber: Scrubber, queue_limit: int, interval: float = INTERVAL
    ) -> None:
        self.database = database
        self.scrubber = scrubber
        self.queue_limit = queue_limit
        self.queue: deque[Captured | Row] = deque()  # captured, or made into a row a write refused
        self.written = 0  # entries inserted by this process
        self.dropped = 0  # entries dropped because the queue was full
        self.failed = 0  # entries that could not be made into rows
        self._reported = 0  # of `dropped`, those already logged
        self._reported_at = 0.0
        self._lock = asyncio.Lock()
        self._failing = False
        self._periodic = Periodic(self._tick, interval, "writing the request log")

    def start(self) -> None:
        self._periodic.start()

    def capture(self, entry: Captured) -> None:
        """Queue `entry` for writing; drop it (counted) if the queue is full. Never raises or waits."""
        if len(self.queue) >= self.queue_limit:
            self._drop(1)
            return
        self.queue.append(entry)

    def _drop(self, count: int) -> None:
        self.dropped += count
        now = time.monotonic()
        if now - self._reported_at >= DROP_REPORT_EVERY:
            log.warning(
                "request log: %d entries dropped (the queue of %d was full: the database is slow or "
                "away); %d dropped since this process started",
                self.dropped - self._reported,
                self.queue_limit,
                self.dropped,
            )
            self._reported, self._reported_at = self.dropped, now

    async def _tick(self) -> None:
        try:
            await self.flush()
        except Exception as error:
            if not self._failing:
                log.warning(
                    "request log: entries cannot be written to the database now (%s); they wait in "
                    "the queue (up to %d) and are tried again every second",
                    error,
                    self.queue_limit,
                )
            self._failing = True
        else:
            if self._failing:
                log.warning("request log: the database takes entries again")
            self._failing = False

    async def flush(self) -> int:
        """Write everything queued now, a batch at a time; returns how many were written. A batch
        the database refuses goes back to the queue as rows (redacted and cut: at most
        2 times max_entry_bytes each while the database is away) and the error is raised."""
        written = 0
        async with self._lock:
            while self.queue:
                batch = [self.queue.popleft() for _ in range(min(BATCH, len(self.queue)))]
                try:
                    rows = await asyncio.to_thread(self._rows, batch)
                except BaseException:  # cancelled (the gateway stopping): the entries stay queued
                    self._put_back(batch)
                    raise
                if not rows:
                    continue
                try:
                    async with self.database.engine.begin() as conn:
                        await conn.execute(self.database.insert_new(request_logs, "request_id"), rows)
                except BaseException:
                    self._put_back(rows)
                    raise
                written += len(rows)
                self.written += len(rows)
        return written

    def _put_back(self, rows: list[Captured | Row] | list[Row]) -> None:
        room = max(0, self.queue_limit - len(self.queue))
        kept = rows[:room]
        self.queue.extendleft(reversed(kept))
        if len(rows) > len(kept):
            self._drop(len(rows) - len(kept))

    def _rows(self, batch: list[Captured | Row]) -> list[Row]:
        """The batch's rows, redacted and cut to size (in a worker thread). An entry that cannot be
        made into one (a fault of turnout's) is dropped and logged rather than tried forever."""
        rows = []
        for entry in batch:
            if isinstance(entry, dict):
                rows.append(entry)
                continue
            try:
                rows.append(self._row(entry))
            except Exception:
                self.failed += 1
                log.exception("request log: the entry of request %s could not be made", entry.request_id)
        return rows

    def _row(self, entry: Captured) -> Row:
        request, request_cut = self.scrubber.document(entry.request)
        answer = answer_document(entry)
        response, response_cut = (None, False) if answer is None else self.scrubber.document(answer)
        return {
            "request_id": entry.request_id,
            "at": dt.datetime.fromtimestamp(entry.at, dt.UTC),
            "api": entry.api,
            "key_id": entry.key_id,
            "team_id": entry.team_id,
            "user_id": entry.user_id,
            "alias": entry.alias[:256],
            "model": None if entry.model is None else entry.model[:256],
            "deployment": None if entry.deployment is None else entry.deployment[:256],
            "stream": entry.stream,
            "status": entry.status,
            "reason": None if entry.reason is None else entry.reason[:64],
            "latency_ms": entry.latency_ms,
            "request": request,
            "response": response,
            "truncated": request_cut or response_cut,
        }

    async def aclose(self) -> None:
        """Stop the background task and write what is queued (what cannot be written is lost,
        and said so)."""
        await self._periodic.aclose()
        try:
            await self.flush()
        except Exception as error:
            log.error(
                "request log: %d entries could not be written before stopping: %s", len(self.queue), error
            )
