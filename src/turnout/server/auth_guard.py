"""The edge's guard against key guessing: counts the failed authentications of each client address
(`limits.auth_failures`) and refuses an address over its limit before its key is looked at."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from turnout.config.settings import Settings
from turnout.limits.auth_failures import AuthFailures
from turnout.server.client_address import ClientAddresses


class AuthGuard:
    __slots__ = ("addresses", "failures")

    def __init__(self, failures: AuthFailures, addresses: ClientAddresses) -> None:
        self.failures = failures
        self.addresses = addresses

    @classmethod
    def of(cls, settings: Settings) -> AuthGuard | None:
        """The guard `auth.failed_attempts` and `server.trusted_proxies` ask for (None: off)."""
        limits = settings.auth.failed_attempts
        if limits.limit == 0:
            return None
        server = settings.server
        addresses = ClientAddresses(server.trusted_proxies, server.forwarded_header)
        return cls(AuthFailures(limits.limit, limits.window), addresses)

    def check(self, scope: Mapping[str, Any]) -> None:
        """Refuse the request (429) if its client is over the limit."""
        if self.failures:  # with no failures anywhere the client's address is not even worked out
            self.failures.check(self.addresses.of(scope))

    def failed(self, scope: Mapping[str, Any]) -> None:
        self.failures.failed(self.addresses.of(scope))
