"""The admin API's governance endpoints: GET /admin/audit (the audit log, newest first, paged),
GET /admin/approvals, GET /admin/approvals/{id}, POST /admin/approvals/{id}/approve and /reject.
Owners and admins only; a team admin sees and decides their own team's records only."""

from __future__ import annotations

from typing import Any

import orjson

from turnout.domain.errors import RouteNotFound
from turnout.domain.principal import Principal
from turnout.governance.approvals import Approvals
from turnout.governance.audit import AuditLog
from turnout.server.admin_query import integer, paging, query_params, send_page, time_param
from turnout.server.exchange import Exchange


class AdminGovernance:
    """Owners and admins only (the route table says so: `admin_only`)."""

    def __init__(self, audit: AuditLog, approvals: Approvals) -> None:
        # (not `self.audit` / `self.approvals`: those names are the endpoints)
        self.log = audit
        self.pending = approvals

    async def audit(self, x: Exchange, viewer: Principal) -> None:
        """GET /admin/audit?action=key.*&actor_key_id=&actor_person=&target_type=&target_id=
        &team_id=&since=&until=&limit=&before_id="""
        query = query_params(x)
        asked = paging(query)
        data, page = await self.log.page(
            viewer,
            action=query.get("action"),
            actor_key_id=query.get("actor_key_id"),
            actor_person=query.get("actor_person"),
            target_type=query.get("target_type"),
            target_id=query.get("target_id"),
            team_id=query.get("team_id"),
            since=time_param(query, "since"),
            until=time_param(query, "until"),
            limit=asked.limit,
            before_id=integer(query, "before_id", 1, 2**63 - 1),
            after=asked.after,
        )
        await send_page(x, data, page)

    async def approvals(self, x: Exchange, viewer: Principal) -> None:
        """GET /admin/approvals?status=pending&limit=100"""
        query = query_params(x)
        asked = paging(query)
        data, page = await self.pending.page(
            viewer, query.get("status"), limit=asked.limit, after=asked.after
        )
        await send_page(x, data, page)

    async def approval(self, x: Exchange, viewer: Principal, action_id: str, verb: str) -> None:
        """GET /admin/approvals/{id} (verb ""); POST /admin/approvals/{id}/approve and /reject."""
        described: dict[str, Any]
        if verb == "approve":
            described = await self.pending.approve(viewer, action_id, x.request_id)
        elif verb == "reject":
            described = await self.pending.reject(viewer, action_id, x.request_id)
        elif verb == "":
            described = await self.pending.get(viewer, action_id)
        else:
            raise RouteNotFound(f"Unknown request URL: /admin/approvals/{action_id}/{verb}.")
        await x.send_json(200, orjson.dumps(described))
