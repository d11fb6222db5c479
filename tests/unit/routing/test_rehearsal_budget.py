"""A mirror's rehearsal budget (routing/mirror.py): no shadow before the window's spend has been
read; the ledger's figure or this instance's own count, whichever is higher; a new window starts
from nothing (and waits for its own read)."""

from __future__ import annotations

import asyncio
import datetime as dt

from turnout.config.settings import MirrorSettings, TargetSettings, Timeouts
from turnout.routing.mirror import RehearsalBudget

DAY = 86_400.0
MIDNIGHT = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()


def budget(clock: list[float]) -> RehearsalBudget:
    settings = MirrorSettings(
        target=TargetSettings(provider="p", model="m", timeouts=Timeouts()), share=1.0, budget=1_000
    )
    return RehearsalBudget(settings, clock=lambda: clock[0])


def test_the_budget_counts_the_ledger_and_its_own_shadows_window_by_window() -> None:
    now = [MIDNIGHT + 3600]
    b = budget(now)
    figures = {"ledger": 400}
    asked: list[dt.datetime] = []

    async def spent_since(alias: str, since: dt.datetime) -> int:
        asked.append(since)
        return figures["ledger"]

    assert not b.allows()  # nothing read yet: no shadow
    asyncio.run(b.refresh("chat", spent_since))
    assert asked == [dt.datetime(2026, 3, 1, tzinfo=dt.UTC)] and b.allows()
    b.add(500)
    assert b.spent == 900 and b.allows()
    figures["ledger"] = 950  # another instance's shadows reached the ledger
    asyncio.run(b.refresh("chat", spent_since))
    assert b.spent == 950 and b.allows()
    b.add(100)
    assert b.spent == 1_000 and not b.allows()  # spent: no more shadows today
    now[0] += DAY  # the next day
    assert not b.allows()  # until its own figure is read
    figures["ledger"] = 0
    asyncio.run(b.refresh("chat", spent_since))
    assert b.spent == 0 and b.allows()
