"""What a batch of ledger rows adds to the running totals (`storage.rollups`): the cells, summed in
memory, written by the ledger store in the transaction that inserted those rows.

Only rows actually inserted are counted (the insert's RETURNING names them), so a batch replayed
after a crash adds nothing. A cell's `requests` and `failed` are per distinct request, which is
exact because a request's rows are written in one batch (the journal never splits a request) and
all carry its arrival time (one bucket per grain).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from turnout.spend.ledger import LedgerEntry
from turnout.storage.rollups import COUNTS, DIMS, FINE_DIMS, GRAINS, SUMMED, bucket_of

_WIDTH = 3 + len(SUMMED) + 2  # requests, attempts, failed, the sums, cost_unknown, estimated
_COARSE = ("hour", "day", "all")


class _Request:
    """One request's rows in one quarter-hour, by dimension value."""

    __slots__ = ("cells",)

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], list[int]] = {}  # (dim, value) → counts; [2]: answered

    def add(self, entry: LedgerEntry) -> None:
        row = _counts(entry)
        answered = entry.status < 400
        for dim, column in DIMS.items():
            value = getattr(entry, column) or ""
            cell = self.cells.get((dim, value))
            if cell is None:
                cell = [1, 0, 1, *([0] * (_WIDTH - 3))]  # a request, failed until a row answered
                self.cells[(dim, value)] = cell
            for i in range(1, _WIDTH):
                if i != 2:
                    cell[i] += row[i]
            if answered:
                cell[2] = 0


def _counts(entry: LedgerEntry) -> list[int]:
    return [
        0,
        1,
        0,
        entry.input_tokens,
        entry.cached_input_tokens,
        entry.output_tokens,
        entry.cache_write_tokens,
        entry.reasoning_tokens,
        entry.cost_micros or 0,
        entry.customer_price_micros or 0,
        entry.revenue_share_micros or 0,
        1 if entry.cost_micros is None else 0,
        1 if entry.estimated else 0,
    ]


def rollup_cells(entries: Iterable[LedgerEntry]) -> list[dict[str, Any]]:
    """The cells `entries` add to, as rows of spend_rollups (in key order: concurrent writers lock
    them in the same order, so they wait for each other instead of deadlocking)."""
    requests: dict[tuple[str, float], _Request] = {}
    for entry in entries:
        request = requests.get((entry.request_id, entry.at))
        if request is None:
            request = requests[(entry.request_id, entry.at)] = _Request()
        request.add(entry)
    quarters: dict[tuple[str, str, dt.datetime], list[int]] = {}
    for (_, at), request in requests.items():
        quarter = bucket_of(at, "quarter")
        for (dim, value), counts in request.cells.items():
            _add(quarters, (dim, value, quarter), counts)
    cells: dict[tuple[str, str, str, dt.datetime], list[int]] = {}
    for (dim, value, quarter), counts in quarters.items():
        if dim in FINE_DIMS:
            cells[("quarter", dim, value, quarter)] = counts
        at = quarter.timestamp()
        for grain in _COARSE:
            _add(cells, (grain, dim, value, bucket_of(at, grain)), counts)
    return [_row(key, cells[key]) for key in sorted(cells)]


def _add(cells: dict[Any, list[int]], key: Any, counts: list[int]) -> None:
    cell = cells.get(key)
    if cell is None:
        cells[key] = list(counts)
    else:
        for i, n in enumerate(counts):
            cell[i] += n


assert len(COUNTS) == _WIDTH
assert set(GRAINS) == {"quarter", *_COARSE}


def _row(key: tuple[str, str, str, dt.datetime], counts: list[int]) -> dict[str, Any]:
    grain, dim, value, bucket = key
    return {
        "grain": grain,
        "dim": dim,
        "value": value,
        "bucket": bucket,
        **dict(zip(COUNTS, counts, strict=True)),
    }
