"""Which proxy a provider is reached through: its `proxy` setting, else the standard environment
variables (HTTPS_PROXY / HTTP_PROXY, honouring NO_PROXY), the way curl and the SDKs read them."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from turnout.config.secrets import Secret

NO_PROXY_VALUE = "none"


class ProxyError(ValueError):
    pass


def from_environment(base_url: str, environ: Mapping[str, str]) -> str | None:
    """The proxy URL the environment asks for to reach `base_url`, if any."""
    parts = urlsplit(base_url)
    names = ("HTTPS_PROXY", "https_proxy") if parts.scheme == "https" else ("HTTP_PROXY", "http_proxy")
    proxy = next((environ[n] for n in names if environ.get(n)), None)
    if proxy is None:
        return None
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    if parts.hostname and bypasses(parts.hostname, no_proxy):
        return None
    return proxy


def bypasses(host: str, no_proxy: str) -> bool:
    """Whether NO_PROXY exempts `host`: `*`, a host, a domain (with or without a leading dot,
    covering its subdomains), optionally with `:port`, or an IP range in CIDR form."""
    host = host.lower().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if address is not None and address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        name = name.strip("[]").lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def parse_proxy(url: str) -> tuple[str, int, Secret | None]:
    """(host, port, Proxy-Authorization value) of an http:// proxy URL."""
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
        port = parts.port or 80
    except ValueError:
        raise ProxyError("not a valid proxy URL") from None
    if parts.scheme != "http" or not parts.hostname:
        shown = f"a '{parts.scheme}:' URL" if parts.scheme else "something else"
        raise ProxyError(
            f"must be an http:// proxy URL (TLS to providers goes through it as CONNECT), got {shown}"
        )
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = Secret("Basic " + base64.b64encode(credentials).decode(), "proxy credentials")
    return parts.hostname, port, authorization
