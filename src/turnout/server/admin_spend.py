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

from turnout.domain.errors import InvalidRequest
from turnout.domain.pricing import format_usd
from turnout.domain.principal import Principal
from turnout.server.admin_query import paging, query_params, send_page
from turnout.server.exchange import Exchange
from turnout.spend.explorer import Group, SpendQuery, spend_over
from turnout.spend.spend_query import spend_query, within_authority
from turnout.storage.database import Database
from turnout.storage.paging import Page
from turnout.teams.names import Names


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
