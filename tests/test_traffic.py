"""The console's figures read from the running totals, on SQLite and PostgreSQL: the overview's
traffic (every bucket of the last hour, day and 30 days, today and this month, all teams' or one
team's) and each preset's earnings equal what the ledger's rows sum to."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from turnout.domain.ledger_entry import LedgerEntry
from turnout.spend.ledger_store import LedgerStore
from turnout.spend.preset_earnings import preset_earnings
from turnout.spend.traffic import FIGURES, WINDOWS, traffic
from turnout.storage.database import Database
from turnout.storage.rollups import GRAINS

from support.databases import opened_database
from support.totals import NOW, insert_in_batches, requests_over

BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with opened_database(request.param, tmp_path) as database:
        yield database


def summed(requests: list[list[LedgerEntry]], start: float, end: float, team: str | None) -> dict[str, int]:
    """The figures of the requests that arrived in [start, end), summed from their rows."""
    out = dict.fromkeys(FIGURES, 0)
    for rows in requests:
        head = rows[0]
        if not start <= head.at < end or (team is not None and head.team_id != team):
            continue
        out["requests"] += 1
        out["failed"] += all(r.status >= 400 for r in rows)
        for r in rows:
            out["input_tokens"] += r.input_tokens
            out["output_tokens"] += r.output_tokens
            out["cost_micros"] += r.cost_micros or 0
            out["customer_price_micros"] += r.customer_price_micros or 0
    return out


@pytest.mark.parametrize("team", [None, "red"])
async def test_the_overview_s_figures_are_what_the_rows_sum_to(database: Database, team: str | None) -> None:
    recent = [  # some in the last hour, under ids of their own
        [msgspec.structs.replace(r, request_id="recent-" + r.request_id) for r in rows]
        for rows in requests_over(0.05, 200, seed=5)
    ]
    requests = requests_over(40, 2500) + recent
    await insert_in_batches(LedgerStore(database), requests)
    got = await traffic(database, team, NOW)
    for window, (grain, count) in WINDOWS.items():
        points = got.series[window]
        assert len(points) == count
        assert points[-1].bucket <= NOW < points[-1].bucket + dt.timedelta(seconds=GRAINS[grain])
        for point in points:
            start = point.bucket.timestamp()
            assert point.figures == summed(requests, start, start + GRAINS[grain], team), (window, point)
    today = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    end = today.timestamp() + 86400
    assert got.today.figures == summed(requests, today.timestamp(), end, team)
    assert got.month.figures == summed(requests, month.timestamp(), end, team)
    assert got.month.figures["requests"] > got.today.figures["requests"] > 0
    assert sum(p.figures["failed"] for p in got.series["month"]) > 0


async def test_each_preset_s_earnings_are_what_its_rows_sum_to(database: Database) -> None:
    requests = requests_over(40, 2500)
    await insert_in_batches(LedgerStore(database), requests)
    month = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    expected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for rows in requests:
        for r in rows:
            if r.preset is None:
                continue
            for span in ("all", "month") if r.at >= month else ("all",):
                expected[span]["customer_price_micros"] += r.customer_price_micros or 0
                expected[span]["revenue_share_micros"] += r.revenue_share_micros or 0
        if any(r.preset for r in rows):
            for span in ("all", "month") if rows[0].at >= month else ("all",):
                expected[span]["requests"] += 1
    got = await preset_earnings(database, ["helper", "nobody"], NOW)
    assert set(got) == {"helper"}
    assert got["helper"] == {span: dict(figures) for span, figures in expected.items()}
    assert got["helper"]["month"]["revenue_share_micros"] > 0
    assert await preset_earnings(database, [], NOW) == {}
