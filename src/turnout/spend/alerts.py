"""Budget alerts beyond a log line. When a budget's window first reaches its soft limit, or first
refuses a request because it is used up, the instance whose write of that moment lands first
(spend/budgets.py, behind the request; never on its path) raises the event here, in the same
transaction: it is written to the audit log, and queued in `alert_outbox` once for every webhook
that wants it — so an event is raised once however many instances share the database, and is not
lost on a restart. spend/alert_delivery.py sends what is queued."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from turnout.config.settings import AlertSettings
from turnout.domain.pricing import Micros, format_usd
from turnout.domain.principal import Principal
from turnout.governance.audit import AuditLog
from turnout.spend.budget_values import BudgetRule, Window
from turnout.spend.destinations import origin
from turnout.storage.tables import alert_outbox

log = logging.getLogger("turnout.alerts")

SOFT_LIMIT = "budget.soft_limit"
EXHAUSTED = "budget.exhausted"
AUDITED = {SOFT_LIMIT: "budget.soft_limit_reached", EXHAUSTED: "budget.exhausted"}

# who the audit log says acted when turnout itself raises or delivers an alert
ALERTS = Principal(key_id="turnout", name="turnout (budget alerts)", role="viewer", person="turnout")


def payload(event: str, rule: BudgetRule, current: Window, spent: Micros, now: float) -> dict[str, Any]:
    """The alert as a webhook receives it."""
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": event,
        "created_at": now,
        "budget": {
            "id": rule.id,
            "scope": rule.scope,
            "subject_id": rule.subject_id,
            "period": rule.period,
            "timezone": rule.tz.key,
            "limit_micros": rule.limit,
            "soft_limit_micros": rule.soft_limit,
            "window_start": current.start.timestamp(),
            "window_end": None if current.end is None else current.end.timestamp(),
        },
        "spent_micros": spent,
        "spent_usd": format_usd(spent),
        "limit_usd": format_usd(rule.limit),
    }


class AlertOutbox:
    def __init__(
        self, settings: AlertSettings, audit: AuditLog, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.audit = audit
        self.clock = clock
        self.notify: Callable[[], None] = lambda: None  # the deliverer's nudge (after the commit)
        self.dropped = 0  # alerts not queued: the queue was full

    async def raise_event(
        self, conn: AsyncConnection, event: str, rule: BudgetRule, current: Window, spent: Micros
    ) -> None:
        """Audit the event and queue it for its webhooks, in the caller's transaction."""
        now = self.clock()
        body = payload(event, rule, current, spent, now)
        team = rule.subject_id if rule.scope == "team" else None
        await self.audit.record(conn, ALERTS, AUDITED[event], "budget", rule.id, team_id=team, after=body)
        hooks = [hook for hook in self.settings.webhooks if event in hook.events]
        if not hooks:
            return
        waiting = (
            sa.select(sa.func.count()).select_from(alert_outbox).where(alert_outbox.c.state == "pending")
        )
        if int((await conn.execute(waiting)).scalar_one()) + len(hooks) > self.settings.queue:
            self.dropped += len(hooks)
            log.warning("budget %s: %s not queued for its webhooks: the alert queue is full", rule.id, event)
            dropped = {"event": body["id"], "webhooks": [origin(h.url) for h in hooks], "why": "queue full"}
            await self.audit.record(
                conn, ALERTS, "alert.dropped", "budget", rule.id, team_id=team, after=dropped
            )
            return
        text = orjson.dumps(body).decode()
        await conn.execute(
            alert_outbox.insert(),
            [
                {
                    "id": f"alert_{uuid.uuid4().hex}",
                    "event": event,
                    "budget_id": rule.id,
                    "team_id": team,
                    "destination": hook.url,
                    "body": text,
                    "state": "pending",
                    "attempts": 0,
                    "next_at": now,
                    "created_at": now,
                }
                for hook in hooks
            ],
        )
