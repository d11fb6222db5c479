"""Budget periods: the window an instant falls in, for a period in a time zone.

A daily window runs from local midnight to the next local midnight, a weekly one from Monday's
midnight, a monthly one from the first's; `never` is one window for all time. Windows are computed
in the budget's own time zone, so a day across a daylight-saving change is 23 or 25 hours long and
still one window. Every instance computes the same window for the same instant, which is what
makes "exactly one reset per period" checkable: a window is identified by its start.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Period = Literal["daily", "weekly", "monthly", "never"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly", "never")

ALL_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (ValueError naming it if there is none)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"'{name}' is not a time zone (expected an IANA name such as 'Europe/Paris')"
        ) from None


def _midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(dt.UTC)


def _first_day(day: dt.date, period: Period) -> dt.date:
    if period == "weekly":
        return day - dt.timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    return day


def _next_first_day(first: dt.date, period: Period) -> dt.date:
    if period == "daily":
        return first + dt.timedelta(days=1)
    if period == "weekly":
        return first + dt.timedelta(days=7)
    return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def window(period: Period, tz: ZoneInfo, now: dt.datetime) -> tuple[dt.datetime, dt.datetime | None]:
    """The window `now` falls in: its start and its end (None: it never ends), both in UTC."""
    if period == "never":
        return ALL_TIME, None
    first = _first_day(now.astimezone(tz).date(), period)
    start, end = _midnight(first, tz), _midnight(_next_first_day(first, period), tz)
    if now < start:  # a midnight that does not exist locally resolved past `now`: the day before's
        first = _first_day(first - dt.timedelta(days=1), period)
        start, end = _midnight(first, tz), start
    return start, end
