"""/admin/request-logs: the request log, browsed (paged, filtered by key, team, user, model, status,
time and text), read entry by entry, and exported as JSON Lines (streamed page by page); and
/admin/keys/{id}/request-log, /admin/teams/{id}/request-log: whether a key's or team's traffic is
logged. Owners and admins only; a team's admin reads and sets their own team's only."""

from __future__ import annotations

import msgspec
import orjson

from turnout.domain.principal import Principal
from turnout.request_logs.policy import Scope
from turnout.request_logs.service import RequestLog
from turnout.request_logs.store import Filters
from turnout.server.admin_body import decode_body
from turnout.server.admin_query import paging, query_params, send_page
from turnout.server.admin_query import time_param as query_time
from turnout.server.admin_routes import AdminRouter
from turnout.server.exchange import Exchange

FILTERS = ("key_id", "team_id", "user_id", "model", "status", "since", "until", "q")
JSONL_TYPE = (b"content-type", b"application/x-ndjson")


class LoggingSetting(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool | None  # null: no setting of its own (the team's, or the configured default)


def _filters(query: dict[str, str]) -> Filters:
    return Filters(
        key_id=query.get("key_id"),
        team_id=query.get("team_id"),
        user_id=query.get("user_id"),
        model=query.get("model"),
        status=query.get("status"),
        since=query_time(query, "since"),
        until=query_time(query, "until"),
        text=query.get("q"),
    )


class AdminRequestLogs:
    def __init__(self, request_log: RequestLog) -> None:
        self.log = request_log

    async def list(self, x: Exchange, viewer: Principal) -> None:
        """GET /admin/request-logs (entries without their bodies, newest first, paged)."""
        query = query_params(x)
        filters, asked = _filters(query), paging(query)
        await self.log.writer.flush()  # what this instance has queued is readable at once
        await send_page(x, *await self.log.store.page(viewer, filters, asked))

    async def one(self, x: Exchange, viewer: Principal, request_id: str) -> None:
        """GET /admin/request-logs/{request_id}: the entry with its request and answer."""
        await self.log.writer.flush()
        await x.send_json(200, orjson.dumps(await self.log.store.get(viewer, request_id)))

    async def export(self, x: Exchange, viewer: Principal) -> None:
        """GET /admin/request-logs/export: every matching entry, one JSON object a line."""
        filters = _filters(query_params(x))
        await self.log.writer.flush()
        pages = self.log.store.export(viewer, filters)
        first = await anext(pages)  # (a refusal is still an ordinary error answer)
        x.started = True
        await x.send(
            {"type": "http.response.start", "status": 200, "headers": [JSONL_TYPE, *x.response_headers(None)]}
        )
        await x.send({"type": "http.response.body", "body": _lines(first), "more_body": True})
        async for entries in pages:
            await x.send({"type": "http.response.body", "body": _lines(entries), "more_body": True})
        await x.send({"type": "http.response.body", "body": b""})

    async def key_setting(self, x: Exchange, caller: Principal, key_id: str) -> None:
        await self._setting(x, caller, "key", key_id)

    async def team_setting(self, x: Exchange, caller: Principal, team_id: str) -> None:
        await self._setting(x, caller, "team", team_id)

    async def _setting(self, x: Exchange, caller: Principal, scope: Scope, subject_id: str) -> None:
        """GET: the subject's setting; PUT {"enabled": true | false | null}: set or clear it."""
        policy = self.log.policy
        if x.scope["method"] == "PUT":
            body: LoggingSetting = decode_body(await x.body(), LoggingSetting)
            described = await policy.set(caller, scope, subject_id, body.enabled, x.request_id)
        else:
            described = await policy.get(caller, scope, subject_id)
        await x.send_json(200, orjson.dumps(described))


def _lines(entries: list[dict[str, object]]) -> bytes:
    return b"".join(orjson.dumps(entry) + b"\n" for entry in entries)


def add_request_log_routes(r: AdminRouter, request_log: RequestLog) -> None:
    logs = AdminRequestLogs(request_log)
    tag = "request-logs"
    r.add(
        "GET",
        "/admin/request-logs",
        logs.list,
        "Browse and search the request log (paged, newest first)",
        query=(*FILTERS, "limit", "after"),
        tag=tag,
        admin_only=True,
    )
    r.add(
        "GET",
        "/admin/request-logs/export",
        logs.export,
        "Export the request log as JSON Lines (streamed, newest first)",
        query=FILTERS,
        tag=tag,
        admin_only=True,
    )
    r.add(
        "GET",
        "/admin/request-logs/{request_id}",
        logs.one,
        "Read one request log entry with its request and answer",
        tag=tag,
        admin_only=True,
    )
    for scope, path, handler in (
        ("key", "/admin/keys/{key_id}/request-log", logs.key_setting),
        ("team", "/admin/teams/{team_id}/request-log", logs.team_setting),
    ):
        r.add("GET", path, handler, f"Is this {scope}'s traffic logged?", tag=tag, admin_only=True)
        r.add(
            "PUT",
            path,
            handler,
            f"Log this {scope}'s traffic, or not (null: inherit)",
            body=LoggingSetting,
            tag=tag,
            admin_only=True,
        )
