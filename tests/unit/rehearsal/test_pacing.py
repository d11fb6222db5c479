"""The replay's rate bound, on a fake clock: starts are spaced 1/rate apart; a late start does
not let the next ones bunch up."""

from __future__ import annotations

import asyncio

from turnout.rehearsal.pacing import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_starts_are_spaced_by_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(4.0, clock, clock.sleep)
    starts = []

    async def run() -> None:
        for _ in range(5):
            await pacer.wait()
            starts.append(clock.now - 100.0)

    asyncio.run(run())
    assert starts == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_late_start_does_not_let_the_next_ones_catch_up() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, clock, clock.sleep)
    starts = []

    async def run() -> None:
        await pacer.wait()
        starts.append(clock.now)
        clock.now += 3.0  # the requests in flight held the next start back (parallel bound)
        for _ in range(2):
            await pacer.wait()
            starts.append(clock.now)

    asyncio.run(run())
    assert [s - 100.0 for s in starts] == [0.0, 3.0, 3.5]
