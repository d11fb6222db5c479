"""The spend API's figures, on SQLite and PostgreSQL: for any span, any dimensions grouped by and
filtered on, totals or an hour/day series, they equal what the ledger's rows sum to (computed here
in Python from the rows written), requests counted once per group even when a request's attempts
went to several models, deployments and providers; and the totals by every dimension that the
ledger writer adds batch by batch equal what the migration's backfill computes from the rows."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from turnout.domain.errors import InvalidRequest
from turnout.domain.ledger_entry import LedgerEntry
from turnout.spend.explorer import FIGURES, SpendQuery, spend_over
from turnout.spend.ledger_store import LedgerStore
from turnout.spend.report import rows_report, spend_report
from turnout.spend.retention import LedgerRetention
from turnout.storage.cube import CUBE_DIMS, backfill_cube
from turnout.storage.database import Database
from turnout.storage.rollups import DIMS, floor_to
from turnout.storage.tables import spend_cube, spend_rollups, totals_horizon
from turnout.storage.times import as_utc

from support.databases import opened_database
from support.totals import NOW, insert_in_batches, requests_over

BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
PROVIDER = {"east": "openai", "west": "azure"}


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with opened_database(request.param, tmp_path) as database:
        yield database


def workload() -> list[list[LedgerEntry]]:
    """The shared test ledger, with providers; a request's preset is its own (every row's, as
    the pipeline writes them)."""
    return [
        [
            msgspec.structs.replace(
                e,
                provider=PROVIDER.get(e.deployment or ""),
                preset=rows[-1].preset,
                preset_team_id=rows[-1].preset_team_id,
            )
            for e in rows
        ]
        for rows in requests_over(3, 500)
    ]


def expected(requests: list[list[LedgerEntry]], q: SpendQuery) -> dict[Any, dict[str, int]]:
    """The figures summed from the rows, in Python."""
    groups: dict[Any, dict[str, Any]] = {}
    since, until = q.since.timestamp(), q.until.timestamp()
    for rows in requests:
        for e in rows:
            if not since <= e.at < until:
                continue
            if any(getattr(e, CUBE_DIMS[d]) != v for d, v in q.where.items()):
                continue
            values = tuple(getattr(e, CUBE_DIMS[d]) or None for d in q.group_by)
            bucket = None
            if q.interval is not None:
                bucket = floor_to(dt.datetime.fromtimestamp(e.at, dt.UTC), q.interval)
            g = groups.setdefault((values, bucket), {"ids": set(), "ok": set(), **dict.fromkeys(FIGURES, 0)})
            g["ids"].add(e.request_id)
            if e.status < 400:
                g["ok"].add(e.request_id)
            g["attempts"] += 1
            for f in FIGURES[3:-2]:  # summed as they are
                g[f] += getattr(e, f) or 0
            g["cost_unknown"] += e.cost_micros is None
            g["estimated"] += e.estimated
    out = {}
    for key, g in groups.items():
        g["requests"] = len(g["ids"])
        g["failed"] = len(g["ids"] - g["ok"])
        out[key] = {f: g[f] for f in FIGURES}
    return out


QUERIES: list[tuple[tuple[str, ...], dict[str, str]]] = [
    ((), {}),
    (("model",), {}),
    (("provider",), {}),
    (("team", "model"), {}),
    (("alias",), {"team": "red"}),
    (("deployment", "provider"), {"key": "k1"}),
    (("key", "user"), {"model": "gpt"}),
    ((), {"provider": "azure"}),
    (("team",), {"deployment": "east", "model": "claude"}),
    (("preset", "model", "deployment", "provider"), {}),
]


async def test_every_query_equals_what_the_rows_sum_to(database: Database) -> None:
    requests = workload()
    await insert_in_batches(LedgerStore(database), requests)
    rng = random.Random(5)
    spans = [(NOW - dt.timedelta(days=4), NOW + dt.timedelta(hours=1))]
    spans.append((floor_to(NOW, "day") - dt.timedelta(days=2), floor_to(NOW, "hour")))  # whole buckets
    for _ in range(4):
        start = NOW - dt.timedelta(seconds=rng.random() * 3 * 86400)
        spans.append((start, start + dt.timedelta(seconds=3600 + rng.random() * 86400)))
    checked = 0
    for since, until in spans:
        for group_by, where in QUERIES:
            for interval in (None, "hour", "day"):
                q = SpendQuery(since, until, group_by, where, interval)
                groups, totals = await spend_over(database, q)
                got = {(g.values, g.bucket): g.figures for g in groups}
                want = expected(requests, q)
                assert got == want, (group_by, where, interval, since, until)
                whole = expected(requests, SpendQuery(since, until, (), where, None))
                assert totals == next(iter(whole.values()), dict.fromkeys(FIGURES, 0))
                checked += len(got)
    assert checked > 2000


async def test_a_request_failing_over_is_one_request_per_group(database: Database) -> None:
    """Attempt 1 on east (502), attempt 2 on west (200), same model: one request by model, two by
    deployment (one failed there), one by provider each."""
    at = (NOW - dt.timedelta(hours=3)).timestamp()
    common: dict[str, Any] = {"request_id": "r1", "at": at, "api": "chat", "key_id": "k1", "attempts": 2}
    rows = [
        LedgerEntry(attempt=1, deployment="east", provider="openai", model="gpt", status=502, **common),
        LedgerEntry(attempt=2, deployment="west", provider="azure", model="gpt", cost_micros=5, **common),
    ]
    await LedgerStore(database).insert(rows)
    span = (NOW - dt.timedelta(days=1), NOW)
    by_model, _ = await spend_over(database, SpendQuery(*span, ("model",), {"key": "k1"}))
    assert [
        (g.values, g.figures["requests"], g.figures["attempts"], g.figures["failed"]) for g in by_model
    ] == [(("gpt",), 1, 2, 0)]
    by_deployment, totals = await spend_over(database, SpendQuery(*span, ("deployment",), {"model": "gpt"}))
    assert {g.values[0]: (g.figures["requests"], g.figures["failed"]) for g in by_deployment} == {
        "east": (1, 1),
        "west": (1, 0),
    }
    assert (totals["requests"], totals["attempts"], totals["failed"], totals["cost_micros"]) == (1, 2, 0, 5)


async def test_the_writers_cells_equal_the_migrations_backfill(database: Database) -> None:
    await insert_in_batches(LedgerStore(database), workload())
    order = spend_cube.primary_key.columns
    async with database.engine.connect() as conn:
        written = [tuple(r) for r in await conn.execute(sa.select(spend_cube).order_by(*order))]
    async with database.engine.begin() as conn:
        await conn.execute(spend_cube.delete())
        await conn.run_sync(backfill_cube)
    async with database.engine.connect() as conn:
        computed = [tuple(r) for r in await conn.execute(sa.select(spend_cube).order_by(*order))]
    assert written == computed
    assert len(written) > 500


async def _hour_and_day_cells(database: Database) -> dict[str, set[tuple[Any, ...]]]:
    """Every cell of both tables, by grain ("hour", "day"), as comparable tuples."""
    found: dict[str, set[tuple[Any, ...]]] = {"hour": set(), "day": set()}
    async with database.engine.connect() as conn:
        for table in (spend_rollups, spend_cube):
            for row in await conn.execute(sa.select(table).where(table.c.grain.in_(("hour", "day")))):
                cells = row._mapping
                found[cells["grain"]].add(
                    (table.name, *(as_utc(v) if isinstance(v, dt.datetime) else v for v in cells.values()))
                )
    return found


def _bucket(cell: tuple[Any, ...]) -> dt.datetime:
    return next(v for v in cell if isinstance(v, dt.datetime))


async def test_old_hour_cells_are_pruned_a_bounded_number_at_a_time_and_old_spans_stay_exact(
    database: Database,
) -> None:
    requests = workload()  # three days before NOW
    await insert_in_batches(LedgerStore(database), requests)
    before = await _hour_and_day_cells(database)
    clock = [NOW]
    retention = LedgerRetention(database, None, clock=lambda: clock[0], batch=40, hour_days=1)
    for day in range(2):  # the clock moves on a day: the horizon with it
        clock[0] = NOW + dt.timedelta(days=day)
        horizon = floor_to(clock[0] - dt.timedelta(days=1), "day")
        rounds = []
        while done := await retention.prune():
            rounds.append(done)
        assert rounds and max(rounds) <= 40 * (len(DIMS) + 1)  # a batch per table a round
        now = await _hour_and_day_cells(database)
        assert now["day"] == before["day"]  # the days keep every figure
        assert now["hour"] == {c for c in before["hour"] if _bucket(c) >= horizon}
        assert any(_bucket(c) < horizon for c in before["hour"])

        # spans over the pruned hours: exact in whole days, a span's edges inside them widened
        old_day = horizon - dt.timedelta(days=1)
        mid = old_day + dt.timedelta(hours=7, minutes=13)
        for since, until, counted in (
            (old_day, horizon, old_day),  # whole days
            (mid, NOW, old_day),  # from inside a pruned day: that whole day
            (old_day - dt.timedelta(days=3), clock[0], old_day - dt.timedelta(days=3)),
        ):
            for group_by, where in QUERIES:
                for interval in (None, "day"):
                    groups, _ = await spend_over(
                        database, SpendQuery(since, until, group_by, where, interval)
                    )
                    got = {(g.values, g.bucket): g.figures for g in groups}
                    assert got == expected(requests, SpendQuery(counted, until, group_by, where, interval))
        # hour series only where hours are kept, and exact there
        with pytest.raises(InvalidRequest) as refused:
            await spend_over(database, SpendQuery(mid, NOW, ("model",), {}, "hour"))
        assert refused.value.param == "interval"
        recent = SpendQuery(horizon + dt.timedelta(minutes=20), clock[0], ("team", "model"), {}, "hour")
        groups, _ = await spend_over(database, recent)
        assert {(g.values, g.bucket): g.figures for g in groups} == expected(requests, recent)
        # the report reads the same horizons
        async with database.engine.connect() as conn:
            assert sorted(await spend_report(database, "model", mid, NOW), key=str) == sorted(
                await rows_report(conn, "model", [(old_day, NOW)]), key=str
            )
    async with database.engine.connect() as conn:
        kept = (await conn.execute(sa.select(totals_horizon.c.pruned_before))).scalar_one()
    assert as_utc(kept) == floor_to(NOW, "day")


@pytest.mark.parametrize("days", [0, 34, 36_501])
def test_hour_totals_are_kept_longer_than_any_budget_window(tmp_path: Path, days: int) -> None:
    from turnout.config.loader import ConfigError

    from support.gateway import settings_for

    assert settings_for({}, tmp_path).storage.hourly_totals_retention_days == 90
    doc = {"storage": {"hourly_totals_retention_days": days}}
    with pytest.raises(
        ConfigError, match=r"storage\.hourly_totals_retention_days: must be a number of days from 35"
    ):
        settings_for(doc, tmp_path)
