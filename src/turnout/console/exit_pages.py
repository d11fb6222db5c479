"""The console's exit-readiness page: for each provider, how much of its answered traffic over a
span the configured alternatives could take now, the rest by reason, the cost difference and the
alternatives' peak load against their limits (spend/exit_report.py, as `GET /admin/exit-report`).
The organisation's owners and admins only, as the admin API."""

from __future__ import annotations

import datetime as dt

from turnout.app import Services
from turnout.console.pages import Visit
from turnout.console.rendering import Renderer
from turnout.console.web import Request, Response
from turnout.domain.errors import InvalidRequest
from turnout.domain.key_policy import require_organisation_reader
from turnout.domain.query_times import parse_time
from turnout.spend.exit_report import exit_report

DEFAULT_SPAN = dt.timedelta(days=30)


class ExitPages:
    def __init__(self, services: Services, renderer: Renderer) -> None:
        self.s = services
        self.r = renderer

    async def exit_report(self, request: Request, visit: Visit) -> Response:
        require_organisation_reader(visit.caller, "read the exit-readiness report")
        asked = {name: value for name in ("since", "until") if (value := request.text(name, 64)) is not None}
        now = dt.datetime.now(dt.UTC)
        until = parse_time(asked, "until", now) or now
        since = parse_time(asked, "since", now) or until - DEFAULT_SPAN
        if since >= until:
            raise InvalidRequest("'since' must be before 'until'.", param="since")
        report = await exit_report(self.s.database, self.s.catalog, since, until)
        return self.r.page(
            "exit_report.html",
            caller=visit.caller,
            csrf=visit.csrf,
            report=report,
            since=since,
            until=until,
            asked=asked,
        )
