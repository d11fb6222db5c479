"""Times as the database holds them and the admin API shows them: stored in UTC (SQLite hands them
back naive, PostgreSQL aware), shown as unix seconds."""

from __future__ import annotations

import datetime as dt
from typing import overload


def as_utc(value: dt.datetime) -> dt.datetime:
    """`value` in UTC (a naive one, as SQLite returns them, is UTC already)."""
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def unix_seconds(value: dt.datetime | None) -> float | None:
    return None if value is None else as_utc(value).timestamp()


@overload
def from_unix(seconds: float) -> dt.datetime: ...
@overload
def from_unix(seconds: None) -> None: ...
def from_unix(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)
