"""Sending queued budget alerts (`alert_outbox`, spend/alerts.py) to their webhooks, behind the
requests: signed, retried with exponential backoff and jitter, given up after
`spend.alerts.attempts`, each outcome in the audit log.

The signature: header `Turnout-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
`<t>.<body>` with the webhook's secret (a receiver recomputes it, compares in constant time and
refuses a `t` too old). `Turnout-Delivery` is the alert's id, the same on every retry: a receiver
that saw it answer 2xx before (and turnout did not hear) can ignore it. An alert is taken by one
instance at a time (a row claimed by moving its `next_at`), so instances sharing a database do not
send it twice in a round.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import ssl
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from turnout.config.settings import AlertSettings, Webhook
from turnout.governance.audit import AuditLog
from turnout.spend.alerts import ALERTS
from turnout.spend.destinations import DestinationRefused, origin, post
from turnout.storage.database import Database
from turnout.storage.tables import alert_outbox

log = logging.getLogger("turnout.alerts")

BATCH = 50  # alerts sent a round at most
IDLE = 1.0  # seconds between looks at the queue when nothing is due sooner
USER_AGENT = "turnout/0.1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Turnout-Signature header's value."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class AlertDelivery:
    def __init__(
        self,
        database: Database,
        settings: AlertSettings,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.database = database
        self.settings = settings
        self.audit = audit
        self.clock = clock
        self.jitter = jitter
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._forever(), name="turnout: budget alerts")

    def notify(self) -> None:
        """An alert was queued: look now rather than at the next tick."""
        self._wake.set()

    def delay(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (1, 2...): doubling from `backoff` up to
        `max_backoff`, the second half of it random (so instances do not retry in step)."""
        ceiling = min(self.settings.max_backoff, self.settings.backoff * float(2 ** min(attempt - 1, 60)))
        return ceiling / 2 + self.jitter() * ceiling / 2

    async def _forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = await self.round()
            except Exception:
                log.warning("could not send budget alerts; trying again shortly", exc_info=True)
                wait = IDLE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def round(self) -> float:
        """Send the alerts that are due (at most BATCH); the seconds until the next one is. One
        query a look (none while no webhook is configured)."""
        if not self.settings.webhooks:
            return IDLE
        c = alert_outbox.c
        waiting = sa.select(alert_outbox).where(c.state == "pending").order_by(c.next_at, c.id).limit(BATCH)
        async with self.database.engine.connect() as conn:
            rows = (await conn.execute(waiting)).all()
        now = self.clock()
        due = [row for row in rows if row.next_at <= now]
        for row in due:
            if await self._claim(row):
                await self._send(row)
        if due and len(due) == BATCH:
            return 0.0
        later = [row.next_at for row in rows if row.next_at > now]
        return min(IDLE, max(0.0, min(later) - self.clock())) if later else IDLE

    async def _claim(self, row: Any) -> bool:
        """Take the alert for as long as one delivery may last (another instance leaves it)."""
        c = alert_outbox.c
        claim = (
            sa.update(alert_outbox)
            .where(c.id == row.id, c.state == "pending", c.next_at == row.next_at)
            .values(next_at=self.clock() + self.settings.timeout + 5.0)
        )
        async with self.database.engine.begin() as conn:
            return bool((await conn.execute(claim)).rowcount == 1)

    def _hook(self, url: str) -> Webhook | None:
        return next((h for h in self.settings.webhooks if h.url == url), None)

    async def _send(self, row: Any) -> None:
        attempt = row.attempts + 1
        hook = self._hook(row.destination)
        error: str | None
        final = False
        if hook is None:
            error, final = "the webhook is no longer configured", True
        else:
            body = row.body.encode()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Turnout-Event": row.event,
                "Turnout-Delivery": row.id,
                "Turnout-Signature": signature(hook.secret.reveal(), int(self.clock()), body),
            }
            try:
                async with asyncio.timeout(self.settings.timeout):
                    status = await post(hook.url, body, headers, self.settings.allow_private)
                error = None if 200 <= status < 300 else f"answered HTTP {status}"
            except DestinationRefused as refused:
                error, final = str(refused), True
            except (
                OSError,
                TimeoutError,
                ssl.SSLError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
            ) as e:
                error = f"{type(e).__name__}: {e}"[:200]
        await self._record(row, attempt, error, final or attempt >= self.settings.attempts)

    async def _record(self, row: Any, attempt: int, error: str | None, final: bool) -> None:
        c = alert_outbox.c
        about = {"alert": row.id, "event": row.event, "webhook": origin(row.destination), "attempts": attempt}
        async with self.database.engine.begin() as conn:
            if error is None:
                change: dict[str, Any] = {"state": "delivered", "attempts": attempt, "last_error": None}
                await self.audit.record(
                    conn, ALERTS, "alert.delivered", "budget", row.budget_id, team_id=row.team_id, after=about
                )
            elif final:
                change = {"state": "failed", "attempts": attempt, "last_error": error[:200]}
                await self.audit.record(
                    conn,
                    ALERTS,
                    "alert.failed",
                    "budget",
                    row.budget_id,
                    team_id=row.team_id,
                    after={**about, "error": error[:200]},
                )
                log.warning("budget alert %s given up after %d attempts: %s", row.id, attempt, error)
            else:
                change = {
                    "attempts": attempt,
                    "last_error": error[:200],
                    "next_at": self.clock() + self.delay(attempt),
                }
            await conn.execute(sa.update(alert_outbox).where(c.id == row.id).values(**change))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
