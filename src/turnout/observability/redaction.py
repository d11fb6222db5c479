"""Remove credentials from text that may reach a log or a client (upstream messages, URLs), and
the addresses of upstreams from text that reaches a client (logs keep them)."""

from __future__ import annotations

import ipaddress
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


def has_known_secret(text: str) -> bool:
    """Does `text` hold one of the secret values `register_secrets` was given?"""
    return any(secret in text for secret in _known)


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


# --------------------------------------------------------------------------- upstream addresses

HIDDEN = "[upstream address]"
_TRAILING = ".,;:!?"  # sentence punctuation after a URL is not part of it
_URL = re.compile(r"\b[a-z][a-z0-9+.\-]*://(?:\[[0-9a-f:.%]+\])?[^\s\"'<>()\[\]{}`]*", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?!\w|\.\w)")
_IPV6 = re.compile(
    r"\[?(?<![\w:])(?P<ip>[0-9a-f]*:[0-9a-f:.]*:[0-9a-f.%]*)(?![\w:])\]?(?::\d{1,5})?", re.IGNORECASE
)
# Names that only make sense inside a network: private top-level domains, Kubernetes services,
# localhost, and a single-label name with a port that looks like a machine's (vllm-gpu-3:8000).
_INTERNAL_NAME = re.compile(
    r"(?<![\w.\-])(?:(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+"
    r"(?:internal|local|localdomain|lan|intranet|corp|home\.arpa|svc|private)"
    r"|localhost|[a-z][a-z0-9]*(?:[\-0-9][a-z0-9]*)+(?=:\d{2,5}\b))(?::\d{1,5})?(?![\w\-])",
    re.IGNORECASE,
)
_host_names: frozenset[str] = frozenset()
_hosts: re.Pattern[str] | None = None


def register_internal_hosts(*hosts: str) -> None:
    """Remember the hosts turnout's upstreams live at (the providers' base URLs), so that
    `hide_addresses` removes them by name, whatever they look like."""
    global _host_names, _hosts
    _host_names = _host_names | {h.lower().strip("[]") for h in hosts if h}
    ordered = sorted(_host_names, key=len, reverse=True)
    dotted = "|".join(re.escape(h) for h in ordered if "." in h or ":" in h)
    # a one-word host (a compose service: `api`, `vllm`) is also an ordinary word: only with a port
    single = "|".join(re.escape(h) for h in ordered if "." not in h and ":" not in h)
    patterns = []
    if dotted:  # the host, its subdomains, with or without a port
        patterns.append(rf"(?:[a-z0-9\-]+\.)*(?:{dotted})(?::\d{{1,5}})?")
    if single:
        patterns.append(rf"(?:{single}):\d{{1,5}}")
    names = "|".join(patterns)
    _hosts = re.compile(rf"(?<![\w.\-])(?:{names})(?![\w\-])", re.IGNORECASE) if names else None


def hide_addresses(text: str) -> str:
    """`text` with every URL, IP address and internal host name (see `register_internal_hosts`)
    replaced by a neutral placeholder: what an upstream says may reach a client, where upstreams
    live may not."""
    text = _URL.sub(_url, text)
    if _hosts is not None:
        text = _hosts.sub(HIDDEN, text)
    text = _IPV4.sub(_ipv4, text)
    text = _IPV6.sub(_ipv6, text)
    return _INTERNAL_NAME.sub(HIDDEN, text)


def _url(match: re.Match[str]) -> str:
    url = match.group(0)
    kept = url.rstrip(_TRAILING)
    return HIDDEN + url[len(kept) :]


def _ipv4(match: re.Match[str]) -> str:
    address = match.group(0).split(":", 1)[0]
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return match.group(0)  # a version number such as 1.2.300.4
    return HIDDEN


def _ipv6(match: re.Match[str]) -> str:
    try:
        ipaddress.IPv6Address(match.group("ip").split("%", 1)[0])
    except ValueError:
        return match.group(0)  # a time of day, a ratio...
    return HIDDEN
