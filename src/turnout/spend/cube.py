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

from turnout.spend.ledger import LedgerEntry
from turnout.storage.cube import ATTEMPT_DIMS, CUBE_COUNTS, CUBE_DIMS, CUBE_GRAINS, MASKS
from turnout.storage.rollups import bucket_of

Counts = list[int]
_MASKED = len(MASKS) - 1  # requests_1.. and failed_1.. after COUNTS' figures
_COLUMNS = tuple(CUBE_DIMS.values())


def _figures(e: LedgerEntry) -> Counts:
    """A row's COUNTS figures, its requests and failures not yet counted."""
    return [
        0,
        1,
        0,
        e.input_tokens,
        e.cached_input_tokens,
        e.output_tokens,
        e.cache_write_tokens,
        e.reasoning_tokens,
        e.cost_micros or 0,
        e.customer_price_micros or 0,
        e.revenue_share_micros or 0,
        e.cost_micros is None,
        e.estimated,
        *([0] * (2 * _MASKED)),
    ]


def _count(figures: Counts, mask: int, failed: bool) -> None:
    if mask == 0:
        figures[0] += 1
        figures[2] += failed
    else:
        figures[12 + mask] += 1
        figures[12 + _MASKED + mask] += failed


def _request(rows: list[LedgerEntry]) -> list[tuple[LedgerEntry, Counts]]:
    """Each row of one request with its figures, its requests counted per mask."""
    rows = sorted(rows, key=lambda e: e.attempt)
    figures = [(e, _figures(e)) for e in rows]
    if len(rows) == 1:
        failed = rows[0].status >= 400
        for m in MASKS:
            _count(figures[0][1], m, failed)
        return figures
    for m in MASKS:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, e in enumerate(rows):
            value = tuple(getattr(e, d) for b, d in enumerate(ATTEMPT_DIMS) if m & (1 << b))
            groups.setdefault(value, []).append(i)
        for members in groups.values():
            _count(figures[members[0]][1], m, all(rows[i].status >= 400 for i in members))
    return figures


def cube_cells(entries: Iterable[LedgerEntry]) -> list[dict[str, Any]]:
    """The spend_cube rows (cells to add to) for these inserted rows, in key order (concurrent
    writers lock them in the same order)."""
    requests: dict[tuple[str, float], list[LedgerEntry]] = {}
    for e in entries:
        requests.setdefault((e.request_id, e.at), []).append(e)
    cells: dict[tuple[Any, ...], Counts] = {}
    buckets: dict[float, tuple[dt.datetime, ...]] = {}
    for rows in requests.values():
        for e, figures in _request(rows):
            starts = buckets.get(e.at)
            if starts is None:
                starts = buckets[e.at] = tuple(bucket_of(e.at, g) for g in CUBE_GRAINS)
            values = tuple(getattr(e, c) or "" for c in _COLUMNS)
            for grain, bucket in zip(CUBE_GRAINS, starts, strict=True):
                key = (grain, bucket, *values)
                cell = cells.get(key)
                cells[key] = figures if cell is None else list(map(add, cell, figures))
    names = ("grain", "bucket", *_COLUMNS)
    return [
        {**dict(zip(names, key, strict=True)), **dict(zip(CUBE_COUNTS, map(int, counts), strict=True))}
        for key, counts in sorted(cells.items())
    ]
