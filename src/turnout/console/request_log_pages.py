"""The console's request log: entries searched by text, key, model, status and time, newest first
and paged by cursor, and one entry with its request and answer (escaped JSON). Read through the
request log's store as `GET /admin/request-logs` reads it, so a team's admin finds their team's
entries only — another team's entry is "not found", even by its URL."""

from __future__ import annotations

from turnout.app import Services
from turnout.console.pages import PAGE_SIZE, Visit, when
from turnout.console.rendering import Renderer
from turnout.console.web import Request, Response
from turnout.domain.errors import ResourceNotFound
from turnout.request_logs.service import RequestLog
from turnout.request_logs.store import Filters
from turnout.storage.paging import Paging

FILTERS = ("q", "key_id", "model", "status", "since", "until")


class RequestLogPages:
    def __init__(self, services: Services, renderer: Renderer) -> None:
        self.r = renderer
        self.log = services.request_log

    def _log(self) -> RequestLog:
        if self.log is None:
            raise ResourceNotFound("This gateway keeps no request log.")
        return self.log

    async def entries(self, request: Request, visit: Visit) -> Response:
        log = self._log()
        shown = {name: request.text(name, 200) or "" for name in FILTERS}
        filters = Filters(
            key_id=shown["key_id"] or None,
            model=shown["model"] or None,
            status=shown["status"] or None,
            since=when(shown["since"] or None, "since"),
            until=when(shown["until"] or None, "until"),
            text=shown["q"] or None,
        )
        await log.writer.flush()  # what this instance has queued is readable at once
        entries, page = await log.store.page(
            visit.caller, filters, Paging(PAGE_SIZE, request.text("after", 1000))
        )
        return self.r.page(
            "request_logs.html",
            caller=visit.caller,
            csrf=visit.csrf,
            entries=entries,
            next_cursor=page.next_cursor,
            filters=shown,
            log_by_default=log.settings.log_by_default,
        )

    async def entry(self, request: Request, visit: Visit, request_id: str) -> Response:
        log = self._log()
        await log.writer.flush()
        entry = await log.store.get(visit.caller, request_id)
        return self.r.page("request_log.html", caller=visit.caller, csrf=visit.csrf, entry=entry)
