"""Making a logged request or answer fit to keep: every string in it redacted (the configured
secrets by value, anything shaped like a credential — observability/redaction.py — and the
operator's own rules), values under secret-named fields removed, and the JSON text cut at the size
cap with a marker. Redacting value by value keeps the document valid JSON whatever a rule matches,
and reaches a credential inside a string that is itself JSON (a tool call's arguments)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson

from turnout.observability.redaction import redact

REDACTED = "[redacted]"
SECRET_FIELDS = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "x-api-key",
        "authorization",
        "password",
        "secret",
        "access_token",
        "token",
    }
)
MARKER = "…[truncated by turnout: {dropped} more bytes]"
_UNBOUNDED = 1 << 62


class Scrubber:
    def __init__(self, rules: Sequence[re.Pattern[str]], max_bytes: int) -> None:
        self.rules = tuple(rules)
        self.max_bytes = max_bytes

    def text(self, value: str) -> str:
        value = redact(value, _UNBOUNDED)
        for rule in self.rules:
            value = rule.sub(REDACTED, value)
        return value

    def value(self, value: Any) -> Any:
        """`value` with every string redacted, at any depth."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                k: REDACTED if isinstance(k, str) and k.lower() in SECRET_FIELDS and v else self.value(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def document(self, value: Any) -> tuple[str, bool]:
        """`value` redacted, as JSON text cut at the size cap: (text, whether it was cut)."""
        encoded = orjson.dumps(self.value(value), default=str)
        if len(encoded) <= self.max_bytes:
            return encoded.decode(), False
        kept = encoded[: self.max_bytes].decode("utf-8", "ignore")  # (never half a character)
        return kept + MARKER.format(dropped=len(encoded) - len(kept.encode())), True
