"""The console's budgets page: the budgets the signed-in key may see (as `GET /admin/budgets`
lists them), each with its current window's use as a bar and its soft limit marked; a form to set
one and a button to remove one, through `BudgetService` as the admin API does — so a team's admin
sees their team's budgets only, and sets or removes their team's keys' budgets only."""

from __future__ import annotations

from typing import Any, cast, get_args

from turnout.app import Services
from turnout.console.pages import PAGE_SIZE, Visit
from turnout.console.rendering import Renderer
from turnout.console.web import Request, Response, redirect
from turnout.domain.amounts import usd
from turnout.domain.errors import InvalidRequest
from turnout.domain.periods import Period
from turnout.spend.budget_values import SCOPES
from turnout.storage.paging import Paging
from turnout.teams.names import Names

PERIODS: tuple[str, ...] = get_args(Period)


def _percent(part: int, whole: int) -> int:
    """`part` of `whole` in whole percent, within 0-100 (a bar cannot overflow its track)."""
    return 0 if whole <= 0 else max(0, min(100, round(part * 100 / whole)))


def shown(budget: dict[str, Any]) -> dict[str, Any]:
    """A budget as the page draws it: its use (spent and reserved) and soft limit in percent of
    its limit, for the bar's attributes (the CSP allows no inline style)."""
    limit = int(budget["limit_micros"])
    used = int(budget["spent_micros"]) + int(budget["reserved_micros"])
    soft = budget["soft_limit_micros"]
    return {
        **budget,
        "used_micros": used,
        "used_percent": _percent(used, limit),
        "soft_percent": None if soft is None else _percent(int(soft), limit),
        # spent to the limit: the next request that costs anything is refused
        "at_limit": bool(budget["hard_limit_reached"]) or used >= limit,
    }


class BudgetPages:
    def __init__(self, services: Services, renderer: Renderer) -> None:
        self.s = services
        self.r = renderer
        self.names = Names(services.database)

    async def _subject(self, scope: str, subject: str) -> str:
        """A team's budget may name the team, a user's the user's email (as in the admin API)."""
        if scope == "team":
            return await self.names.team(subject) or subject
        if scope == "user":
            return await self.names.user(subject) or subject
        return subject

    async def budgets(self, request: Request, visit: Visit) -> Response:
        scope = request.text("scope")
        if scope is not None and scope not in SCOPES:
            raise InvalidRequest("'scope' must be key, team or user.", param="scope")
        subject = request.text("subject", 320)
        if subject is not None and scope is None:
            raise InvalidRequest("Name the scope (key, team or user) of the subject.", param="scope")
        subject_id = None if subject is None or scope is None else await self._subject(scope, subject)
        budgets, page = await self.s.budget_service.list(
            visit.caller, scope, subject_id, Paging(PAGE_SIZE, request.text("after", 1000))
        )
        wanted: dict[str, set[str]] = {}
        for budget in budgets:
            wanted.setdefault(budget["scope"], set()).add(budget["subject_id"])
        return self.r.page(
            "budgets.html",
            labels=await self.names.labels(wanted),
            caller=visit.caller,
            csrf=visit.csrf,
            budgets=[shown(b) for b in budgets],
            next_cursor=page.next_cursor,
            scope=scope or "",
            subject=subject or "",
            scopes=SCOPES,
            periods=PERIODS,
        )

    async def set_budget(self, request: Request, visit: Visit) -> Response:
        scope = request.text("scope")
        if scope not in SCOPES:
            raise InvalidRequest("'scope' must be key, team or user.", param="scope")
        subject = request.text("subject", 320)
        if subject is None:
            raise InvalidRequest(
                "Name the key (id), team or user (email) the budget is for.", param="subject"
            )
        period = request.text("period") or "monthly"
        if period not in PERIODS:
            raise InvalidRequest(f"'period' must be one of {', '.join(PERIODS)}.", param="period")
        limit = request.text("limit", 40)
        if limit is None:
            raise InvalidRequest("A budget needs a limit in USD, such as 100.00.", param="limit")
        soft = request.text("soft_limit", 40)
        await self.s.budget_service.set(
            visit.caller,
            scope,
            await self._subject(scope, subject),
            cast("Period", period),
            request.text("timezone", 64) or "UTC",
            usd(limit, "limit"),
            None if soft is None else usd(soft, "soft_limit"),
            visit.request_id,
        )
        return redirect(f"{self.r.root}/budgets")

    async def delete_budget(self, request: Request, visit: Visit, budget_id: str) -> Response:
        await self.s.budget_service.delete(visit.caller, budget_id, visit.request_id)
        return redirect(f"{self.r.root}/budgets")
