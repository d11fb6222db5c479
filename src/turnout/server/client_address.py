"""Who is the client? The socket peer; or, when the peer is a trusted proxy, the right-most address of
the forwarded chain that is not a trusted proxy (the first one a proxy of ours wrote down)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ForwardedHeader = Literal["x-forwarded-for", "forwarded"]
MAX_VERDICTS = 4096  # addresses whose verdict is remembered (then forgotten all at once)


class ClientAddresses:
    def __init__(self, trusted: Sequence[Network], header: ForwardedHeader = "x-forwarded-for") -> None:
        self.trusted = tuple(trusted)
        self.header = header.encode()
        self._verdicts: dict[str, bool] = {}  # address → trusted? (parsing one takes microseconds)

    def of(self, scope: Mapping[str, Any]) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        if not self.trusted or not self._is_trusted(peer):
            return peer  # a client's own forwarded headers are never believed
        hops = self._hops(scope["headers"])
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer  # every hop is a proxy of ours: the farthest one

    def _hops(self, headers: Sequence[tuple[bytes, bytes]]) -> list[str]:
        """The chain the proxies wrote, client first (several headers read as one, in order)."""
        parts = [bytes(v).decode("latin-1") for k, v in headers if k == self.header]
        hops = []
        for element in ",".join(parts).split(","):
            if self.header == b"forwarded":
                element = next(
                    (p.split("=", 1)[1] for p in element.split(";") if p.strip().lower().startswith("for=")),
                    "",
                )
            hop = _address(element)
            if hop:
                hops.append(hop)
        return hops

    def _is_trusted(self, address: str) -> bool:
        trusted = self._verdicts.get(address)
        if trusted is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                trusted = False
            else:
                trusted = any(ip in network for network in self.trusted)
            if len(self._verdicts) >= MAX_VERDICTS:
                self._verdicts.clear()
            self._verdicts[address] = trusted
        return trusted


def _address(value: str) -> str:
    """`203.0.113.7`, `"[2001:db8::1]:4711"`, `198.51.100.2:8080` → the address alone."""
    value = value.strip().strip('"').strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:  # IPv4 with a port (an IPv6 address has several colons)
        return value.split(":", 1)[0]
    return value
