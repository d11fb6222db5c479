"""What a spend question asks, read from a query string (the admin API's and the console's alike):
the span (ISO times, unix seconds or a span back from now such as 7d), the dimensions to group by,
an hour or day series, and one value per dimension to keep; and what of it the caller may read —
the organisation's owners and admins everything, a key of a team its team's, any other key its
own key's."""

from __future__ import annotations

import datetime as dt

from turnout.domain.errors import InvalidRequest, PermissionDenied
from turnout.domain.key_policy import organisation_reader
from turnout.domain.principal import Principal
from turnout.domain.query_times import parse_time
from turnout.spend.explorer import DIMENSIONS, INTERVALS, SpendQuery

DEFAULT_SPAN = dt.timedelta(days=30)
MAX_DAYS = dt.timedelta(days=3660)  # a daily series covers at most ten years
MAX_HOURS = 24 * 31  # an hourly series covers at most a month
PARAMETERS = ("since", "until", "group_by", "interval", "limit", "after", *DIMENSIONS)


def _group_by(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    dims = tuple(d.strip() for d in raw.split(","))
    for d in dims:
        if d not in DIMENSIONS:
            raise InvalidRequest(
                f"'group_by' takes dimensions separated by commas, of: {', '.join(DIMENSIONS)} (got '{d}').",
                param="group_by",
            )
    if len(set(dims)) != len(dims):
        raise InvalidRequest("'group_by' names a dimension twice.", param="group_by")
    return dims


def interval_of(query: dict[str, str]) -> str | None:
    interval = query.get("interval")
    if interval is not None and interval not in INTERVALS:
        raise InvalidRequest("'interval' must be 'hour' or 'day'.", param="interval")
    return interval


def within_authority(caller: Principal, where: dict[str, str]) -> dict[str, str]:
    """The filters with the caller's scope added; PermissionDenied if they ask beyond it."""
    if organisation_reader(caller):  # the organisation's owners, admins and viewers
        return where
    if caller.team_id is not None:
        scope, mine = "team", caller.team_id
    else:
        scope, mine = "key", caller.key_id
    asked = where.get(scope)
    if asked is not None and asked != mine:
        raise PermissionDenied(f"This key may read its own {scope}'s spend only.", param=scope)
    return {**where, scope: mine}


def spend_query(query: dict[str, str], now: dt.datetime) -> SpendQuery:
    """The query string as a SpendQuery (filters as given, before the caller's scope)."""
    unknown = sorted(set(query) - set(PARAMETERS))
    if unknown:
        raise InvalidRequest(
            f"Unknown parameter '{unknown[0]}' (known: {', '.join(PARAMETERS)}).", param=unknown[0]
        )
    until = parse_time(query, "until", now) or now
    since = parse_time(query, "since", now) or until - DEFAULT_SPAN
    if since >= until:
        raise InvalidRequest("'since' must be before 'until'.", param="since")
    if interval_of(query) == "day" and until - since > MAX_DAYS:
        raise InvalidRequest("A daily series covers at most 10 years.", param="interval")
    interval = interval_of(query)
    if interval == "hour" and until - since > dt.timedelta(hours=MAX_HOURS):
        raise InvalidRequest("An hourly series covers at most 31 days; ask for days.", param="interval")
    where = {}
    for d in DIMENSIONS:
        value = query.get(d)
        if value is not None:
            if not value or len(value) > 256:
                raise InvalidRequest(f"'{d}' must be one value of 1-256 characters.", param=d)
            where[d] = value
    return SpendQuery(since, until, _group_by(query.get("group_by")), where, interval)
