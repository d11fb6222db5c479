"""`turnout budgets set | list | show | delete`: a thin client of a running gateway's admin API
(/admin/budgets). Amounts go in as USD strings ("25.00") and come out in USD."""

from __future__ import annotations

from typing import Any

import click

from turnout.cli.governance import JSON_OPTION, KEY_OPTION, URL_OPTION
from turnout.cli.teams import at, request, request_all, segment, show, show_list
from turnout.domain.pricing import format_usd


def usd(micros: int | None) -> str:
    """Micro-dollars as USD, with at least cents ("10.00", "0.00125")."""
    if micros is None:
        return "-"
    whole, _, fraction = format_usd(micros).partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def describe_budget(budget: dict[str, Any]) -> str:
    if budget.get("object") == "budget.deleted":
        return f"{budget['id']}  deleted"
    line = (
        f"{budget['id']}  {budget['scope']}/{budget['subject_id']}  {budget['period']} ({budget['timezone']})"
    )
    line += f"  limit {usd(budget['limit_micros'])} USD"
    if budget.get("soft_limit_micros") is not None:
        line += f"  soft {usd(budget['soft_limit_micros'])} USD"
    if "spent_micros" in budget:
        line += f"  spent {usd(budget['spent_micros'])} USD"
        line += f"  remaining {usd(budget.get('remaining_micros'))} USD"
    if budget.get("window_end") is not None:
        line += f"  until {at(budget['window_end'])}"
    if budget.get("hard_limit_reached"):
        line += "  HARD LIMIT REACHED"
    elif budget.get("soft_limit_reached"):
        line += "  soft limit reached"
    return line


@click.group("budgets")
def budgets_group() -> None:
    """Spending budgets per key, team or user, through a running gateway's admin API."""


@budgets_group.command("set")
@URL_OPTION
@KEY_OPTION
@click.argument("scope", type=click.Choice(["key", "team", "user"]))
@click.argument("subject_id", metavar="SUBJECT")
@click.option("--limit", "limit", required=True, help="USD, e.g. 25.00: requests stop there.")
@click.option("--soft-limit", "--soft", "soft_limit", help="USD: an alert when reached.")
@click.option(
    "--period",
    type=click.Choice(["daily", "weekly", "monthly", "never"]),
    default="monthly",
    show_default=True,
    help="When the budget starts again (never: one budget for all time).",
)
@click.option(
    "--timezone", default="UTC", show_default=True, help="Where the period's days begin (Europe/Paris)."
)
@JSON_OPTION
def budgets_set(url: str, key: str | None, as_json: bool, **spec: str | None) -> None:
    """Set the budget of a key, team or user for a period (replacing that period's budget).
    SUBJECT is a key's id, a team's id or name, or a user's id or email."""
    body = {name: value for name, value in spec.items() if value is not None}
    show(request(url, key, "POST", "/admin/budgets", body), as_json, describe_budget)


@budgets_group.command("list")
@URL_OPTION
@KEY_OPTION
@click.option("--scope", type=click.Choice(["key", "team", "user"]), help="Only budgets of this scope.")
@click.option(
    "--subject",
    "subject_id",
    help="Only the budgets of this key (id), team (id or name) or user (id or email).",
)
@JSON_OPTION
def budgets_list(url: str, key: str | None, scope: str | None, subject_id: str | None, as_json: bool) -> None:
    """Budgets with their current window."""
    query = {name: value for name, value in (("scope", scope), ("subject_id", subject_id)) if value}
    show_list(request_all(url, key, "/admin/budgets", query), as_json, describe_budget, "(no budgets)")


@budgets_group.command("show")
@URL_OPTION
@KEY_OPTION
@click.argument("budget_id")
@JSON_OPTION
def budgets_show(url: str, key: str | None, budget_id: str, as_json: bool) -> None:
    """A budget and its current window."""
    show(request(url, key, "GET", f"/admin/budgets/{segment(budget_id)}"), as_json, describe_budget)


@budgets_group.command("delete")
@URL_OPTION
@KEY_OPTION
@click.argument("budget_id")
@JSON_OPTION
def budgets_delete(url: str, key: str | None, budget_id: str, as_json: bool) -> None:
    """Remove a budget."""
    show(request(url, key, "DELETE", f"/admin/budgets/{segment(budget_id)}"), as_json, describe_budget)
