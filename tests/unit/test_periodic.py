"""Closing background work lets a round in progress end: a database call cancelled half-way can
leave SQLite's write lock held (see turnout/periodic.py)."""

from __future__ import annotations

import asyncio

from turnout.periodic import Periodic


async def test_closing_lets_a_round_in_progress_end_and_starts_no_other() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    rounds: list[str] = []

    async def work() -> None:
        rounds.append("started")
        started.set()
        await release.wait()
        rounds.append("ended")

    periodic = Periodic(work, 0.001, "a round that waits")
    periodic.start()
    await started.wait()
    closing = asyncio.create_task(periodic.aclose())
    await asyncio.sleep(0)  # aclose is waiting for the round
    assert not closing.done()
    release.set()
    await closing
    assert rounds == ["started", "ended"]


async def test_closing_between_rounds_returns_at_once() -> None:
    rounds: list[int] = []

    async def work() -> None:
        rounds.append(1)

    periodic = Periodic(work, 3600, "an hourly round")
    periodic.start()
    await asyncio.wait_for(periodic.aclose(), 1)
    assert rounds == []
