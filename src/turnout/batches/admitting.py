"""A batch's creation admitted like a request: one request against the rate limits of the key, its
team, its user and the alias (rpm, rpd, parallel; its tokens count when it is accounted, not
against a per-minute window), then its most reserved in the budgets."""

from __future__ import annotations

from turnout.domain.pricing import Micros
from turnout.domain.principal import Principal
from turnout.limits.admission import Admission, Ticket
from turnout.routing.catalog import Route
from turnout.spend.budget_values import Reservation
from turnout.spend.budgets import Budgets


async def admit(
    admission: Admission, budgets: Budgets, principal: Principal, route: Route, amount: Micros
) -> tuple[Ticket, Reservation]:
    """The creation's rate-limit ticket (settle it once the provider has answered) and its budget
    reservation; either refusal gives back what was taken."""
    ticket = admission.admit(principal, route)
    try:
        if ticket.pending:
            await admission.confirm(ticket)
        return ticket, await budgets.reserve(principal, route, amount=amount)
    except BaseException:
        ticket.release()
        raise
