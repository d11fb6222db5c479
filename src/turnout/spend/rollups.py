"""What a batch of ledger rows adds to the running totals (`storage.rollups`): the cells, summed in
memory, written by the ledger store in the transaction that inserted those rows.

Only rows actually inserted are counted (the insert's RETURNING names them), so a batch replayed
after a crash adds nothing. A cell's `requests` and `failed` are per distinct request, which is
exact because a request's rows are written in one batch (the journal never splits a request) and
all carry its arrival time (one bucket per grain).

This runs on the event loop, between the batch's statements: rows are summed by their whole
combination of values first (a second's traffic has few), each in C-level vector adds, and only
those sums are spread over the dimensions and grains (`RollupBuilder.add` takes a chunk at a time).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from operator import add, sub
from typing import Any

from turnout.domain.ledger_entry import LedgerEntry
from turnout.storage.rollups import DIMS, FINE_DIMS, GRAINS, bucket_of

_QUARTER = GRAINS["quarter"]
_COARSE = ("hour", "day", "all")
# the grains of a dimension with quarter-hour cells, and of one without
_GRAINS = {True: ("quarter", *_COARSE), False: _COARSE}
Counts = list[int]


def _counts(entry: LedgerEntry, requests: int, failed: int) -> Counts:
    """A row's figures, in COUNTS' order."""
    return [
        requests,
        1,
        failed,
        entry.input_tokens,
        entry.cached_input_tokens,
        entry.output_tokens,
        entry.cache_write_tokens,
        entry.reasoning_tokens,
        entry.cost_micros or 0,
        entry.customer_price_micros or 0,
        entry.revenue_share_micros or 0,
        entry.search_units,
        entry.images,
        entry.audio_seconds,
        entry.characters,
        int(entry.cost_micros is None),
        int(entry.estimated),
    ]


def _combination(e: LedgerEntry) -> tuple[Any, ...]:
    return (
        int(e.at // _QUARTER),
        e.key_id,
        e.team_id,
        e.user_id,
        e.model,
        e.alias,
        e.deployment,
        e.preset,
        e.preset_team_id,
        e.provider,
    )


def _add(cells: dict[Any, Counts], key: Any, counts: Counts) -> None:
    cell = cells.get(key)
    cells[key] = counts if cell is None else list(map(add, cell, counts))


Cell = tuple[tuple[str, str, str, dt.datetime], Counts]  # ((grain, dim, value, bucket), figures)


class RollupBuilder:
    """Fed the inserted rows a chunk at a time (`add`), then `cells` once."""

    def __init__(self) -> None:
        # a request with one row (most): summed by (quarter, every dimension's value) at once
        self._single: dict[tuple[Any, ...], Counts] = {}
        self._alone: dict[str, LedgerEntry] = {}  # by request id: the row summed so
        # a request with several rows: kept until it is whole (then counted once per value)
        self._several: dict[tuple[str, float], list[LedgerEntry]] = {}
        self._by_value: dict[tuple[str, str, int], Counts] = {}  # (dim, value, quarter)

    def add(self, entries: Iterable[LedgerEntry]) -> None:
        single, alone, several = self._single, self._alone, self._several
        for e in entries:
            if e.attempts > 1 or e.attempt > 1 or e.request_id in alone:
                rows = several.setdefault((e.request_id, e.at), [])
                rows.append(e)
                if len(rows) == e.attempts and _whole(rows) and e.request_id not in alone:
                    _spread(rows, self._by_value)
                    del several[(e.request_id, e.at)]
                continue
            alone[e.request_id] = e
            _add(single, _combination(e), _counts(e, 1, e.status >= 400))

    def _regroup(self) -> None:
        """A row summed alone whose request turned out to have other rows joins them."""
        for (request_id, at), rows in self._several.items():
            e = self._alone.pop(request_id, None)
            if e is None:
                continue
            if e.at != at:
                self._alone[request_id] = e
                continue
            combination = _combination(e)
            left = list(map(sub, self._single[combination], _counts(e, 1, e.status >= 400)))
            if left[1]:
                self._single[combination] = left
            else:
                del self._single[combination]
            rows.append(e)

    def cells(self) -> list[Cell]:
        """The cells to add to, in key order (concurrent writers lock them in the same order, so
        they wait for each other instead of deadlocking)."""
        self._regroup()
        by_value = self._by_value
        for rows in self._several.values():
            _spread(rows, by_value)
        dims = tuple(DIMS)
        for combination, counts in self._single.items():
            quarter = combination[0]
            for dim, value in zip(dims, combination[1:], strict=True):
                _add(by_value, (dim, value or "", quarter), counts)
        cells: dict[tuple[str, str, str, dt.datetime], Counts] = {}
        buckets: dict[int, tuple[dt.datetime, ...]] = {}
        for (dim, value, quarter), counts in by_value.items():
            starts = buckets.get(quarter)
            if starts is None:
                at = quarter * _QUARTER
                starts = buckets[quarter] = tuple(bucket_of(at, grain) for grain in ("quarter", *_COARSE))
            for grain, bucket in zip(_GRAINS[dim in FINE_DIMS], starts[dim not in FINE_DIMS :], strict=True):
                _add(cells, (grain, dim, value, bucket), counts)
        return sorted(cells.items())


def as_values(cells: list[Cell]) -> list[tuple[Any, ...]]:
    """Cells as tuples of spend_rollups' KEY and COUNTS columns, in that order."""
    return [(*key, *counts) for key, counts in cells]


def _whole(rows: list[LedgerEntry]) -> bool:
    """Are these a request's every attempt, 1 to n?"""
    return sorted(r.attempt for r in rows) == list(range(1, len(rows) + 1))


def _spread(rows: list[LedgerEntry], by_value: dict[tuple[str, str, int], Counts]) -> None:
    """One request's rows: per value of each dimension, one request, failed unless a row with
    that value answered."""
    quarter = int(rows[0].at // _QUARTER)
    figures = [(_combination(e)[1:], _counts(e, 0, 0), e.status < 400) for e in rows]
    total = figures[0][1]
    for _, counts, _ in figures[1:]:
        total = list(map(add, total, counts))
    failed = int(not any(ok for _, _, ok in figures))
    for i, dim in enumerate(DIMS):
        first = figures[0][0][i]
        if all(combination[i] == first for combination, _, _ in figures):  # key, team, user, alias...
            _add(by_value, (dim, first or "", quarter), [1, total[1], failed, *total[3:]])
            continue
        values: dict[str, Counts] = {}
        answered: set[str] = set()
        for combination, counts, ok in figures:
            value = combination[i] or ""
            _add(values, value, counts)
            if ok:
                answered.add(value)
        for value, counts in values.items():
            _add(by_value, (dim, value, quarter), [1, counts[1], int(value not in answered), *counts[3:]])
