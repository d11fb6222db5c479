"""Remove credentials from text that may reach a log or a client (upstream messages, URLs)."""

from __future__ import annotations

import re

_PATTERNS = (
    # provider-style keys: sk-..., sk-proj-..., sk-ant-..., gsk_..., xai-..., AIza...
    re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-*]{6,}"),
    re.compile(r"\bgsk_[A-Za-z0-9]{10,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    # "Bearer <token>", "api-key: <token>", "key=<token>", "token=..."
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(
        r"(?i)\b(api[-_]?key|x-api-key|access[-_]?token|token|secret|password|key)"
        r"(\s*[:=]\s*|\"\s*:\s*\")[^\s\"',&]{4,}"
    ),
    # long opaque tokens (hex or base64url runs of 32+ characters)
    re.compile(r"\b[A-Za-z0-9_\-]{40,}\b"),
)


_known: frozenset[str] = frozenset()
MIN_KNOWN_SECRET = 6  # shorter values would blank out ordinary words


def register_secrets(*values: str) -> None:
    """Remember secret values (provider keys, the master key) so that `redact` removes them by value,
    whatever they look like (an Azure key is 32 hex digits, like many harmless identifiers)."""
    global _known
    _known = _known | {v for v in values if len(v) >= MIN_KNOWN_SECRET}


def redact(text: str, limit: int = 1000) -> str:
    """`text` with every known secret and anything that looks like a credential replaced, cut to
    `limit` characters."""
    for secret in _known:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    for pattern in _PATTERNS:
        text = pattern.sub(_replacement, text)
    if len(text) > limit:
        text = text[:limit] + "…"
    return text


def _replacement(match: re.Match[str]) -> str:
    if match.re.groups >= 2:
        return f"{match.group(1)}{match.group(2)}[redacted]"
    if match.re.groups == 1:
        return f"{match.group(1)} [redacted]"
    return "[redacted]"
