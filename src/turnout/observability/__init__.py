"""Logs, redaction and (later) metrics and traces."""
