"""A moment named in a query string — the admin API's and the console's alike: an ISO 8601 date or
time (UTC unless it says otherwise), unix seconds, or a span back from now (7d, 24h, 30m)."""

from __future__ import annotations

import datetime as dt

from turnout.domain.errors import InvalidRequest

UNITS = {"d": "days", "h": "hours", "m": "minutes"}
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def parse_time(query: dict[str, str], name: str, now: dt.datetime) -> dt.datetime | None:
    """An ISO 8601 date or time (UTC unless it says otherwise), unix seconds, or a span back from
    now (7d, 24h, 30m), between 1970 and 2200."""
    raw = query.get(name)
    if raw is None:
        return None
    problem = (
        f"'{name}' must be an ISO 8601 date or time, unix seconds, or a span back from now "
        "such as 7d, 24h or 30m, between 1970 and 2200."
    )
    when: dt.datetime | None = None
    if raw[-1:] in UNITS and raw[:-1].isascii() and raw[:-1].isdigit() and len(raw) <= 8:
        try:
            when = now - dt.timedelta(**{UNITS[raw[-1]]: int(raw[:-1])})
        except OverflowError:
            raise InvalidRequest(problem, param=name) from None
    else:
        try:
            when = dt.datetime.fromtimestamp(float(raw), dt.UTC)
        except (ValueError, OverflowError, OSError):
            try:
                parsed = dt.datetime.fromisoformat(raw)
            except ValueError:
                raise InvalidRequest(problem, param=name) from None
            when = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    if not EARLIEST <= when <= LATEST:
        raise InvalidRequest(problem, param=name)
    return when
