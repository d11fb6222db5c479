"""Budget periods against a real database (SQLite and PostgreSQL), on a clock the test moves:
windows follow the budget's time zone (a 25-hour day across the end of daylight saving is one
window), spend resets exactly once per period however many instances share the database, the soft
limit alerts once a window, and a restart picks up the current window's spend from the ledger."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from turnout.config.settings import ModelSettings, Timeouts
from turnout.domain.chat import parse_chat_request
from turnout.domain.errors import BudgetExhausted
from turnout.domain.ledger_entry import LedgerEntry
from turnout.domain.periods import window
from turnout.domain.pricing import ModelPrice
from turnout.domain.principal import Principal
from turnout.domain.usage import Usage
from turnout.routing.catalog import Route, Target
from turnout.spend.budget_values import BudgetRule
from turnout.spend.budgets import Budgets
from turnout.spend.ledger_store import LedgerStore
from turnout.storage.database import Database
from turnout.storage.tables import budget_windows

from support.databases import opened_database

NEW_YORK = ZoneInfo("America/New_York")
# a dollar an output token, prompts free: a request with max_tokens=1 reserves exactly $1
ROUTE = Route(
    alias="paid",
    requested="paid",
    targets=(
        Target(
            provider="p",
            model="m",
            timeouts=Timeouts(),
            adapter=cast(Any, None),
            price=ModelPrice(input=Decimal(0), output=Decimal(1_000_000)),
        ),
    ),
    policy=cast(ModelSettings, None),
)
TEAM = Principal(key_id="key_a", name="a", role="member", team_id="team_red")
DOLLAR = 1_000_000


class Clock:
    def __init__(self, local: dt.datetime) -> None:
        self.now = local.astimezone(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def daily(limit: int = 3 * DOLLAR, soft: int | None = None) -> BudgetRule:
    return BudgetRule("budget_red", "team", "team_red", "daily", NEW_YORK, limit, soft)


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with opened_database(request.param, tmp_path) as database:
        yield database


async def instance(database: Database, clock: Clock) -> Budgets:
    budgets = Budgets(clock=clock)
    await budgets.load(database)
    await budgets.put(daily(soft=2 * DOLLAR))
    return budgets


REQUEST = parse_chat_request(
    {"model": "paid", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
)


async def spend_a_dollar(budgets: Budgets, who: Principal = TEAM) -> None:
    reservation = await budgets.reserve(who, ROUTE, REQUEST)
    budgets.settle(reservation, Usage(output_tokens=1), answered=True, cost=DOLLAR)


async def windows(database: Database) -> list[dt.datetime]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(budget_windows.c.window_start).order_by(budget_windows.c.window_start)
        )
        return [r.window_start.replace(tzinfo=dt.UTC) for r in rows]


async def test_spend_resets_once_a_local_day_whatever_the_number_of_instances(database: Database) -> None:
    clock = Clock(dt.datetime(2026, 10, 31, 9, 0, tzinfo=NEW_YORK))
    a, b = await instance(database, clock), await instance(database, clock)  # two gateways, one store
    days = []
    for _ in range(3):  # Oct 31; Nov 1, 25 hours long (clocks go back); Nov 2
        for budgets in (a, b):
            for _ in range(3):
                await spend_a_dollar(budgets)
            with pytest.raises(BudgetExhausted, match="team 'team_red' daily budget"):
                await budgets.reserve(TEAM, ROUTE, REQUEST)  # $3 a day, spent
        days.append(a.windows["budget_red"].start)
        assert b.windows["budget_red"].start == days[-1]
        clock.now += dt.timedelta(hours=24)  # the same hour tomorrow: a new window, at zero
    await a.aclose()
    await b.aclose()
    assert [d.astimezone(NEW_YORK) for d in days] == [
        dt.datetime(2026, 10, 31, tzinfo=NEW_YORK),
        dt.datetime(2026, 11, 1, tzinfo=NEW_YORK),
        dt.datetime(2026, 11, 2, tzinfo=NEW_YORK),
    ]
    assert days[1] - days[0] == dt.timedelta(hours=24) and days[2] - days[1] == dt.timedelta(hours=25)
    assert await windows(database) == days  # one row — one reset — per day, for both instances


async def test_the_soft_limit_alerts_once_a_window_across_instances(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(dt.datetime(2026, 12, 1, 9, 0, tzinfo=NEW_YORK))
    a, b = await instance(database, clock), await instance(database, clock)
    with caplog.at_level(logging.WARNING, logger="turnout.budgets"):
        for budgets in (a, b, a, b):  # both cross the $2 soft limit ($1 each, then $2 each)
            await spend_a_dollar(budgets)
        await a.aclose()
        await b.aclose()
        alerts = [r for r in caplog.records if "soft limit" in r.getMessage()]
        assert len(alerts) == 1 and a.soft_limit_alerts + b.soft_limit_alerts == 1
        clock.now += dt.timedelta(days=1)
        await spend_a_dollar(a)
        await spend_a_dollar(a)  # a new window: a new alert
        await a.aclose()
        assert len([r for r in caplog.records if "soft limit" in r.getMessage()]) == 2
    assert (await a.status(daily(soft=2 * DOLLAR)))["soft_limit_reached"] is True


async def test_a_restart_reads_the_current_windows_spend_from_the_ledger(database: Database) -> None:
    clock = Clock(dt.datetime(2026, 12, 1, 9, 0, tzinfo=NEW_YORK))
    start, _ = window("daily", NEW_YORK, clock.now)
    store = LedgerStore(database)

    def entry(request_id: str, at: dt.datetime, cost: int) -> LedgerEntry:
        return LedgerEntry(
            request_id=request_id,
            at=at.timestamp(),
            api="chat",
            key_id="k",
            team_id="team_red",
            cost_micros=cost,
        )

    await store.insert(
        [
            entry("yesterday", start - dt.timedelta(minutes=1), 5 * DOLLAR),  # another window
            entry("today-1", start, DOLLAR),
            entry("today-2", clock.now, DOLLAR),
        ]
    )
    budgets = await instance(database, clock)
    assert (await budgets.status(daily()))["spent_micros"] == 2 * DOLLAR
    await spend_a_dollar(budgets)
    with pytest.raises(BudgetExhausted):
        await budgets.reserve(TEAM, ROUTE, REQUEST)
    await budgets.aclose()


async def test_a_key_in_a_team_is_held_by_the_tightest_of_its_budgets(database: Database) -> None:
    clock = Clock(dt.datetime(2026, 12, 1, 9, 0, tzinfo=NEW_YORK))
    budgets = await instance(database, clock)  # the team: $3 a day
    await budgets.put(BudgetRule("budget_bob", "user", "user_bob", "monthly", NEW_YORK, DOLLAR))
    bob = Principal(key_id="key_b", name="b", role="member", team_id="team_red", user_id="user_bob")
    await spend_a_dollar(budgets)  # key_a (not Bob): the team's budget only
    reservation = await budgets.reserve(bob, ROUTE, REQUEST)
    with pytest.raises(BudgetExhausted, match="user 'user_bob' monthly"):
        await budgets.reserve(bob, ROUTE, REQUEST)  # Bob's $1 is reserved in full
    budgets.settle(reservation, None, answered=False)  # failed: released
    await spend_a_dollar(budgets)
    assert (await budgets.status(daily()))["spent_micros"] == 2 * DOLLAR
    assert (await budgets.status(daily()))["reserved_micros"] == 0
    await budgets.aclose()
