"""The admin API's query strings: their parameters, integers within bounds, and the paging every
list takes (`limit`, `after`), answered as `{"object": "list", "data": [...], "has_more": ...,
"next_cursor": ...}` (storage/paging.py: pass `next_cursor` as `after` for the next page)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson

from turnout.domain.errors import InvalidRequest
from turnout.domain.query_times import parse_time
from turnout.server.exchange import Exchange
from turnout.storage.paging import DEFAULT_LIMIT, MAX_LIMIT, Page, Paging


def query_params(x: Exchange) -> dict[str, str]:
    """The query string's parameters (the first value of each; `?limit=` is a value, and refused)."""
    parsed = parse_qs(bytes(x.scope.get("query_string") or b"").decode("latin-1"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


def integer(query: dict[str, str], name: str, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20) or not low <= int(raw) <= high:
        raise InvalidRequest(f"'{name}' must be an integer from {low} to {high}.", param=name)
    return int(raw)


def paging(query: dict[str, str]) -> Paging:
    """The page a list request asks for: `limit` (1 to MAX_LIMIT, DEFAULT_LIMIT if absent) items
    after the cursor `after` (the `next_cursor` of the page before; absent: the first page)."""
    limit = integer(query, "limit", 1, MAX_LIMIT)
    after = query.get("after")
    if after is not None and not after:
        raise InvalidRequest("'after' must be the `next_cursor` of a page of this list.", param="after")
    return Paging(DEFAULT_LIMIT if limit is None else limit, after)


async def send_page(x: Exchange, data: list[dict[str, Any]], page: Page, **extra: Any) -> None:
    body = {"object": "list", "data": data, "has_more": page.has_more, "next_cursor": page.next_cursor}
    await x.send_json(200, orjson.dumps({**body, **extra}))


def time_param(query: dict[str, str], name: str) -> datetime | None:
    """An ISO 8601 date or time (UTC unless it says otherwise), unix seconds, or a span back from
    now (7d, 24h, 30m): domain/query_times.py."""
    return parse_time(query, name, datetime.now(UTC))
