"""The admin API's routes: paths with `{name}` segments, matched segment by segment, each with the
handler that serves it and what the OpenAPI schema says of it.

Every admin route is authenticated here, before its handler runs and before any of its body is
read: the caller is the key's CURRENT state, read from the store (a key revoked or lowered on
another instance a moment ago is already what it is now), and the handler receives it. Bodies are
small: at most `MAX_BODY` bytes (413 beyond).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from turnout.domain.errors import MethodNotAllowed, PermissionDenied
from turnout.domain.path_patterns import match_segments
from turnout.domain.principal import Principal
from turnout.server.exchange import Exchange

READS = ("GET", "HEAD")  # the only methods a viewer's key may call the admin API with

AdminHandler = Callable[..., Awaitable[None]]  # (exchange, caller, *path parameters)
Authenticate = Callable[[Exchange], Awaitable[Principal]]
Resolve = Callable[[str], Awaitable[str | None]]  # a path parameter as given -> the id it names

MAX_BODY = 1024 * 1024  # an admin request's body (a preset's system prompt is the largest)


@dataclass(frozen=True, slots=True)
class AdminRoute:
    method: str
    path: str  # /admin/teams/{team_id}/members
    handler: AdminHandler
    summary: str
    body: type[msgspec.Struct] | None = None
    query: tuple[str, ...] = ()  # query parameters it reads
    tag: str = "admin"
    pending: bool = False  # may answer 202 with an action waiting for a second admin
    admin_only: bool = False  # owners, admins and (reading) viewers only (others: 403 first)

    @property
    def segments(self) -> list[str]:
        return self.path.strip("/").split("/")


class AdminRouter:
    def __init__(self, authenticate: Authenticate, resolve: dict[str, Resolve] | None = None) -> None:
        self.routes: list[AdminRoute] = []
        self.authenticate = authenticate
        self.resolve = resolve or {}  # by parameter name: team_id and user_id accept names too

    def add(
        self,
        method: str,
        path: str,
        handler: AdminHandler,
        summary: str,
        *,
        body: type[msgspec.Struct] | None = None,
        query: tuple[str, ...] = (),
        tag: str = "admin",
        pending: bool = False,
        admin_only: bool = False,
    ) -> None:
        self.routes.append(AdminRoute(method, path, handler, summary, body, query, tag, pending, admin_only))

    async def dispatch(self, path: str, method: str, x: Exchange) -> bool:
        """Serve `path` if it is an admin route (False if it is not one)."""
        parts = path.strip("/").split("/")
        allowed: list[str] = []
        for route in self.routes:
            params = match_segments(route.segments, parts)
            if params is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            x.max_body = min(x.max_body, MAX_BODY)
            caller = await self.authenticate(x)
            if caller.read_only and method not in READS:
                raise PermissionDenied("A viewer's key reads only: it cannot change anything.")
            if route.admin_only and not (caller.is_admin or caller.read_only):
                raise PermissionDenied("This part of the admin API is for owners, admins and viewers.")
            for i, name in enumerate(s[1:-1] for s in route.segments if s.startswith("{")):
                if name in self.resolve:
                    params[i] = await self.resolve[name](params[i]) or params[i]
            await route.handler(x, caller, *params)
            return True
        if allowed:
            raise MethodNotAllowed(f"{method} is not allowed on {path}.", allowed=tuple(allowed))
        return False
