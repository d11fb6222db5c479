"""The console's page of one key: its attributes, a form to change its name, models, expiry and
budget, and a form to rotate it (the new key shown once; the old one works for the grace period).
Through `KeyService.update` and `KeyService.rotate` as `PATCH /admin/keys/{id}` and
`POST /admin/keys/{id}/rotate` go, so the same rules hold: a team's admin manages their team's keys
only, and a budget the organisation set is not lifted from below."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from turnout.app import Services
from turnout.config.units import parse_delay, parse_duration
from turnout.console.pages import Visit
from turnout.console.rendering import Renderer
from turnout.console.web import Request, Response, redirect
from turnout.domain.amounts import usd
from turnout.domain.errors import InvalidRequest


def _models(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated list of models; empty: every model."""
    if text is None:
        return None
    models = tuple(m.strip() for m in text.split(",") if m.strip())
    return models or None


def _dollars(micros: int | None) -> str:
    """Micro-dollars as the form shows them ("25.00"; exact to the micro-dollar)."""
    if micros is None:
        return ""
    whole, part = divmod(micros, 1_000_000)
    cents = f"{part:06d}".rstrip("0")
    return f"{whole}.{cents.ljust(2, '0')}"


class KeyPages:
    def __init__(self, services: Services, renderer: Renderer) -> None:
        self.s = services
        self.r = renderer

    async def key(self, request: Request, visit: Visit, key_id: str) -> Response:
        key = await self.s.key_service.get(visit.caller, key_id)
        return self.r.page(
            "key.html",
            caller=visit.caller,
            csrf=visit.csrf,
            key=key,
            models=", ".join(key["models"] or ()),
            budget=_dollars(key["max_budget_micros"]),
        )

    async def update_key(self, request: Request, visit: Visit, key_id: str) -> Response:
        """Only what the form changed is sent: an unchanged field is left as it is (so a team's
        admin saving a key whose budget the organisation set changes the rest, not the budget)."""
        now = await self.s.key_service.get(visit.caller, key_id)
        changes: dict[str, Any] = {}
        name = request.text("name")
        if name is None:
            raise InvalidRequest("A key needs a name (1-200 characters).", param="name")
        if name != now["name"]:
            changes["name"] = name
        models = _models(request.text("models", 4000))
        if models != (None if now["models"] is None else tuple(now["models"])):
            changes["allowed_models"] = models
        if request.text("never_expires", 10) is not None:
            if now["expires_at"] is not None:
                changes["expires_at"] = None
        elif (expires := request.text("expires_in", 20)) is not None:
            try:
                changes["expires_at"] = time.time() + parse_duration(expires)
            except ValueError as error:
                raise InvalidRequest(str(error), param="expires_in") from None
        budget = request.text("max_budget", 40)
        micros = None if budget is None else usd(budget, "max_budget", zero=True)
        if micros != now["max_budget_micros"]:
            changes["max_budget_micros"] = micros
        if changes:
            result = await self.s.key_service.update(
                visit.caller, key_id, changes, msgspec.UNSET, msgspec.UNSET, visit.request_id
            )
            if result.get("object") == "pending_action":
                return redirect(f"{self.r.root}/approvals/{result['id']}")
        return redirect(f"{self.r.root}/keys/{key_id}")

    async def rotate_key(self, request: Request, visit: Visit, key_id: str) -> Response:
        try:
            grace = parse_delay(request.text("grace", 20) or "0s")
        except ValueError as error:
            raise InvalidRequest(str(error), param="grace") from None
        key, described = await self.s.key_service.rotate(visit.caller, key_id, grace, visit.request_id)
        return self.r.page(
            "key_created.html",
            caller=visit.caller,
            csrf=visit.csrf,
            key=key,
            described=described,
            rotated=True,
        )
