"""The console's pages: each reads or changes through the services the admin API uses, as the
signed-in key (`Visit.caller`), so what a page shows and what a form may do is exactly what that
key may see and do through the API — a team's admin sees their team's keys only, and a key of
another team is "not found" here as it is there."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast, get_args

from turnout.app import Services
from turnout.config.units import parse_duration
from turnout.console.rendering import Renderer
from turnout.console.web import Request, Response, redirect
from turnout.domain.errors import InvalidRequest, ResourceNotFound
from turnout.domain.key_policy import KeySpec
from turnout.domain.principal import Principal, Role
from turnout.storage.paging import Paging
from turnout.teams.names import Names

PAGE_SIZE = 50
ROLES = get_args(Role)
STATUSES = ("pending", "approving", "approved", "rejected", "expired", "failed", "cancelled")
AUDIT_FILTERS = ("action", "actor_person", "actor_key_id", "target_type", "target_id", "team_id")


@dataclass(frozen=True, slots=True)
class Visit:
    """One request's signed-in caller (its key as it is now) and its session's CSRF token."""

    caller: Principal
    csrf: str
    request_id: str


def _role(value: str | None) -> Role:
    if value not in ROLES:
        raise InvalidRequest(f"'role' must be one of {', '.join(ROLES)}.", param="role")
    return cast("Role", value)


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"'{name}' must be a date or time such as 2026-12-01 or 2026-12-01T09:30."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Pages:
    def __init__(
        self, services: Services, renderer: Renderer, deployments: Callable[[], list[dict[str, object]]]
    ) -> None:
        self.s = services
        self.r = renderer
        self.names = Names(services.database)
        self.deployments = deployments

    def page(self, template: str, visit: Visit, **context: Any) -> Response:
        return self.r.page(template, 200, caller=visit.caller, csrf=visit.csrf, **context)

    def _paging(self, request: Request) -> Paging:
        return Paging(PAGE_SIZE, request.text("after", 1000))

    # ------------------------------------------------------------------ keys

    async def keys(self, request: Request, visit: Visit) -> Response:
        search = request.text("q")
        keys, page = await self.s.key_service.list(visit.caller, self._paging(request), search=search)
        teams, _ = await self.s.directory.list_teams(visit.caller, Paging(200, None))
        return self.page(
            "keys.html",
            visit,
            keys=keys,
            next_cursor=page.next_cursor,
            q=search or "",
            teams=teams,
            roles=ROLES,
        )

    async def create_key(self, request: Request, visit: Visit) -> Response:
        name = request.text("name")
        if name is None:
            raise InvalidRequest("A key needs a name (1-200 characters).", param="name")
        expires = request.text("expires_in", 20)
        try:
            expires_at = None if expires is None else time.time() + parse_duration(expires)
        except ValueError as error:
            raise InvalidRequest(str(error), param="expires_in") from None
        models = request.text("models", 4000)
        spec = KeySpec(
            name=name,
            role=_role(request.text("role") or "member"),
            team_id=await self.names.team(request.text("team")),
            user_id=await self.names.user(request.text("user", 320)),
            allowed_models=None
            if models is None
            else tuple(m.strip() for m in models.split(",") if m.strip()),
            expires_at=expires_at,
        )
        key, described = await self.s.key_service.issue(visit.caller, spec, request_id=visit.request_id)
        return self.page("key_created.html", visit, key=key, described=described)

    async def revoke_key(self, request: Request, visit: Visit, key_id: str) -> Response:
        result = await self.s.key_service.revoke(visit.caller, key_id, visit.request_id)
        return self._after_change(result, "/keys")

    def _after_change(self, result: dict[str, Any], back: str) -> Response:
        """Back to the list, or to the pending action when the change waits for a second admin."""
        if result.get("object") == "pending_action":
            return redirect(f"{self.r.root}/approvals/{result['id']}")
        return redirect(self.r.root + back)

    # ------------------------------------------------------------------ teams and users

    async def teams(self, request: Request, visit: Visit) -> Response:
        teams, page = await self.s.directory.list_teams(visit.caller, self._paging(request))
        return self.page("teams.html", visit, teams=teams, next_cursor=page.next_cursor)

    async def create_team(self, request: Request, visit: Visit) -> Response:
        name = request.text("name")
        if name is None:
            raise InvalidRequest("A team needs a name (1-200 characters).", param="name")
        if name.startswith("team_"):
            raise InvalidRequest("A team's name cannot start with 'team_'.", param="name")
        team = await self.s.directory.create_team(visit.caller, name, None, visit.request_id)
        return redirect(f"{self.r.root}/teams/{team['id']}")

    async def team(self, request: Request, visit: Visit, team_id: str) -> Response:
        team = await self.s.directory.get_team(visit.caller, await self.names.team(team_id) or team_id)
        return self.page("team.html", visit, team=team, roles=ROLES)

    async def add_member(self, request: Request, visit: Visit, team_id: str) -> Response:
        team_id = await self.names.team(team_id) or team_id
        user = request.text("user", 320)
        if user is None:
            raise InvalidRequest("Name the user by email or id.", param="user")
        user_id = await self.names.user(user) or user
        role = _role(request.text("role") or "member")
        result = await self.s.directory.set_role(visit.caller, user_id, team_id, role, visit.request_id)
        return self._after_change(result, f"/teams/{team_id}")

    async def users(self, request: Request, visit: Visit) -> Response:
        users, page = await self.s.directory.list_users(visit.caller, self._paging(request))
        return self.page("users.html", visit, users=users, next_cursor=page.next_cursor, roles=ROLES)

    async def create_user(self, request: Request, visit: Visit) -> Response:
        email = request.text("email", 320)
        if email is None or "@" not in email:
            raise InvalidRequest("'email' must be an email address.", param="email")
        role = _role(request.text("role") or "member")
        user = await self.s.directory.create_user(
            visit.caller, email, request.text("name"), role, visit.request_id
        )
        return self._after_change(user.get("pending_action") or user, "/users")

    # ------------------------------------------------------------------ governance

    async def audit(self, request: Request, visit: Visit) -> Response:
        filters = {name: request.text(name) for name in AUDIT_FILTERS}
        since, until = request.text("since", 40), request.text("until", 40)
        events, page = await self.s.audit.page(
            visit.caller,
            action=filters["action"],
            actor_key_id=filters["actor_key_id"],
            actor_person=filters["actor_person"],
            target_type=filters["target_type"],
            target_id=filters["target_id"],
            team_id=filters["team_id"],
            since=_when(since, "since"),
            until=_when(until, "until"),
            limit=PAGE_SIZE,
            after=request.text("after", 1000),
        )
        shown = {**{k: v or "" for k, v in filters.items()}, "since": since or "", "until": until or ""}
        return self.page("audit.html", visit, events=events, next_cursor=page.next_cursor, filters=shown)

    async def approvals(self, request: Request, visit: Visit) -> Response:
        shown = request.text("status") or "pending"
        actions, page = await self.s.approvals.page(
            visit.caller,
            None if shown == "all" else shown,
            limit=PAGE_SIZE,
            after=request.text("after", 1000),
        )
        return self.page(
            "approvals.html",
            visit,
            actions=actions,
            next_cursor=page.next_cursor,
            shown_status=shown,
            statuses=(*STATUSES, "all"),
        )

    async def approval(self, request: Request, visit: Visit, action_id: str) -> Response:
        action = await self.s.approvals.get(visit.caller, action_id)
        return self.page("approval.html", visit, action=action, before=await self._before(visit, action))

    async def _before(self, visit: Visit, action: dict[str, Any]) -> Any:
        """What the action's target is now (None when it is gone or is not a key or a team)."""
        target, target_id = action["target_type"], action["target_id"]
        try:
            if target == "key" and target_id:
                return await self.s.key_service.get(visit.caller, target_id)
            if target == "team" and target_id:
                return await self.s.directory.get_team(visit.caller, target_id)
        except ResourceNotFound:
            return None
        return None

    async def approve(self, request: Request, visit: Visit, action_id: str) -> Response:
        await self.s.approvals.approve(visit.caller, action_id, visit.request_id)
        return redirect(f"{self.r.root}/approvals/{action_id}")

    async def reject(self, request: Request, visit: Visit, action_id: str) -> Response:
        await self.s.approvals.reject(visit.caller, action_id, visit.request_id)
        return redirect(f"{self.r.root}/approvals/{action_id}")

    # ------------------------------------------------------------------ providers

    async def providers(self, request: Request, visit: Visit) -> Response:
        providers = await self.s.provider_control.list(visit.caller)  # the organisation's admins only
        return self.page("providers.html", visit, providers=providers, deployments=self.deployments())
