"""The request log as the rest of turnout sees it: who is logged (`policy`), the queue entries are
written from (`writer`), the reads of the admin API (`store`) and retention, started and stopped
together."""

from __future__ import annotations

from turnout.config.settings import RequestLogSettings
from turnout.domain.principal import Principal
from turnout.governance.audit import AuditLog
from turnout.request_logs.capture import Captured
from turnout.request_logs.policy import LoggingPolicy
from turnout.request_logs.retention import RequestLogRetention
from turnout.request_logs.scrub import Scrubber
from turnout.request_logs.store import RequestLogStore
from turnout.request_logs.writer import RequestLogWriter
from turnout.storage.database import Database


class RequestLog:
    def __init__(self, database: Database, audit: AuditLog, settings: RequestLogSettings) -> None:
        self.settings = settings
        self.policy = LoggingPolicy(database, audit, settings.log_by_default)
        self.writer = RequestLogWriter(
            database, Scrubber(settings.redact, settings.max_entry_bytes), settings.queue_limit
        )
        self.store = RequestLogStore(database)
        self.retention = RequestLogRetention(database, settings.retention_days)

    def wanted(self, principal: Principal) -> bool:
        return self.policy.wanted(principal)

    def capture(self, entry: Captured) -> None:
        self.writer.capture(entry)

    async def start(self) -> None:
        await self.policy.start()
        self.writer.start()
        self.retention.start()

    async def stop_background(self) -> None:
        """Stop reading settings and pruning (the writer is closed with the last writes)."""
        await self.policy.aclose()
        await self.retention.aclose()

    async def aclose(self) -> None:
        await self.writer.aclose()
