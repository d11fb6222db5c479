"""A budget, its window and a request's reservation in them: the values `Budgets` keeps and
the shared counters (spend/budget_sharing.py) are keyed by."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

from turnout.domain.periods import Period
from turnout.domain.pricing import Micros
from turnout.domain.principal import Principal
from turnout.spend.request_bound import RequestBound

Scope = Literal["key", "team", "user"]
SCOPES: tuple[Scope, ...] = ("key", "team", "user")


@dataclass(frozen=True, slots=True)
class BudgetRule:
    id: str
    scope: Scope
    subject_id: str
    period: Period
    tz: ZoneInfo
    limit: Micros
    soft_limit: Micros | None = None
    stored: bool = True  # in the budgets table; False: a key's own max_budget (no window rows)

    @property
    def label(self) -> str:
        span = "" if self.period == "never" else f" {self.period}"
        return f"{self.scope} '{self.subject_id}'{span}"


@dataclass(slots=True)
class Window:
    start: dt.datetime
    end: dt.datetime | None
    spent: Micros = 0
    reserved: Micros = 0
    soft_reached: bool = False
    hard_reached: bool = False
    share_of: int = 1  # the most instances seen sharing it without Redis (each enforces 1/n)
    key: str = ""  # its counters' key in Redis, once known (spend/budget_sharing.counter_key)


@dataclass(slots=True, eq=False)
class Reservation:
    principal: Principal
    alias: str
    amount: Micros = 0
    held: list[tuple[BudgetRule, Window]] = field(default_factory=list)  # reserved in
    shared: bool = False  # in the instances' shared counters (Redis), not this instance's only
    rid: str = ""  # its id among the reservations in Redis
    bound: RequestBound | None = None  # how its amount was bounded (and can be counted exactly)


__all__ = ["SCOPES", "BudgetRule", "Reservation", "Scope", "Window"]
