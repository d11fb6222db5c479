"""Reading the request log for the admin API: a page of entries matching filters (key, team, user,
model, status, time range, text), newest first and paged by cursor; one entry by request id; and
every matching entry, page after page, for an export. A team's admin reads their team's entries
only (anyone else's are absent to them); an organisation's owners and admins read every entry."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from turnout.domain.errors import InvalidRequest, ResourceNotFound
from turnout.domain.principal import Principal
from turnout.governance.audit import team_scope
from turnout.storage.database import Database
from turnout.storage.paging import Keyset, Page, Paging
from turnout.storage.tables import request_logs
from turnout.storage.times import unix_seconds

ORDER = Keyset(request_logs.c.at, request_logs.c.request_id, descending=True)
EXPORT_PAGE = 200
MAX_TEXT = 200  # characters of a text search


@dataclass(frozen=True, slots=True)
class Filters:
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    model: str | None = None  # the model asked for, or the upstream model that answered
    status: str | None = None  # 200, 429...; or a class: 2xx, 4xx, 5xx
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    text: str | None = None  # in the request or the answer, ignoring case

    def where(self) -> list[sa.ColumnElement[bool]]:
        c = request_logs.c
        clauses: list[sa.ColumnElement[bool]] = []
        for column, value in ((c.key_id, self.key_id), (c.team_id, self.team_id), (c.user_id, self.user_id)):
            if value is not None:
                clauses.append(column == value)
        if self.model is not None:
            clauses.append(sa.or_(c.alias == self.model, c.model == self.model))
        if self.status is not None:
            clauses.append(_status(self.status))
        if self.since is not None:
            clauses.append(c.at >= self.since)
        if self.until is not None:
            clauses.append(c.at < self.until)
        if self.text is not None:
            if not 1 <= len(self.text) <= MAX_TEXT:
                raise InvalidRequest(f"'q' must be 1 to {MAX_TEXT} characters.", param="q")
            # ILIKE on PostgreSQL, lower() LIKE lower() on SQLite; % and _ in the text match themselves
            clauses.append(
                sa.or_(
                    c.request.icontains(self.text, autoescape=True),
                    c.response.icontains(self.text, autoescape=True),
                )
            )
        return clauses


def _status(value: str) -> sa.ColumnElement[bool]:
    status = request_logs.c.status
    if len(value) == 3 and value[0] in "12345" and value[1:].lower() == "xx":
        low = int(value[0]) * 100
        return sa.and_(status >= low, status < low + 100)
    if value.isascii() and value.isdigit() and 100 <= int(value) <= 599:
        return status == int(value)
    raise InvalidRequest("'status' must be an HTTP status (429) or a class (4xx).", param="status")


def _json(text: str | None) -> Any:
    """A stored document as JSON, or as the text it is when it was cut (and no longer parses)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def describe(row: Any, bodies: bool = True) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "object": "request_log",
        "request_id": row.request_id,
        "at": unix_seconds(row.at),
        "api": row.api,
        "key_id": row.key_id,
        "team_id": row.team_id,
        "user_id": row.user_id,
        "model": row.alias,
        "served_model": row.model,
        "deployment": row.deployment,
        "stream": bool(row.stream),
        "status": row.status,
        "reason": row.reason,
        "latency_ms": row.latency_ms,
        "truncated": bool(row.truncated),
    }
    if bodies:
        entry["request"] = _json(row.request)
        entry["response"] = _json(row.response)
    return entry


class RequestLogStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def _query(self, viewer: Principal, filters: Filters, bodies: bool) -> sa.Select[Any]:
        team = team_scope(viewer)  # 403 unless an owner or admin; their team's only if a team's
        c = request_logs.c
        columns = list(c) if bodies else [col for col in c if col.name not in ("request", "response")]
        query = sa.select(*columns).where(*filters.where())
        return query if team is None else query.where(c.team_id == team)

    async def page(
        self, viewer: Principal, filters: Filters, paging: Paging
    ) -> tuple[list[dict[str, Any]], Page]:
        """Entries without their bodies (GET one for those), newest first."""
        query = ORDER.select(self._query(viewer, filters, bodies=False), paging)
        async with self.database.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        page = ORDER.page(rows, paging)
        return [describe(r, bodies=False) for r in page.rows], page

    async def get(self, viewer: Principal, request_id: str) -> dict[str, Any]:
        query = self._query(viewer, Filters(), bodies=True).where(request_logs.c.request_id == request_id)
        async with self.database.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise ResourceNotFound(f"No request log entry with id '{request_id}'.", param="request_id")
        return describe(row)

    async def export(self, viewer: Principal, filters: Filters) -> AsyncIterator[list[dict[str, Any]]]:
        """Every matching entry with its bodies, newest first, `EXPORT_PAGE` at a time (each page one
        query: nothing is held open between them)."""
        base = self._query(viewer, filters, bodies=True)
        paging = Paging(EXPORT_PAGE)
        while True:
            async with self.database.engine.connect() as conn:
                rows = (await conn.execute(ORDER.select(base, paging))).all()
            page = ORDER.page(rows, paging)
            yield [describe(r) for r in page.rows]
            if page.next_cursor is None:
                return
            paging = Paging(EXPORT_PAGE, page.next_cursor)
