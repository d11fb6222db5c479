"""Logs, redaction, metrics and traces."""
