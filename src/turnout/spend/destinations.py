"""Where a webhook may be sent, and the one POST that sends it.

A webhook's host is resolved, and every address it resolves to must be public: private, loopback,
link-local (cloud metadata at 169.254.169.254), carrier-grade NAT, multicast and reserved ranges
are refused — IPv4-mapped IPv6 addresses as the IPv4 address they carry — unless a network of
`spend.alerts.allow_private` holds them. The connection then goes to the address that was checked
(the name is not resolved again, so a DNS answer that changes in between cannot redirect it), with
the name as the TLS server name and Host. Redirects are not followed (one could point anywhere):
a 3xx is a failed delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from urllib.parse import urlsplit

Networks = Sequence[IPv4Network | IPv6Network]


class DestinationRefused(Exception):
    """The webhook's host resolves to an address it may not be sent to (never retried)."""


def refused_address(address: str, allowed: Networks) -> bool:
    """Is `address` one a webhook may not reach (not public, and in no allowed network)?"""
    ip: IPv4Address | IPv6Address = ip_address(address.split("%", 1)[0])
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed):
        return False
    return not ip.is_global or ip.is_multicast


async def checked_address(host: str, port: int, allowed: Networks) -> str:
    """The address to connect to for `host`: every address it resolves to must be allowed."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise ConnectionError(f"cannot resolve {host}: {error.strerror or error}") from None
    addresses = [str(info[4][0]) for info in found]
    if not addresses:
        raise ConnectionError(f"{host} has no address")
    for address in addresses:
        if refused_address(address, allowed):
            raise DestinationRefused(
                f"{host} resolves to {address}, a private, loopback or link-local address "
                "(list its network in spend.alerts.allow_private to allow it)"
            )
    return addresses[0]


def origin(url: str) -> str:
    """scheme://host:port of `url`: what logs and the audit log show of a webhook (its path may
    hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


async def post(url: str, body: bytes, headers: dict[str, str], allowed: Networks) -> int:
    """POST `body` to `url` (checked as above) and return the answer's status code (the caller
    bounds the time it takes)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    address = await checked_address(host, port, allowed)
    context = ssl.create_default_context() if tls else None
    reader, writer = await asyncio.open_connection(
        address, port, ssl=context, server_hostname=host if tls else None
    )
    try:
        name = f"[{host}]" if ":" in host else host
        head = [f"POST {target} HTTP/1.1", f"Host: {name}" + (f":{parts.port}" if parts.port else "")]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        writer.write("\r\n".join(head).encode("latin-1") + body)
        await writer.drain()
        line = await reader.readuntil(b"\n")  # the status line
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    fields = line.split(None, 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise ConnectionError("the webhook did not answer in HTTP")
    return int(fields[1])
