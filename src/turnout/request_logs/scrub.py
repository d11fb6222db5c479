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

from turnout.observability.redaction import has_known_secret, redact

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
# What a string must contain for any built-in credential pattern to match in it (lowercased): a
# string with none of these, and no run of 40 token characters, is left as it is without running
# the patterns — most strings of a request (roles, names, schema words, ordinary prose) are such.
# (bench/choices/request_log_store.py measures both ways.)
_TRIGGERS = ("k-", "k_", "aiza", "akia", "asia", "bearer", "key", "token", "secret", "password")
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_\-]+")
LONG_TOKEN = 40


def may_hold_credential(text: str) -> bool:
    """Could a built-in pattern of observability.redaction match in `text`? (Never a false no.)"""
    lowered = text.lower()
    if any(trigger in lowered for trigger in _TRIGGERS):
        return True
    if not any(len(word) >= LONG_TOKEN for word in text.split()):  # (C-level: most text ends here)
        return False
    return any(len(run) >= LONG_TOKEN for run in _NOT_TOKEN.split(text))


class Scrubber:
    def __init__(self, rules: Sequence[re.Pattern[str]], max_bytes: int) -> None:
        self.rules = tuple(rules)
        self.max_bytes = max_bytes

    def text(self, value: str) -> str:
        if may_hold_credential(value) or has_known_secret(value):
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

    def clean(self, value: Any) -> bool:
        """Is there nothing to redact in `value`? One walk collecting its strings, then one look
        at all of them together (most requests: no copy of the document is made)."""
        strings: list[str] = []
        if not _collect(value, strings):
            return False
        joined = "\n".join(strings)
        if may_hold_credential(joined) or has_known_secret(joined):
            return False
        return not any(rule.search(text) for rule in self.rules for text in strings)

    def document(self, value: Any) -> tuple[str, bool]:
        """`value` redacted, as JSON text cut at the size cap: (text, whether it was cut)."""
        encoded = orjson.dumps(value if self.clean(value) else self.value(value), default=str)
        if len(encoded) <= self.max_bytes:
            return encoded.decode(), False
        kept = encoded[: self.max_bytes].decode("utf-8", "ignore")  # (never half a character)
        return kept + MARKER.format(dropped=len(encoded) - len(kept.encode())), True


def _collect(value: Any, strings: list[str]) -> bool:
    """Add every string in `value` to `strings`; False at once if a field is named like a secret."""
    if isinstance(value, str):
        strings.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in SECRET_FIELDS and item:
                return False
            if not _collect(item, strings):
                return False
    elif isinstance(value, list | tuple):
        for item in value:
            if not _collect(item, strings):
                return False
    return True
