"""GET /admin/exit-report: how much of each provider's traffic the configured alternatives could
take now (spend/exit_report.py). The organisation's owners and admins, and the master key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson

from turnout.domain.errors import InvalidRequest
from turnout.domain.key_policy import require_organisation_reader
from turnout.domain.principal import Principal
from turnout.routing.catalog import Catalog
from turnout.server.admin_query import query_params, time_param
from turnout.server.exchange import Exchange
from turnout.spend.exit_report import exit_report
from turnout.storage.database import Database

DEFAULT_PERIOD = timedelta(days=30)


class AdminExit:
    def __init__(self, database: Database, catalog: Callable[[], Catalog]) -> None:
        self.database = database
        self.catalog = catalog  # the running configuration's (a reload changes it)

    async def report(self, x: Exchange, caller: Principal) -> None:
        require_organisation_reader(caller, "read the exit-readiness report")
        query = query_params(x)
        until = time_param(query, "until") or datetime.now(UTC)
        since = time_param(query, "since") or until - DEFAULT_PERIOD
        if since >= until:
            raise InvalidRequest("'since' must be before 'until'.", param="since")
        report = await exit_report(self.database, self.catalog(), since, until)
        await x.send_json(200, orjson.dumps(report))
