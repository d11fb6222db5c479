"""Pages of the admin API's lists, by keyset: a list is read in one stable order (its `Keyset`: when
each item was created, then its id; presets by name; the audit log and pending actions newest
first), at most `limit` items at a time, and a page ends with an opaque cursor (`next_cursor`) that
the next page starts `after`. The next page is the
items strictly after the last one read — found through the order's columns, never by an offset —
so walking a list never skips or repeats an item, even while items are added or removed.

A cursor is the last item's position in that order (base64url of a JSON array); one that cannot be
decoded, or that is not of the list's shape, is refused (400, `param` 'after').
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from turnout.domain.errors import InvalidRequest
from turnout.storage.times import as_utc

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR = 512  # characters: a cursor is a time and an id, far less

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Paging:
    """What page a caller asks for: at most `limit` items, those after the cursor `after`."""

    limit: int = DEFAULT_LIMIT
    after: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}.", param="limit")


FIRST = Paging()


@dataclass(slots=True)
class Page:
    """The rows of one page, and the cursor the next one starts after (None: this is the last)."""

    rows: list[Any]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


class Keyset:
    """A list's order: `columns`, compared in turn, the last one unique (an id, a name), ascending
    unless `descending`. Each is a time, an integer or a string."""

    def __init__(self, *columns: sa.Column[Any], descending: bool = False) -> None:
        self.columns = columns
        self.descending = descending
        self._times = tuple(isinstance(c.type, sa.DateTime) for c in columns)
        self._integers = tuple(isinstance(c.type, sa.Integer) for c in columns)

    def select(self, query: sa.Select[Any], paging: Paging) -> sa.Select[Any]:
        """`query` ordered by the keyset, from the item after `paging.after`, one item more than a
        page (to know whether another page follows)."""
        order = [c.desc() for c in self.columns] if self.descending else self.columns
        query = query.order_by(*order).limit(paging.limit + 1)
        if paging.after is not None:
            query = query.where(self._after(self.decode(paging.after)))
        return query

    def page(self, rows: Sequence[Any], paging: Paging) -> Page:
        """The rows `select` read, as a page: the cursor is the last row's position (also when
        the caller then keeps only some of the rows)."""
        if len(rows) <= paging.limit:
            return Page(list(rows), None)
        kept = list(rows[: paging.limit])
        return Page(kept, self.encode(kept[-1]))

    def encode(self, row: Any) -> str:
        values = [getattr(row, c.name) for c in self.columns]
        shown = [(as_utc(v) - _EPOCH) // _MICRO if t else v for v, t in zip(values, self._times, strict=True)]
        return base64.urlsafe_b64encode(orjson.dumps(shown)).decode().rstrip("=")

    def decode(self, cursor: str) -> list[Any]:
        """The position a cursor stands for (400 if it is not one of this list's)."""
        try:
            if len(cursor) > MAX_CURSOR:
                raise ValueError
            values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            if not isinstance(values, list) or len(values) != len(self.columns):
                raise ValueError
            return [self._value(v, t, i) for v, t, i in zip(values, self._times, self._integers, strict=True)]
        except (ValueError, binascii.Error, OverflowError, orjson.JSONDecodeError):
            raise InvalidRequest(
                "'after' must be the `next_cursor` of a page of this list.", param="after"
            ) from None

    @staticmethod
    def _value(value: Any, time: bool, integer: bool) -> Any:
        if time or integer:
            if type(value) is not int or abs(value) >= 2**63:
                raise ValueError
            return _EPOCH + value * _MICRO if time else value
        if not isinstance(value, str) or not value:
            raise ValueError
        return value

    def _after(self, values: list[Any]) -> sa.ColumnElement[bool]:
        """Rows after `values` in the keyset's order: (a > x) or (a = x and (b > y or ...)), with
        < for a descending order."""

        def beyond(column: sa.Column[Any], value: Any) -> sa.ColumnElement[bool]:
            past: sa.ColumnElement[bool] = column < value if self.descending else column > value
            return past

        condition = beyond(self.columns[-1], values[-1])
        for column, value in zip(reversed(self.columns[:-1]), reversed(values[:-1]), strict=True):
            condition = sa.or_(beyond(column, value), sa.and_(column == value, condition))
        return condition
