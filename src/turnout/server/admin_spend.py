"""GET /admin/spend: spend over a span of time, filtered by and grouped by team, key, user, model,
alias, deployment, provider or preset, as totals or an hour or day series (spend/explorer.py),
within what the caller may read: the organisation's owners and admins (and the master key) read
everything; a key of a team reads that team's spend (another team's: 403); a key of no team that
is not an admin reads its own key's (another key's: 403)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

import orjson

from turnout.domain.errors import InvalidRequest, PermissionDenied
from turnout.domain.key_policy import organisation_admin
from turnout.domain.pricing import format_usd
from turnout.domain.principal import Principal
from turnout.server.admin_query import paging, query_params, send_page
from turnout.server.exchange import Exchange
from turnout.spend.explorer import DIMENSIONS, INTERVALS, Group, SpendQuery, spend_over
from turnout.storage.database import Database
from turnout.storage.paging import Page
from turnout.teams.names import Names

DEFAULT_SPAN = dt.timedelta(days=30)
MAX_DAYS = dt.timedelta(days=3660)  # a daily series covers at most ten years
MAX_HOURS = 24 * 31  # an hourly series covers at most a month
PARAMETERS = ("since", "until", "group_by", "interval", "limit", "after", *DIMENSIONS)
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
    if organisation_admin(caller):
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


def figures(values: dict[str, int]) -> dict[str, Any]:
    return {
        **values,
        "cost_usd": format_usd(values["cost_micros"]),
        "charged_usd": format_usd(values["customer_price_micros"]),
    }


def _item(group: Group, group_by: tuple[str, ...]) -> dict[str, Any]:
    item: dict[str, Any] = {"group": dict(zip(group_by, group.values, strict=True))}
    if group.bucket is not None:
        item["bucket"] = group.bucket.timestamp()
    return {**item, **figures(group.figures)}


def _offset(after: str | None) -> int:
    if after is None:
        return 0
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(after.encode() + b"=" * (-len(after) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        decoded = None
    if not (isinstance(decoded, list) and len(decoded) == 1 and type(decoded[0]) is int and decoded[0] > 0):
        raise InvalidRequest("'after' must be the `next_cursor` of a page of this list.", param="after")
    return int(decoded[0])


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([offset])).decode().rstrip("=")


class AdminSpend:
    def __init__(self, database: Database, names: Names) -> None:
        self.database = database
        self.names = names

    async def report(self, x: Exchange, caller: Principal) -> None:
        """GET /admin/spend?since=&until=&group_by=team,model&interval=day&team=&key=&...&limit=&after="""
        query = query_params(x)
        asked = paging(query)
        start = _offset(asked.after)
        wanted = spend_query(query, dt.datetime.now(dt.UTC))
        where = dict(wanted.where)
        if "team" in where:
            where["team"] = await self.names.team(where["team"]) or where["team"]
        if "user" in where:
            where["user"] = await self.names.user(where["user"]) or where["user"]
        where = within_authority(caller, where)
        wanted = SpendQuery(wanted.since, wanted.until, wanted.group_by, where, wanted.interval)
        groups, totals = await spend_over(self.database, wanted)
        end = start + asked.limit
        page = Page(groups[start:end], _cursor(end) if end < len(groups) else None)
        await send_page(
            x,
            [_item(g, wanted.group_by) for g in page.rows],
            page,
            since=wanted.since.timestamp(),
            until=wanted.until.timestamp(),
            group_by=list(wanted.group_by),
            interval=wanted.interval,
            filters=where,
            totals=figures(totals),
        )
