"""The `request_logs` section, checked: retention, size cap and queue within bounds, and every
redaction rule a regular expression that compiles (each problem named by its dotted path)."""

from __future__ import annotations

import re
from collections.abc import Callable

from turnout.config.schema import RequestLogsConfig
from turnout.config.settings import RequestLogSettings

MAX_RETENTION_DAYS = 36_500
MIN_ENTRY_BYTES = 1024
MAX_ENTRY_BYTES = 16 * 1024 * 1024
MAX_QUEUE = 1_000_000
MAX_RULES = 100
MAX_RULE_LENGTH = 1000


def request_log_settings(cfg: RequestLogsConfig, problem: Callable[[str, str], None]) -> RequestLogSettings:
    """The settings `cfg` asks for; each value out of bounds is reported and its default kept."""
    base = RequestLogSettings()
    days = cfg.retention_days
    if not 1 <= days <= MAX_RETENTION_DAYS:
        problem("request_logs.retention_days", f"must be a number of days from 1 to {MAX_RETENTION_DAYS}")
        days = base.retention_days
    size = cfg.max_entry_bytes
    if not MIN_ENTRY_BYTES <= size <= MAX_ENTRY_BYTES:
        problem("request_logs.max_entry_bytes", f"must be from {MIN_ENTRY_BYTES} to {MAX_ENTRY_BYTES} bytes")
        size = base.max_entry_bytes
    queue = cfg.queue_limit
    if not 1 <= queue <= MAX_QUEUE:
        problem("request_logs.queue_limit", f"must be from 1 to {MAX_QUEUE} entries")
        queue = base.queue_limit
    return RequestLogSettings(
        log_by_default=cfg.log_by_default,
        retention_days=days,
        max_entry_bytes=size,
        queue_limit=queue,
        redact=_rules(cfg.redact or [], problem),
    )


def _rules(written: list[str], problem: Callable[[str, str], None]) -> tuple[re.Pattern[str], ...]:
    if len(written) > MAX_RULES:
        problem("request_logs.redact", f"at most {MAX_RULES} rules")
        return ()
    rules = []
    for i, rule in enumerate(written):
        path = f"request_logs.redact[{i}]"
        if not rule or len(rule) > MAX_RULE_LENGTH:
            problem(path, f"must be a regular expression of 1 to {MAX_RULE_LENGTH} characters")
            continue
        try:
            rules.append(re.compile(rule))
        except re.error as error:
            problem(path, f"is not a regular expression Python can compile: {error}")
    return tuple(rules)
