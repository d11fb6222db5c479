"""What a batch of ledger rows adds to the totals by every dimension (`storage.cube`): the cells,
summed in memory, written by the ledger store in the transaction that inserted those rows (only
rows the insert reports it inserted, so a replayed batch adds nothing).

Most requests have one row: it is the first of its request under every mask, so its figures are
one vector. A request with several rows is counted per mask: once for each distinct value of the
mask's dimensions among its rows, in the cell of the first such row (failed unless one of them
answered)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from operator import add
from typing import Any

from turnout.domain.ledger_entry import LedgerEntry
from turnout.storage.cube import ATTEMPT_DIMS, CUBE_COUNTS, CUBE_DIMS, CUBE_GRAINS, MASKS
from turnout.storage.rollups import bucket_of

Counts = list[int]
_MASKED = len(MASKS) - 1  # requests_1.. and failed_1.. after COUNTS' figures
_REQUESTS_0 = CUBE_COUNTS.index("requests_1") - 1  # figures[_REQUESTS_0 + mask]: requests_<mask>
_COLUMNS = tuple(CUBE_DIMS.values())
assert _COLUMNS == ("key_id", "team_id", "user_id", "alias", "preset", "model", "deployment", "provider")


def _figures(e: LedgerEntry, requests: int, failed: int) -> Counts:
    """A row's figures; as the only row of its request (`requests` 1), counted under every mask."""
    return [
        requests,
        1,
        failed,
        e.input_tokens,
        e.cached_input_tokens,
        e.output_tokens,
        e.cache_write_tokens,
        e.reasoning_tokens,
        e.cost_micros or 0,
        e.customer_price_micros or 0,
        e.revenue_share_micros or 0,
        e.search_units,
        e.images,
        e.audio_seconds,
        e.characters,
        int(e.cost_micros is None),
        int(e.estimated),
        *([requests] * _MASKED),
        *([failed] * _MASKED),
    ]


def _count(figures: Counts, mask: int, failed: bool) -> None:
    if mask == 0:
        figures[0] += 1
        figures[2] += failed
    else:
        figures[_REQUESTS_0 + mask] += 1
        figures[_REQUESTS_0 + _MASKED + mask] += failed


def _request(rows: list[LedgerEntry]) -> list[tuple[LedgerEntry, Counts]]:
    """Each row of a request with several, with its figures, its requests counted per mask."""
    rows = sorted(rows, key=lambda e: e.attempt)
    figures = [(e, _figures(e, 0, 0)) for e in rows]
    for m in MASKS:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, e in enumerate(rows):
            value = tuple(getattr(e, d) for b, d in enumerate(ATTEMPT_DIMS) if m & (1 << b))
            groups.setdefault(value, []).append(i)
        for members in groups.values():
            _count(figures[members[0]][1], m, all(rows[i].status >= 400 for i in members))
    return figures


class CubeBuilder:
    """Fed the inserted rows a chunk at a time (`add`, between which the event loop runs), then
    read as spend_cube rows a chunk at a time (`values`). A request's rows are counted once they are
    all there (they may straddle two chunks; `cells` counts what is left)."""

    def __init__(self) -> None:
        self._cells: dict[tuple[Any, ...], Counts] = {}
        self._buckets: dict[int, tuple[dt.datetime, ...]] = {}
        self._waiting: dict[tuple[str, float], list[LedgerEntry]] = {}
        self._sorted: list[tuple[tuple[Any, ...], Counts]] = []

    def _put(self, e: LedgerEntry, figures: Counts) -> None:
        hour = int(e.at // 3600)  # (the hour decides the day too)
        starts = self._buckets.get(hour)
        if starts is None:
            starts = self._buckets[hour] = tuple(bucket_of(e.at, g) for g in CUBE_GRAINS)
        values = (
            *(e.key_id, e.team_id or "", e.user_id or "", e.alias),
            *(e.preset or "", e.model or "", e.deployment or "", e.provider or ""),
        )
        cells = self._cells
        for grain, bucket in zip(CUBE_GRAINS, starts, strict=True):
            key = (grain, bucket, *values)
            cell = cells.get(key)
            cells[key] = figures if cell is None else list(map(add, cell, figures))

    def add(self, entries: Iterable[LedgerEntry]) -> None:
        waiting = self._waiting
        for e in entries:
            if e.attempts <= 1 and e.attempt <= 1 and (e.request_id, e.at) not in waiting:
                failed = e.status >= 400
                self._put(e, _figures(e, 1, failed))
                continue
            rows = waiting.setdefault((e.request_id, e.at), [])
            rows.append(e)
            if len(rows) >= e.attempts:
                for row, figures in _request(waiting.pop((e.request_id, e.at))):
                    self._put(row, figures)

    def cells(self) -> int:
        """Count the requests still waiting; how many cells there are, in key order (concurrent
        writers lock them in the same order, so they wait for each other instead of deadlocking)."""
        for rows in self._waiting.values():
            for row, figures in _request(rows):
                self._put(row, figures)
        self._waiting.clear()
        self._sorted = sorted(self._cells.items())
        return len(self._sorted)

    def values(self, start: int, end: int) -> list[tuple[Any, ...]]:
        """Cells `start` to `end` as tuples of spend_cube's CUBE_KEY and CUBE_COUNTS columns."""
        return [(*key, *counts) for key, counts in self._sorted[start:end]]
